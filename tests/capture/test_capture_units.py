"""The capture policy, the content-addressed layout, write-once storage, retention and the
writer's bounds, on the local filesystem."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest

from ingot import storage
from ingot.capture import layout
from ingot.capture.policy import CapturePolicy, parse_policy
from ingot.capture.retention import sweep
from ingot.capture.writer import CaptureWriter
from ingot.errors import ConfigError


def test_policy_parses_sizes_and_names_the_bad_key():
    policy = parse_policy({"sample": 0.2, "max_bytes": "10GiB", "retention_days": 30})
    assert policy == CapturePolicy(sample=0.2, max_bytes=10 << 30, retention_days=30.0)
    assert parse_policy({"sample": 1, "max_bytes": "1.5 MB"}).max_bytes == 1_500_000
    for doc, key in [({"sample": 1.5}, "sample"), ({"sample": 0.1, "max_bytes": "ten"}, "max_bytes"),
                     ({"sample": 0.1, "retention_days": 0}, "retention_days"), ({"sampel": 0.1}, "sampel")]:
        with pytest.raises(ConfigError, match=key):
            parse_policy(doc)


def test_routing_table_reads_and_writes_the_capture_block():
    from ingot.gateway.routing import RoutingError, parse, validate

    doc = {"model": "digits", "upstreams": {"champion": {"rest": "http://h:1", "grpc": "h:2", "version": 1}},
           "capture": {"sample": 0.5, "max_bytes": 1024, "retention_days": 7}}
    table = validate(doc)
    assert table.capture == CapturePolicy(0.5, 1024, 7.0)
    from ingot.gateway.routing import dump

    assert parse(dump(table)).capture == table.capture
    with pytest.raises(RoutingError, match="capture.sample"):
        validate({**doc, "capture": {"sample": -1}})


def test_layout_names_by_hash_and_png_is_lossless(tmp_path):
    from PIL import Image

    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    data = layout.encode_png(image)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), image)
    gray = image[..., :1]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(layout.encode_png(gray)))), gray[..., 0])
    sha = "ab" + "0" * 62
    assert layout.location(str(tmp_path), "digits", sha, "png") == str(tmp_path / "digits" / "ab" / f"{sha}.png")
    assert layout.sniff(data) == "png" and layout.sniff(b"\xff\xd8\xff\xe0rest") == "jpg"
    assert layout.sniff(b"not an image") == "bin"


def test_write_once_never_overwrites(tmp_path):
    path = tmp_path / "a" / "x.png"
    assert storage.write_once(path, b"first") is True
    assert storage.write_once(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert [name for name in os.listdir(path.parent)] == ["x.png"]  # no temp file left behind


def _put(base, model, name, size, age_days):
    path = os.path.join(base, model, name[:2], name)
    storage.write_once(path, b"x" * size)
    stamp = time.time() - age_days * 86400
    os.utime(path, (stamp, stamp))


def test_retention_removes_old_inputs_then_the_oldest_until_under_budget(tmp_path):
    base = str(tmp_path)
    _put(base, "m", "aa1.png", 100, 40)   # past retention
    _put(base, "m", "bb2.png", 100, 3)    # oldest within retention
    _put(base, "m", "cc3.png", 100, 2)
    _put(base, "m", "dd4.png", 100, 1)
    _put(base, "other", "ee5.png", 100, 90)  # another model's inputs are not this sweep's
    removed = sweep(base, "m", max_bytes=200, retention_days=30)
    assert removed == ["aa/aa1.png", "bb/bb2.png"]
    left = sorted(rel for rel, _, _ in storage.list_files_with_times(os.path.join(base, "m")))
    assert left == ["cc/cc3.png", "dd/dd4.png"]
    assert os.path.exists(os.path.join(base, "other", "ee", "ee5.png"))


def test_writer_deduplicates_by_hash_and_counts(tmp_path):
    writer = CaptureWriter(str(tmp_path))
    policy = CapturePolicy(1.0)
    image = np.zeros((4, 4, 3), np.uint8)
    sha = "cd" + "1" * 62
    try:
        assert writer.offer("m", policy, sha, image, "png")
        assert writer.offer("m", policy, sha, image, "png")
        assert writer.flush()
    finally:
        writer.close()
    assert writer.stats.written == 1 and writer.stats.deduplicated == 1
    assert (tmp_path / "m" / "cd" / f"{sha}.png").exists()
    # A new writer (a restarted gateway) finds the stored input and does not rewrite it.
    again = CaptureWriter(str(tmp_path))
    try:
        assert again.offer("m", policy, sha, image, "png") and again.flush()
    finally:
        again.close()
    assert again.stats.written == 0 and again.stats.deduplicated == 1


def test_writer_bounds_its_queue_in_bytes_and_drops_when_full(tmp_path):
    writer = CaptureWriter(str(tmp_path), max_queue_bytes=10_000)
    import threading

    gate = threading.Event()
    original = writer._store
    writer._store = lambda item: (gate.wait(10), original(item))  # type: ignore[method-assign]
    policy = CapturePolicy(1.0)
    accepted = 0
    peak = 0
    try:
        for i in range(200):
            image = np.full((32, 32, 3), i % 256, np.uint8)  # 3,072 bytes each
            accepted += writer.offer("m", policy, f"{i:064x}", image, "png")
            peak = max(peak, writer.stats.queued_bytes)
        assert peak <= 10_000
        assert writer.stats.dropped["queue_full"] == 200 - accepted and accepted <= 4
    finally:
        gate.set()
        writer.close()
    assert writer.stats.written == accepted


def test_writer_counts_a_failing_store_and_keeps_going(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the store's directory should be")
    writer = CaptureWriter(str(blocker / "store"))
    try:
        assert writer.offer("m", CapturePolicy(1.0), "e" * 64, b"\x89PNG\r\n\x1a\nxx", "png")
        assert writer.flush()
    finally:
        writer.close()
    assert writer.stats.dropped["store_error"] == 1 and writer.stats.written == 0
