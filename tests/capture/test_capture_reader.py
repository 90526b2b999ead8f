"""The one reader of the capture store's layout (`layout.parse`, `reader.stored_inputs`), and its
two users: the dataset build's index and the drift monitor's embedding window, on a directory
and on a real S3-protocol server (moto on loopback)."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime

import numpy as np

from ingot import storage
from ingot.capture import layout
from ingot.capture.dataset import capture_index
from ingot.capture.policy import CapturePolicy
from ingot.capture.reader import stored_inputs
from ingot.capture.writer import CaptureWriter
from ingot.monitor.embedding import CaptureStoreInputs

SHA = "ab" + "0" * 62


def test_parse_accepts_only_the_layout():
    assert layout.parse(f"ab/{SHA}.png") == (SHA, "png")
    assert layout.parse(f"ab/{SHA}.bin") == (SHA, "bin")
    for stray in (f"ac/{SHA}.png",            # wrong prefix folder
                  f"ab/{SHA}.txt",            # not a stored extension
                  f"ab/{SHA.upper()}.png",    # not the lower-case hex the writer uses
                  "ab/ab12.png",              # not a sha256
                  f"{SHA}.png", f"x/ab/{SHA}.png", f"ab/.{SHA}.png.tmp"):
        assert layout.parse(stray) is None, stray


def _store(base: str, model: str, data: bytes, extension: str, mtime: float) -> str:
    sha = storage.sha256_bytes(data)
    path = layout.location(base, model, sha, extension)
    assert storage.write_once(path, data)
    os.utime(path, (mtime, mtime))
    return sha


def test_stored_inputs_list_the_layout_oldest_first_and_skip_strays(tmp_path):
    base = str(tmp_path)
    new = _store(base, "digits", b"\x89PNG\r\n\x1a\nnew", "png", 2_000_000)
    old = _store(base, "digits", b"\x89PNG\r\n\x1a\nold", "png", 1_000_000)
    raw = _store(base, "digits", b"raw bytes", "bin", 1_500_000)
    _store(base, "other", b"\x89PNG\r\n\x1a\nelsewhere", "png", 1_000_000)
    (tmp_path / "digits" / old[:2] / "stray.png").write_bytes(b"x")
    (tmp_path / "digits" / "notes.txt").write_text("x")
    found = stored_inputs(base, "digits")
    assert [(e.sha256, e.extension, e.modified) for e in found] == [
        (old, "png", 1_000_000), (raw, "bin", 1_500_000), (new, "png", 2_000_000)]
    assert all(e.size == os.path.getsize(e.location) for e in found)
    # The dataset build indexes the same entries; the monitor takes the decodable ones, newest first.
    assert capture_index(base, "digits") == {e.sha256: e.location for e in found}
    monitor = CaptureStoreInputs(base)
    assert monitor.sample("digits", None, None, 10) == [b"\x89PNG\r\n\x1a\nnew", b"\x89PNG\r\n\x1a\nold"]
    since = datetime.fromtimestamp(1_500_000, tz=UTC)
    assert [c.stored for c in monitor.timed("digits", since, None, 10)] == [2_000_000]
    assert stored_inputs(base, "missing") == [] and monitor.sample("missing", None, None, 10) == []


def test_the_monitor_reads_captured_inputs_from_s3(s3_server):
    from PIL import Image

    writer = CaptureWriter("s3://capture/store")
    pixels = [np.full((8, 8, 3), value, np.uint8) for value in (10, 20, 30)]
    shas = [f"{i:02x}" + "e" * 62 for i in range(3)]
    try:
        for sha, image in zip(shas, pixels, strict=True):
            assert writer.offer("digits", CapturePolicy(1.0), sha, image, "png")
        assert writer.flush(30)
    finally:
        writer.close()
    found = CaptureStoreInputs("s3://capture/store").timed("digits", None, None, 10)
    assert len(found) == 3 and all(item.stored > 1.7e9 for item in found)
    decoded = sorted(int(np.asarray(Image.open(io.BytesIO(item.data)))[0, 0, 0]) for item in found)
    assert decoded == [10, 20, 30]
    assert capture_index("s3://capture/store", "digits").keys() == set(shas)
    later = datetime.fromtimestamp(found[0].stored + 3600, tz=UTC)
    assert CaptureStoreInputs("s3://capture/store").timed("digits", later, None, 10) == []
