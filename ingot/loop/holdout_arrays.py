"""Write a Dataset artifact's held-out test split as uint8 arrays at the model's input size:
`python -m ingot.loop.holdout_arrays ARTIFACT_DIR HEIGHT WIDTH OUT.npz`.

A child process of the loop, so TensorFlow (which decodes the split exactly as training does) and
its start-up chatter stay out of the loop's own process and output."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    import numpy as np

    from ingot.data.records import decoded_arrays, open_dataset_artifact

    directory, height, width, out = argv[0], int(argv[1]), int(argv[2]), argv[3]
    artifact = open_dataset_artifact(directory, verify=False)
    images, labels = decoded_arrays(artifact.test, (height, width))
    np.savez(out, images=images, labels=labels, class_names=np.array(artifact.class_names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
