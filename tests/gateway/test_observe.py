"""Per-row facts the gateway logs: input hash, pixel statistics, top-1 prediction; class names."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from ingot.gateway.classes import ClassCatalog
from ingot.gateway.observe import input_facts, predictions


def test_the_hash_is_over_each_rows_decoded_bytes_and_stats_are_per_image() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    facts = input_facts({"images": images})
    assert [f.input_sha256 for f in facts] == [hashlib.sha256(img.tobytes()).hexdigest() for img in images]
    assert facts[0].input_mean == float(images[0].astype(np.float64).mean())
    assert facts[0].input_std == pytest.approx(float(images[0].astype(np.float64).std()), rel=1e-12)
    # the same image however it was laid out in memory (a strided view, a copy) hashes the same
    assert input_facts({"images": images[::-1][::-1]})[1] == input_facts({"images": images[1:2].copy()})[0]


def test_encoded_images_hash_the_file_bytes_and_have_no_pixel_statistics() -> None:
    files = np.array([b"\x89PNG-one", b"\xff\xd8JPEG-two"], dtype=object)
    facts = input_facts({"image_bytes": files})
    assert facts[1].input_sha256 == hashlib.sha256(b"\xff\xd8JPEG-two").hexdigest()
    assert (facts[0].input_mean, facts[0].input_std) == (None, None)


def test_top1_prediction_from_whatever_outputs_came_back() -> None:
    probabilities = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], np.float32)
    full = predictions({"probabilities": probabilities, "class_ids": np.array([1, 0]),
                        "class_names": np.array([b"cat", b"dog"], dtype=object)}, 2)
    assert [(p.class_id, p.class_name, round(p.confidence, 3)) for p in full] == [(1, "cat", 0.7), (0, "dog", 0.5)]
    only_probabilities = predictions({"probabilities": probabilities}, 2)
    assert [(p.class_id, p.class_name) for p in only_probabilities] == [(1, None), (0, None)]
    assert predictions(None, 1)[0].class_id is None


def test_class_names_from_the_model_card_or_learned_from_answers(tmp_path) -> None:
    card_dir = tmp_path / "digits" / "3" / "assets.extra"
    card_dir.mkdir(parents=True)
    (card_dir / "model_card.json").write_text(json.dumps({"class_names": ["zero", "one"]}))
    catalog = ClassCatalog(str(tmp_path))
    assert catalog("digits", 3) == ["zero", "one"]
    assert catalog("digits", 4) is None
    outputs = {"probabilities": np.zeros((2, 3), np.float32), "class_ids": np.array([2, 0]),
               "class_names": np.array([b"c", b"a"], dtype=object)}
    catalog.observe("digits", 4, outputs)
    assert catalog("digits", 4) is None  # class 1 never seen yet
    catalog.observe("digits", 4, {**outputs, "class_ids": np.array([1, 1]),
                                  "class_names": np.array([b"b", b"b"], dtype=object)})
    assert catalog("digits", 4) == ["a", "b", "c"]


def test_row_hashes_are_the_logged_input_hashes() -> None:
    """The prediction cache keys rows by the same hash the log stores, without the pixel statistics."""
    import numpy as np

    from ingot.gateway.observe import input_facts, row_hashes

    images = np.random.default_rng(3).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    images[2] = images[0]
    hashes = row_hashes({"images": images})
    assert hashes == [fact.input_sha256 for fact in input_facts({"images": images})]
    assert hashes[0] == hashes[2] != hashes[1]
