"""Keras model builders. Every model takes raw 0..255 pixels: normalization is always inside.

Putting the normalization in the graph means a served model can never be fed pixels scaled
differently from training, which is the most common silent failure of image classifiers in
production. Only built-in Keras layers and ops are used, so models save as `.keras`, load
without custom objects, and export as SavedModel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from ingot.errors import ConfigError, ModelError
from ingot.models.catalog import (
    CNN,
    CNN_KERNEL,
    CNN_POOL,
    CNN_STACK,
    TRANSFER_ARCHITECTURES,
    check_architecture,
    check_image_size,
)
from ingot.protocol.signatures import IMAGES_INPUT, PROBABILITIES

CNN_FILTERS = (32, 64, 64)
CNN_DENSE_UNITS = 64
DEFAULT_DROPOUT = 0.2
OPTIONS = ("weights", "dropout", "batch_norm")

# keras.applications.resnet50.preprocess_input ("caffe" mode): RGB -> BGR, then subtract these.
RESNET50_BGR_MEAN = (103.939, 116.779, 123.68)
# What Keras's EfficientNet stores as the Normalization "variance" for ImageNet weights (the
# standard deviations, a quirk of the original port; see keras.applications.efficientnet).
EFFICIENTNET_IMAGENET_STDDEV = (0.229, 0.224, 0.225)

_APPLICATIONS: dict[str, str] = {
    "mobilenet_v2": "MobileNetV2",
    "efficientnet_b0": "EfficientNetB0",
    "resnet50": "ResNet50",
}


def build_model(
    architecture: str,
    *,
    num_classes: int,
    image_size: Sequence[int],
    **options: Any,
) -> keras.Model:
    """Build an image classifier by name.

    Options: `dropout` (float in [0, 1), default 0.2), `batch_norm` (cnn only), and `weights`:
    "imagenet" (transfer architectures; the default for them), None/"none" (random init; the
    cnn's default), or the path of a local Keras weights file (loaded into the backbone of a
    transfer model, or into the whole cnn).
    """
    check_architecture(architecture)
    height, width = check_image_size(architecture, image_size)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ConfigError(f"num_classes={num_classes!r} is not valid; expected an integer >= 2")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown model option(s) {', '.join(unknown)}; expected any of {', '.join(OPTIONS)}"
        )
    dropout = float(options.get("dropout", DEFAULT_DROPOUT))
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout={dropout} is out of range; expected 0 <= dropout < 1")
    batch_norm = bool(options.get("batch_norm", False))

    if architecture == CNN:
        weights = _weights_source(options.get("weights"), architecture)
        return _build_cnn(
            (height, width), int(num_classes), dropout=dropout, batch_norm=batch_norm, weights=weights
        )
    if batch_norm:
        raise ConfigError(
            f"batch_norm applies to the cnn only; {architecture} has its own normalization layers"
        )
    weights = _weights_source(options.get("weights", "imagenet"), architecture)
    return _build_transfer(architecture, (height, width), int(num_classes), dropout=dropout, weights=weights)


def _weights_source(weights: Any, architecture: str) -> str | Path | None:
    """Normalize the `weights` option to None, "imagenet" or an existing file path."""
    if weights is None or (isinstance(weights, str) and weights.strip().lower() in {"", "none", "null"}):
        return None
    if isinstance(weights, str) and weights.strip().lower() == "imagenet":
        if architecture == CNN:
            raise ConfigError(
                "weights='imagenet' is not available for the cnn; use weights=none (random "
                "initialization) or the path of a weights file saved from an Ingot cnn"
            )
        return "imagenet"
    path = Path(str(weights)).expanduser()
    if not path.is_file():
        raise ModelError(
            f"weights file {str(path)!r} does not exist; expected 'imagenet', 'none' or the path "
            "of an existing Keras weights file (.weights.h5 or .h5)"
        )
    return path


def _load_weights(model: keras.Model, path: Path, what: str) -> None:
    try:
        model.load_weights(str(path))
    except Exception as err:  # Keras raises ValueError/OSError/KeyError depending on format
        raise ModelError(
            f"cannot load weights file {str(path)!r} into {what}: {err}. Expected a Keras weights "
            f"file (.weights.h5 or .h5) saved from the same architecture"
        ) from err


def _build_cnn(
    image_size: tuple[int, int],
    num_classes: int,
    *,
    dropout: float,
    batch_norm: bool,
    weights: Path | None,
) -> keras.Model:
    """The classic CIFAR-10 CNN from the TensorFlow tutorial, with names on every layer."""
    height, width = image_size
    inputs = keras.Input(shape=(height, width, 3), name=IMAGES_INPUT, dtype="float32")
    x = layers.Rescaling(1.0 / 255, name="rescaling")(inputs)
    filters = iter(CNN_FILTERS)
    conv_index = pool_index = 0
    for step in CNN_STACK:
        if step == "conv":
            conv_index += 1
            name = f"conv{conv_index}"
            if batch_norm:
                x = layers.Conv2D(next(filters), CNN_KERNEL, use_bias=False, name=name)(x)
                x = layers.BatchNormalization(name=f"{name}_bn")(x)
                x = layers.Activation("relu", name=f"{name}_relu")(x)
            else:
                x = layers.Conv2D(next(filters), CNN_KERNEL, activation="relu", name=name)(x)
        else:
            pool_index += 1
            x = layers.MaxPooling2D(CNN_POOL, name=f"pool{pool_index}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(CNN_DENSE_UNITS, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    # float32 so the probabilities stay float32 under mixed precision.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name=PROBABILITIES)(x)
    model = keras.Model(inputs, outputs, name="cnn")
    if weights is not None:
        _load_weights(model, weights, "the cnn")
    return model


def _mobilenet_v2_preprocess(x: Any) -> Any:
    # keras.applications.mobilenet_v2.preprocess_input ("tf" mode): scale to [-1, 1].
    return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="mobilenet_v2_preprocess", dtype="float32")(x)


def _resnet50_preprocess(x: Any) -> Any:
    # keras.applications.resnet50.preprocess_input ("caffe" mode): RGB -> BGR, zero-center by the
    # ImageNet BGR means, no scaling. A weight-free op and layer, so fine-tuning can never alter it.
    x = keras.ops.flip(x, axis=-1)
    offset = [-mean for mean in RESNET50_BGR_MEAN]
    return layers.Rescaling(1.0, offset=offset, name="resnet50_preprocess", dtype="float32")(x)


def _efficientnet_b0_preprocess(x: Any) -> Any:
    # Keras's EfficientNet rescales and normalizes inside the backbone; it expects 0..255.
    return x


_PREPROCESS: dict[str, Callable[[Any], Any]] = {
    "mobilenet_v2": _mobilenet_v2_preprocess,
    "efficientnet_b0": _efficientnet_b0_preprocess,
    "resnet50": _resnet50_preprocess,
}


def _build_backbone(architecture: str, image_size: tuple[int, int], weights: str | Path | None) -> keras.Model:
    factory = getattr(keras.applications, _APPLICATIONS[architecture])
    input_shape = (*image_size, 3)
    if weights == "imagenet":
        try:
            # The real download path: keras.utils.get_file into ~/.keras/models (cached there).
            return factory(include_top=False, weights="imagenet", input_shape=input_shape)
        except Exception as err:  # get_file raises a bare Exception on URL failures
            raise ModelError(
                f"cannot get the ImageNet weights for {architecture}; is there no network? ({err}). "
                f"Offline, put Keras's '{_APPLICATIONS[architecture]}' notop weights file in "
                "~/.keras/models/, or set weights to the path of a local weights file, or use "
                "weights=none to train from random initialization"
            ) from err
    base = factory(include_top=False, weights=None, input_shape=input_shape)
    if weights is not None:
        _load_weights(base, Path(weights), f"the {architecture} backbone")
        if architecture == "efficientnet_b0":
            _match_imagenet_normalization(base)
    return base


def _match_imagenet_normalization(base: keras.Model) -> None:
    """Give a local copy of EfficientNet's ImageNet weights the input scaling Keras gives them.

    For weights="imagenet" Keras adds a Rescaling by 1/sqrt(stddev) after its Normalization layer
    (whose stored "variance" is the stddev itself). A local file skips that branch, so when the
    file carries those ImageNet statistics, fold the same factor into the variance instead.
    """
    norm = next((layer for layer in base.layers if isinstance(layer, layers.Normalization)), None)
    if norm is None or getattr(norm, "adapt_variance", None) is None:
        return
    variance = np.asarray(keras.ops.convert_to_numpy(norm.adapt_variance), dtype="float64")
    if np.allclose(variance, EFFICIENTNET_IMAGENET_STDDEV, atol=1e-4):
        norm.adapt_variance.assign(np.square(variance).astype(norm.adapt_variance.dtype))
        norm.finalize_state()


def _build_transfer(
    architecture: str,
    image_size: tuple[int, int],
    num_classes: int,
    *,
    dropout: float,
    weights: str | Path | None,
) -> keras.Model:
    """Frozen ImageNet backbone + global average pooling + dropout + softmax head."""
    height, width = image_size
    base = _build_backbone(architecture, image_size, weights)
    base.trainable = False
    inputs = keras.Input(shape=(height, width, 3), name=IMAGES_INPUT, dtype="float32")
    x = _PREPROCESS[architecture](inputs)
    # training=False keeps the backbone's BatchNorm in inference mode, also after unfreezing.
    x = base(x, training=False)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name=PROBABILITIES)(x)
    return keras.Model(inputs, outputs, name=architecture)


def backbone_of(model: keras.Model) -> keras.Model:
    """The pretrained base nested in a transfer model."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ModelError(
            f"model {model.name!r} has no pretrained backbone to unfreeze; fine-tuning applies to "
            f"the transfer architectures ({', '.join(TRANSFER_ARCHITECTURES)})"
        )
    return nested[0]


def unfreeze_top_layers(model: keras.Model, n: int) -> list[str]:
    """Make the top `n` backbone layers trainable for fine-tuning; returns their names.

    Layers are counted as the backbone lists them, weight-free ones included (the convention of
    Keras's transfer-learning guide: MobileNetV2 has 154, ResNet50 175). BatchNormalization layers stay frozen: updating their statistics on a small dataset wrecks
    what the backbone learned. The model must be recompiled afterwards for this to take effect.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"fine-tune layer count {n!r} is not valid; expected an integer >= 0")
    base = backbone_of(model)
    if n == 0:
        return []
    base.trainable = True
    cut = max(len(base.layers) - int(n), 0)
    unfrozen: list[str] = []
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= cut and not isinstance(layer, layers.BatchNormalization)
        if layer.trainable:
            unfrozen.append(layer.name)
    return unfrozen
