"""The model server's process serves Ingot's exports with Keras kept out of it (ingot.serving.process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.xdist_group("serving-lifecycle")  # the same worker as the exports


def test_an_export_loads_and_answers_in_a_process_without_keras(exports):
    code = textwrap.dedent(f"""
        import sys
        from ingot.serving.process import without_keras
        assert without_keras()
        import numpy as np, tensorflow as tf
        assert sys.modules["keras"] is None, "TensorFlow imported Keras anyway"
        try:
            import keras  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("keras imported")
        from ingot.serving.servable import DirectPool, Servable
        servable = Servable("colours", 1, {str(exports["v1"])!r}, batching=None, direct_pool=DirectPool(1, 4),
                            max_elements=1 << 20)
        servable.load()
        stats = servable.warm_up(threads=2)
        images = np.zeros((2, 16, 16, 3), np.uint8)
        out = servable._run_now("serving_default", {{"images": images}})
        print(stats.requests_replayed, sorted(out), out["probabilities"].shape)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    replayed, *_ = done.stdout.split()
    assert int(replayed) >= 3 and "probabilities" in done.stdout and "(2, 3)" in done.stdout


def test_too_late_once_tensorflow_is_imported():
    code = "import tensorflow, sys; from ingot.serving.process import without_keras; print(without_keras())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "False", done.stderr[-2000:]
