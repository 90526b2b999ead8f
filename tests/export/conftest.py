"""A tiny trained colour classifier and its export, shared by the contract and publish tests."""

from __future__ import annotations

import numpy as np
import pytest

CLASSES = ["red", "green", "blue"]
SIZE = (16, 16)


def colour_images(labels, size=SIZE, seed=0):
    """Solid dominant-channel images with mild noise: easy to learn, stable under JPEG."""
    rng = np.random.default_rng(seed)
    images = rng.integers(20, 70, size=(len(labels), *size, 3))
    for i, label in enumerate(labels):
        images[i, :, :, label] += 150
    return images.astype(np.uint8)


def tiny_model(seed=0):
    """Input `images` float32 0..255, Rescaling inside, conv, dropout, softmax float32."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(*SIZE, 3), dtype="float32", name="images")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.1)(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="tiny")


def train(model, seed=0):
    import keras

    labels = np.tile(np.arange(len(CLASSES)), 40)
    images = colour_images(labels, seed=seed).astype("float32")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.03),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(images, labels, epochs=12, batch_size=30, verbose=0)
    return model


def model_card_for(model, *, name="colours", seed=1):
    import tensorflow as tf

    from ingot.evaluate.drift import DriftBaseline
    from ingot.evaluate.metrics import evaluate_model, predict_labelled

    labels = np.tile(np.arange(len(CLASSES)), 10)
    dataset = tf.data.Dataset.from_tensor_slices((colour_images(labels, seed=seed), labels)).batch(16)
    report = evaluate_model(model, dataset, CLASSES)
    validation_labels, probabilities = predict_labelled(model, dataset)
    baseline = DriftBaseline.compute(probabilities, validation_labels, CLASSES)
    return {
        "name": name,
        "architecture": "tiny",
        "training_config": {"epochs": 12, "learning_rate": 0.03, "image_size": list(SIZE)},
        "data_hash": "sha256:" + "ab" * 32,
        "metrics": report.to_dict(),
        **baseline.to_card(),
    }


@pytest.fixture(scope="session")
def trained_model():
    model = train(tiny_model(seed=0), seed=0)
    labels = np.arange(len(CLASSES))
    predicted = model.predict(colour_images(labels, seed=5).astype("float32"), verbose=0).argmax(axis=1)
    assert predicted.tolist() == labels.tolist(), "the tiny model failed to learn colours"
    return model


@pytest.fixture(scope="session")
def exported(trained_model, tmp_path_factory):
    """(export path, the model card passed in) for the trained model."""
    from ingot.export.saved_model import export_saved_model

    card = model_card_for(trained_model)
    path = export_saved_model(
        trained_model,
        tmp_path_factory.mktemp("export") / "colours",
        class_names=CLASSES,
        image_size=SIZE,
        model_card=card,
    )
    return path, card


@pytest.fixture(scope="session")
def other_export(tmp_path_factory):
    """A second, different model (other seed, untrained) for publishing a second version."""
    from ingot.export.saved_model import export_saved_model

    model = tiny_model(seed=3)
    return export_saved_model(
        model,
        tmp_path_factory.mktemp("export") / "other",
        class_names=CLASSES,
        image_size=SIZE,
        model_card=model_card_for(model),
        warmup_batch_sizes=(1, 4),
    )
