"""Publishes killed at random points (SIGKILL: no cleanup code runs) leave staging directories;
the next publish removes exactly those no live publisher owns, counts them, and no partial
version ever becomes visible."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from ingot import repository
from ingot.export import publishing
from ingot.export.publishing import publish

PUBLISH = """
import sys
from ingot.export.publishing import publish
publish(sys.argv[1], sys.argv[2], "colours")
"""

# Stops after the copy, with the owner lock held, like a publisher stuck in verification.
STAGE_AND_WAIT = """
import os, sys, time, uuid
from ingot import repository, storage
from ingot.export import publishing
staging = os.path.join(sys.argv[2], "colours", ".tmp-" + uuid.uuid4().hex)
with publishing._staging_owner(staging):
    storage.copy_tree(sys.argv[1], staging)
    print("staged", flush=True)
    time.sleep(600)
"""


def _staging_dirs(model_dir):
    return sorted(p.name for p in model_dir.iterdir() if p.name.startswith(".tmp-") and p.is_dir())


def _start(script, *args):
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_publishes_killed_at_random_points_are_cleaned_up_by_the_next_one(exported, other_export, tmp_path):
    artifact = exported[0]
    model_dir = tmp_path / "colours"
    model_dir.mkdir()
    rng = random.Random(9)
    for _ in range(4):  # random points: importing, copying, verifying, renaming
        process = _start(PUBLISH, artifact, tmp_path)
        time.sleep(rng.uniform(0.5, 6.0))
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    for _ in range(2):  # certainly mid-publish: staged, then killed
        process = _start(STAGE_AND_WAIT, artifact, tmp_path)
        assert process.stdout.readline().strip() == b"staged"
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    live = _start(STAGE_AND_WAIT, artifact, tmp_path)  # a publisher still at work
    try:
        assert live.stdout.readline().strip() == b"staged"
        left = _staging_dirs(model_dir)
        assert len(left) >= 3  # the two certain ones and the live one
        for _version, path in repository.iter_versions(tmp_path, "colours"):
            assert repository.verify_manifest(path)  # a killed publish never leaves a partial version

        result = publish(other_export, tmp_path, "colours")

        assert result.created and result.stale_removed == len(left) - 1
        remaining = _staging_dirs(model_dir)
        assert len(remaining) == 1 and remaining[0] in left  # only the live publisher's
        assert (model_dir / (remaining[0] + publishing.OWNER_SUFFIX)).exists()
        assert not [p for p in model_dir.iterdir() if p.name.endswith(publishing.OWNER_SUFFIX)
                    and p.name[: -len(publishing.OWNER_SUFFIX)] not in remaining]
        for _version, path in repository.iter_versions(tmp_path, "colours"):
            assert repository.verify_manifest(path)
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait(30)
    again = publish(other_export, tmp_path, "colours")  # idempotent, and now the last one is stale
    assert (again.created, again.stale_removed) == (False, 1)
    assert _staging_dirs(model_dir) == []
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".tmp-")]


def test_a_staging_directory_without_owner_file_is_kept_until_it_is_old(exported, tmp_path):
    model_dir = tmp_path / "colours"
    fresh, old = model_dir / ".tmp-fresh", model_dir / ".tmp-old"
    for path in (fresh, old):
        path.mkdir(parents=True)
        (path / "saved_model.pb").write_bytes(b"half")
    ancient = time.time() - publishing.OWNERLESS_STALE_S - 60
    os.utime(old, (ancient, ancient))
    assert publishing.remove_stale_staging(str(model_dir)) == 1
    assert _staging_dirs(model_dir) == [".tmp-fresh"]


@pytest.mark.parametrize("target", ["verify_saved_model", "os.rename"])
def test_a_failed_publish_removes_its_owner_file_too(exported, tmp_path, monkeypatch, target):
    def crash(*args, **kwargs):
        raise RuntimeError("injected crash")

    monkeypatch.setattr(publishing if target == "verify_saved_model" else publishing.os, target.split(".")[-1], crash)
    with pytest.raises(Exception, match="injected crash"):
        publish(exported[0], tmp_path, "colours")
    assert [p.name for p in (tmp_path / "colours").iterdir()] == [publishing.LOCK_FILE]
