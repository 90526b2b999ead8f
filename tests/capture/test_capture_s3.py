"""Object storage through the one storage layer, against a real S3-protocol server on loopback
(moto's server mode): write-once, listing with times, removal, retention and the capture writer;
a server that goes away makes the writer drop and count, never raise."""

from __future__ import annotations

import numpy as np

from ingot import storage
from ingot.capture.policy import CapturePolicy
from ingot.capture.retention import sweep
from ingot.capture.writer import CaptureWriter


def test_storage_layer_reads_and_writes_s3(s3_server):
    path = "s3://capture/m/ab/abc.png"
    assert storage.write_once(path, b"first") is True
    assert storage.write_once(path, b"second") is False
    with storage.open_file(path, "rb") as handle:
        assert handle.read() == b"first"
    assert storage.exists(path) and storage.listdir("s3://capture/m/ab") == ["abc.png"]
    storage.atomic_write("s3://capture/m/manifest.json", "{}")
    assert storage.walk_files("s3://capture/m") == ["ab/abc.png", "manifest.json"]
    listed = storage.list_files_with_times("s3://capture/m")
    assert [(rel, size) for rel, size, _ in listed] == [("ab/abc.png", 5), ("manifest.json", 2)]
    assert all(stamp > 1.7e9 for _, _, stamp in listed)
    storage.remove(path)
    assert not storage.exists(path)
    assert storage.list_files_with_times("s3://capture/nothing-here") == []


def test_capture_writer_and_retention_on_s3(s3_server):
    writer = CaptureWriter("s3://capture/store")
    policy = CapturePolicy(1.0, max_bytes=1, retention_days=30)
    shas = [f"{i:02x}" + "f" * 62 for i in range(3)]
    try:
        for i, sha in enumerate(shas):
            assert writer.offer("digits", policy, sha, np.full((8, 8, 1), i, np.uint8), "png")
        assert writer.flush(30)
    finally:
        writer.close()
    assert writer.stats.written == 3
    stored = storage.walk_files("s3://capture/store/digits")
    assert stored == [f"{sha[:2]}/{sha}.png" for sha in shas]
    removed = sweep("s3://capture/store", "digits", max_bytes=1, retention_days=30)
    assert len(removed) == 3 and storage.walk_files("s3://capture/store/digits") == []


def test_a_store_that_goes_down_drops_and_counts(s3_server):
    writer = CaptureWriter("s3://capture/store")
    s3_server.stop()
    import os

    os.environ["AWS_MAX_ATTEMPTS"] = "1"
    try:
        assert writer.offer("digits", CapturePolicy(1.0), "a" * 64, b"\x89PNG\r\n\x1a\n", "png")
        assert writer.flush(60)
    finally:
        writer.close()
        os.environ.pop("AWS_MAX_ATTEMPTS", None)
    assert writer.stats.dropped["store_error"] == 1 and writer.stats.written == 0
