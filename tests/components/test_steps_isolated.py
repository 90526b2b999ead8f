"""The pipeline's data steps as on a cluster: each in its own process with a private
DATASET_ROOT, HOME and TMPDIR (as each pod has its own filesystem), sharing only the artifact
directories. The ingest step's private directories are deleted before training starts, so any
path into them (the bundled digits live under the ingest pod's DATASET_ROOT) would fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("isolated-steps")]

REPO = Path(__file__).resolve().parents[2]
RECIPE = {"architecture": "cnn", "image_size": [20, 20], "epochs": 2, "batch_size": 64,
          "validation_fraction": 0.15, "test_fraction": 0.15, "verbose": "lines", "seed": 3,
          "augmentation": {"flip": "none", "rotation": 0.0, "zoom": 0.0}}


def _run_step(name: str, private: Path, code: str) -> str:
    """Run `code` in a fresh interpreter whose DATASET_ROOT, HOME and TMPDIR are under `private`."""
    for sub in ("datasets", "home", "tmp"):
        (private / sub).mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATASET_ROOT", "HOME", "TMPDIR", "INGOT_DATA_DIR", "INGOT_MODEL_REPOSITORY")}
    env.update(DATASET_ROOT=str(private / "datasets"), HOME=str(private / "home"), TMPDIR=str(private / "tmp"),
               INGOT_DATA_DIR=str(private / "home" / ".ingot"), TF_CPP_MIN_LOG_LEVEL="2")
    header = f"import json\nfrom ingot.train.config import TrainConfig\nconfig = TrainConfig.from_dict({RECIPE!r})\n"
    done = subprocess.run([sys.executable, "-c", header + textwrap.dedent(code)], cwd=private, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{name} step failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_steps_in_separate_pods_share_only_artifacts(tmp_path):
    artifacts = tmp_path / "artifacts"
    registry = f"sqlite:///{tmp_path / 'registry-service' / 'registry.db'}"
    (tmp_path / "registry-service").mkdir()

    ingest_pod = tmp_path / "ingest-pod"
    out = _run_step("ingest", ingest_pod, f"""
        from components.steps import ingest_step
        meta = ingest_step("bundled:digits", config, {str(artifacts / 'dataset')!r}, {str(artifacts / 'report.html')!r})
        print("META", json.dumps(meta))
    """)
    meta = json.loads(out.split("META ", 1)[1])
    assert (ingest_pod / "datasets" / "digits").is_dir()  # the digits were written inside the ingest pod
    assert meta["split_sizes"] == {"train": 1257, "validation": 270, "test": 270}
    shutil.rmtree(ingest_pod)  # the pod is gone; only the artifact directories remain

    train_pod = tmp_path / "train-pod"
    out = _run_step("train", train_pod, f"""
        from components.steps import train_step
        meta = train_step({str(artifacts / 'dataset')!r}, config, {str(artifacts / 'model')!r},
                          {str(artifacts / 'curves.html')!r})
        print("META", json.dumps(meta))
    """)
    trained = json.loads(out.split("META ", 1)[1])
    assert trained["data_hash"] == meta["data_hash"] and trained["epochs_run"] == 2
    assert not (train_pod / "datasets" / "digits").exists()  # nothing re-materialized the source
    shutil.rmtree(train_pod)

    out = _run_step("evaluate", tmp_path / "evaluate-pod", f"""
        from ingot.evaluate.gate import GateThresholds
        from components.steps import evaluate_step
        result = evaluate_step({str(artifacts / 'dataset')!r}, {str(artifacts / 'model')!r}, config,
                               GateThresholds(min_accuracy=0.0, min_class_f1=0.0, max_regression=1.0),
                               model_name="digits", registry_url={registry!r}, pipeline_run_id="iso",
                               evaluation_json={str(artifacts / 'evaluation.json')!r},
                               report_html={str(artifacts / 'evaluation.html')!r},
                               serving_model_dir={str(artifacts / 'serving')!r})
        print("META", json.dumps({{"blessed": result.blessed, "accuracy": result.scalars["accuracy"]}}))
    """)
    evaluated = json.loads(out.split("META ", 1)[1])
    assert evaluated["blessed"] is True
    assert evaluated["accuracy"] > 0.5  # two epochs on digits: far above chance (0.1)
    record = json.loads((artifacts / "evaluation.json").read_text())
    assert record["data_hash"] == meta["data_hash"]
    assert (artifacts / "serving" / "saved_model.pb").is_file()
