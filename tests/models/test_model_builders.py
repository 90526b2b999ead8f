"""Model builders: input/output contract, normalization inside the model, frozen backbones,
weights sources and the errors a user can cause."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest

from ingot.errors import ConfigError, ModelError
from ingot.models.builders import backbone_of, build_model, unfreeze_top_layers
from ingot.models.catalog import ARCHITECTURES, TRANSFER_ARCHITECTURES, minimum_image_size

pytestmark = [
    # Keras 3.15 warns about weight-free containers of nested functional models on every load.
    pytest.mark.filterwarnings("ignore:Skipping nested container:UserWarning"),
    # Keras's TF backend converts tensors through np.array (a NumPy 2 copy-keyword notice).
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]

SIZE = (32, 32)
NUM_CLASSES = 3
CNN_LAYER_NAMES = [
    "images", "rescaling", "conv1", "pool1", "conv2", "pool2", "conv3",
    "flatten", "dense", "dropout", "probabilities",
]


def _raw_pixels(n: int = 4, size=SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *size, 3)).astype("float32")


@pytest.fixture(scope="module")
def transfer_models():
    """Each backbone built once (resnet50/efficientnet are slow to build on CPU)."""
    return {
        arch: build_model(arch, num_classes=NUM_CLASSES, image_size=SIZE, weights=None)
        for arch in TRANSFER_ARCHITECTURES
    }


@pytest.fixture(scope="module")
def cnn():
    return build_model("cnn", num_classes=10, image_size=SIZE)


def test_architecture_names():
    assert ARCHITECTURES == ("cnn", "mobilenet_v2", "efficientnet_b0", "resnet50")


def test_cnn_is_the_classic_cifar10_cnn_with_named_layers(cnn):
    import keras

    assert [layer.name for layer in cnn.layers] == CNN_LAYER_NAMES
    assert cnn.input.name == "images"
    assert cnn.input.dtype == "float32"
    assert tuple(cnn.input.shape) == (None, 32, 32, 3)
    # The TensorFlow CIFAR-10 tutorial CNN at 32x32 with 10 classes has exactly this many.
    assert cnn.count_params() == 122_570
    assert [cnn.get_layer(f"conv{i}").filters for i in (1, 2, 3)] == [32, 64, 64]
    rescaling = cnn.layers[1]
    assert isinstance(rescaling, keras.layers.Rescaling)
    assert rescaling.scale == pytest.approx(1 / 255)
    head = cnn.get_layer("probabilities")
    assert head.dtype_policy.compute_dtype == "float32"
    assert head.activation.__name__ == "softmax"


def test_cnn_normalizes_raw_pixels_inside(cnn):
    import keras

    raw = _raw_pixels()
    # The same network without its first layer, fed pixels scaled by hand.
    x = inputs = keras.Input(shape=(*SIZE, 3))
    for layer in cnn.layers[2:]:
        x = layer(x)
    scaled_by_hand = keras.Model(inputs, x)
    np.testing.assert_allclose(cnn.predict(raw, verbose=0), scaled_by_hand.predict(raw / 255.0, verbose=0), rtol=1e-5, atol=1e-6)
    # uint8 input is accepted as is and means the same thing as 0..255 floats.
    probs = cnn.predict(raw.astype(np.uint8), verbose=0)
    np.testing.assert_allclose(probs, cnn.predict(raw, verbose=0), rtol=1e-6)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_cnn_batch_norm_follows_each_convolution():
    import keras

    model = build_model("cnn", num_classes=NUM_CLASSES, image_size=SIZE, batch_norm=True)
    names = [layer.name for layer in model.layers]
    for i in (1, 2, 3):
        at = names.index(f"conv{i}")
        assert names[at + 1 : at + 3] == [f"conv{i}_bn", f"conv{i}_relu"]
        assert isinstance(model.get_layer(f"conv{i}_bn"), keras.layers.BatchNormalization)
        assert model.get_layer(f"conv{i}").use_bias is False
    assert names[1] == "rescaling"


def test_output_stays_float32_under_mixed_precision():
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model("cnn", num_classes=NUM_CLASSES, image_size=SIZE)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert model.get_layer("conv1").compute_dtype == "float16"
    assert model.output.dtype == "float32"
    assert model.predict(_raw_pixels(2), verbose=0).dtype == np.float32


@pytest.mark.parametrize("arch", TRANSFER_ARCHITECTURES)
def test_transfer_model_contract(transfer_models, arch):
    model = transfer_models[arch]
    assert model.input.name == "images"
    assert model.input.dtype == "float32"
    assert tuple(model.input.shape) == (None, 32, 32, 3)
    base = backbone_of(model)
    assert base.trainable is False
    assert base.trainable_weights == []
    # Only the classification head trains in the first stage.
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"probabilities"}
    names = [layer.name for layer in model.layers]
    assert names[-3:] == ["global_pool", "dropout", "probabilities"]
    head = model.get_layer("probabilities")
    assert head.dtype_policy.compute_dtype == "float32"
    assert head.activation.__name__ == "softmax"
    probs = model.predict(_raw_pixels(2).astype(np.uint8), verbose=0)
    assert probs.shape == (2, NUM_CLASSES) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("arch", ["mobilenet_v2", "resnet50"])
def test_backbone_preprocess_input_is_inside_the_model(transfer_models, arch):
    import keras

    model = transfer_models[arch]
    preprocess_input = getattr(keras.applications, arch).preprocess_input
    base = backbone_of(model)
    # Everything between the raw input and the backbone must equal Keras's preprocess_input.
    to_backbone = keras.Model(model.input, model.get_layer(f"{arch}_preprocess").output)
    assert model.layers[1].name == f"{arch}_preprocess"
    assert base.input.shape == model.get_layer(f"{arch}_preprocess").output.shape
    raw = _raw_pixels(3)
    np.testing.assert_allclose(
        to_backbone.predict(raw, verbose=0), preprocess_input(raw.copy()), rtol=1e-5, atol=1e-4
    )


def test_efficientnet_normalizes_inside_its_backbone(transfer_models):
    import keras

    model = transfer_models["efficientnet_b0"]
    base = backbone_of(model)
    # Keras's EfficientNet preprocess_input is the identity: raw pixels go straight in.
    raw = _raw_pixels(2)
    np.testing.assert_array_equal(keras.applications.efficientnet.preprocess_input(raw), raw)
    assert model.layers[1] is base
    assert isinstance(base.layers[1], keras.layers.Rescaling)
    assert base.layers[1].scale == pytest.approx(1 / 255)
    assert isinstance(base.layers[2], keras.layers.Normalization)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_saves_and_loads_as_keras_file_without_custom_objects(transfer_models, cnn, arch, tmp_path):
    import keras

    model = cnn if arch == "cnn" else transfer_models[arch]
    raw = _raw_pixels(2)
    path = tmp_path / f"{arch}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(raw, verbose=0), model.predict(raw, verbose=0), rtol=1e-5, atol=1e-6)


def test_resnet50_preprocessing_exports_as_saved_model(tmp_path):
    """The one non-layer op (the RGB->BGR flip) survives SavedModel export unchanged.
    (Exporting the whole ResNet50 takes ~10 s on 2 cores; this checks the same graph piece.)"""
    import keras
    import tensorflow as tf

    from ingot.models.builders import _resnet50_preprocess

    inputs = keras.Input(shape=(8, 8, 3), name="images")
    keras.Model(inputs, _resnet50_preprocess(inputs)).export(str(tmp_path / "sm"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    raw = _raw_pixels(2, size=(8, 8))
    expected = keras.applications.resnet50.preprocess_input(raw.copy())
    np.testing.assert_allclose(loaded.serve(tf.constant(raw)).numpy(), expected, rtol=1e-5, atol=1e-4)


def test_unfreeze_top_layers_keeps_batch_norm_frozen():
    import keras

    model = build_model("mobilenet_v2", num_classes=NUM_CLASSES, image_size=SIZE, weights=None)
    base = backbone_of(model)
    frozen_count = len(model.trainable_weights)
    assert unfreeze_top_layers(model, 0) == []
    assert len(model.trainable_weights) == frozen_count

    unfrozen = unfreeze_top_layers(model, 20)
    top = base.layers[-20:]
    assert unfrozen == [layer.name for layer in top if not isinstance(layer, keras.layers.BatchNormalization)]
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in top)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization) or layer not in top:
            assert not layer.trainable, layer.name
        else:
            assert layer.trainable, layer.name
    assert len(model.trainable_weights) > frozen_count
    assert all(
        not isinstance(layer, keras.layers.BatchNormalization) or not layer.trainable_weights
        for layer in base.layers
    )


def test_unfreeze_errors(cnn):
    model = build_model("mobilenet_v2", num_classes=NUM_CLASSES, image_size=SIZE, weights=None)
    with pytest.raises(ConfigError, match="expected an integer >= 0"):
        unfreeze_top_layers(model, -1)
    with pytest.raises(ModelError, match="no pretrained backbone"):
        unfreeze_top_layers(cnn, 5)


def test_minimum_sizes_are_the_real_limits():
    smallest = minimum_image_size("cnn")
    assert smallest == 18  # 3x3 valid convs and 2x2 pools: 18 -> 16 -> 8 -> 6 -> 3 -> 1
    model = build_model("cnn", num_classes=2, image_size=(smallest, smallest))
    assert model.get_layer("conv3").output.shape[1:3] == (1, 1)
    with pytest.raises(ConfigError, match=r"too small for cnn: it needs at least 18x18"):
        build_model("cnn", num_classes=2, image_size=(17, 40))
    assert minimum_image_size("resnet50") == 32
    with pytest.raises(ConfigError, match=r"too small for mobilenet_v2: it needs at least 32x32"):
        build_model("mobilenet_v2", num_classes=2, image_size=(31, 64), weights=None)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"architecture": "vgg16"}, ConfigError, r"unknown architecture 'vgg16'; expected one of cnn, mobilenet_v2"),
        ({"num_classes": 1}, ConfigError, r"num_classes=1 is not valid"),
        ({"image_size": "32"}, ConfigError, r"expected two integers"),
        ({"image_size": (32, 32, 3)}, ConfigError, r"expected two integers"),
        ({"dropout": 1.0}, ConfigError, r"dropout=1.0 is out of range"),
        ({"dropuot": 0.1}, ConfigError, r"unknown model option\(s\) dropuot; expected any of weights, dropout, batch_norm"),
        ({"weights": "imagenet"}, ConfigError, r"not available for the cnn"),
        ({"weights": "/nonexistent/w.weights.h5"}, ModelError, r"weights file '/nonexistent/w.weights.h5' does not exist"),
        ({"architecture": "resnet50", "batch_norm": True}, ConfigError, r"batch_norm applies to the cnn only"),
    ],
)
def test_invalid_arguments_name_what_is_wrong(kwargs, error, message):
    args = {"architecture": "cnn", "num_classes": 3, "image_size": SIZE, **kwargs}
    with pytest.raises(error, match=message):
        build_model(args.pop("architecture"), **args)


def test_cnn_weights_from_a_local_file(cnn, tmp_path):
    path = tmp_path / "cnn.weights.h5"
    cnn.save_weights(path)
    warm = build_model("cnn", num_classes=10, image_size=SIZE, weights=str(path))
    raw = _raw_pixels(2)
    np.testing.assert_allclose(warm.predict(raw, verbose=0), cnn.predict(raw, verbose=0), rtol=1e-6)


def test_transfer_weights_from_a_local_file_go_into_the_backbone(transfer_models, tmp_path):
    source = backbone_of(transfer_models["mobilenet_v2"])
    path = tmp_path / "mobilenet_v2_notop.weights.h5"
    source.save_weights(path)
    model = build_model("mobilenet_v2", num_classes=NUM_CLASSES, image_size=SIZE, weights=path)
    for loaded, saved in zip(backbone_of(model).weights, source.weights):
        np.testing.assert_array_equal(loaded.numpy(), saved.numpy())
    assert backbone_of(model).trainable is False


def test_a_weights_file_for_another_architecture_is_a_model_error(cnn, tmp_path):
    path = tmp_path / "cnn.weights.h5"
    cnn.save_weights(path)
    with pytest.raises(ModelError, match=r"cannot load weights file .*cnn.weights.h5.* into the mobilenet_v2 backbone"):
        build_model("mobilenet_v2", num_classes=NUM_CLASSES, image_size=SIZE, weights=path)


def test_imagenet_weights_offline_is_a_clear_model_error(monkeypatch, tmp_path):
    """The real keras download path runs; the network is what fails."""
    from keras.src.backend import config as keras_config
    from keras.src.utils import file_utils

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))  # no cached weights file
    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    with pytest.raises(ModelError, match=r"ImageNet weights for mobilenet_v2; is there no network\?") as caught:
        build_model("mobilenet_v2", num_classes=NUM_CLASSES, image_size=(96, 96), weights="imagenet")
    assert "weights=none" in str(caught.value)
    assert "local weights file" in str(caught.value)


def test_local_efficientnet_imagenet_file_gets_the_same_scaling_as_imagenet(tmp_path):
    """Keras rescales EfficientNet's input by 1/sqrt(stddev) only for weights='imagenet';
    a local copy of those weights must end up with the same (x/255 - mean) / stddev."""
    import keras

    mean, stddev = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    base = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(*SIZE, 3))
    norm = base.layers[2]
    norm.adapt_mean.assign(mean)
    norm.adapt_variance.assign(stddev)  # what Keras's ImageNet file stores
    path = tmp_path / "efficientnetb0_notop.weights.h5"
    base.save_weights(path)

    model = build_model("efficientnet_b0", num_classes=NUM_CLASSES, image_size=SIZE, weights=path)
    loaded = backbone_of(model)
    normalized = keras.Model(loaded.input, loaded.layers[2].output)
    raw = _raw_pixels(2)
    np.testing.assert_allclose(normalized.predict(raw, verbose=0), (raw / 255 - mean) / stddev, rtol=1e-4, atol=1e-4)
