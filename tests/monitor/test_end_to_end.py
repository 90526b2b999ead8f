"""Through a real (tiny) model: its validation baseline in a model card, its predictions on clean,
inverted and darkened digits in the inference log, and `ingot monitor check` on top."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingot.cli.main import main
from ingot.db import normalize_url, open_engine
from ingot.evaluate.drift import input_statistics
from ingot.inference_log.store import InferenceLogStore
from tests.monitor.conftest import make_champion, write_log


@pytest.fixture(scope="module")
def digits():
    from tests.monitor.digits_model import train_digits_model

    return train_digits_model()


def _serve(url, digits, images, labels):
    """Log what the gateway would: the model's prediction and the input statistics, per image."""
    predicted, confidence = digits.predict(images)
    means, stds = input_statistics(images)
    engine = open_engine(normalize_url(url))
    write_log(engine, "digits", predicted, confidence, means=means, stds=stds)
    engine.dispose()
    return float((predicted == labels).mean())


def test_inverted_and_darkened_images_are_detected_clean_traffic_is_not(digits, tmp_path, capsys):
    assert digits.baseline.accuracy > 0.9
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    InferenceLogStore.from_url(url).close()  # the gateway's log tables, in the registry's database
    card = {"name": "digits", "class_names": list(digits.baseline.class_names), "training_config": {},
            **digits.baseline.to_card(), "metrics": {"accuracy": digits.baseline.accuracy}}
    make_champion(url, "digits", card, tmp_path / "repo" / "digits" / "1")
    check = ["monitor", "check", "digits", "--registry", url, "--window", "400", "--json"]

    clean, labels = digits.live_images[:400], digits.live_labels[:400]
    _serve(url, digits, clean, labels)
    assert main(check) == 0, capsys.readouterr().out
    assert json.loads(capsys.readouterr().out)["status"] == "no drift"

    # Inverting keeps each image's spread and moves its mean; darkening shrinks both.
    for name, images, moved in (("inverted", 255 - clean, {"input_mean_ks"}),
                                ("darkened", (clean * 0.2).astype(np.uint8), {"input_mean_ks", "input_std_ks"})):
        _serve(url, digits, images, labels)
        assert main(check) == 3, name
        result = json.loads(capsys.readouterr().out)["result"]
        assert moved <= set(result["drifted"]), (name, result["drifted"])
        # The model's outputs move too (an over-confident model may keep its confidence on inverted
        # digits and move its class prior instead: that is why the inputs are watched as well).
        assert {"confidence_ks", "class_prior_chi2", "accuracy_estimate"} & set(result["drifted"]), name
