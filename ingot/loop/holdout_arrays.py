"""Write images as uint8 arrays at the model's input size, decoded and resized as training does:
`python -m ingot.loop.holdout_arrays SOURCE HEIGHT WIDTH OUT.npz`, where SOURCE is a Dataset
artifact (its held-out test split) or an image folder (all of it: the live pool).

A child process of the loop, so TensorFlow and its start-up chatter stay out of the loop's own
process and output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from ingot.errors import DataError


def main(argv: list[str]) -> int:
    import numpy as np

    from ingot.data.records import decoded_arrays, is_dataset_artifact, open_dataset_artifact

    directory, height, width, out = argv[0], int(argv[1]), int(argv[2]), argv[3]
    if is_dataset_artifact(directory):
        artifact = open_dataset_artifact(directory, verify=False)
        images, labels = decoded_arrays(artifact.test, (height, width))
        names = list(artifact.class_names)
    else:
        images, labels, names = _folder_arrays(directory, height, width)
    np.savez(out, images=images, labels=labels, class_names=np.array(names))
    return 0


def _folder_arrays(directory: str, height: int, width: int) -> tuple[Any, Any, list[str]]:
    import numpy as np
    import tensorflow as tf

    from ingot.data.preprocess import decode_and_resize
    from ingot.data.sources import load_image_folder

    data, _report = load_image_folder(directory, min_images_per_class=1)
    assert data.paths is not None  # an image folder is read lazily, by path
    images = np.stack([decode_and_resize(tf.io.read_file(path), (height, width)).numpy() for path in data.paths])
    return images.astype(np.uint8), np.asarray(data.labels, dtype=np.int64), list(data.class_names)


def load(source: Path, height: int, width: int, out: Path, log: Path) -> tuple[Any, Any, list[str]]:
    """(images, labels, class names) of `source`, computed in a child process (its output in `log`)."""
    import numpy as np

    with log.open("wb") as sink:
        done = subprocess.run([sys.executable, "-m", "ingot.loop.holdout_arrays", str(source), str(height),
                               str(width), str(out)], stdout=sink, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise DataError(f"could not read the live images from {source} (log: {log})")
    with np.load(out) as arrays:
        return arrays["images"], arrays["labels"], [str(n) for n in arrays["class_names"]]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
