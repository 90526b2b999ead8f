"""Architecture names and their input-size limits, without importing TensorFlow.

Config validation (the CLI, `TrainConfig`) needs these facts before any model is built, so they
live apart from the Keras builders.
"""

from __future__ import annotations

from collections.abc import Sequence

from ingot.errors import ConfigError

CNN = "cnn"
TRANSFER_ARCHITECTURES = ("mobilenet_v2", "efficientnet_b0", "resnet50")
ARCHITECTURES = (CNN, *TRANSFER_ARCHITECTURES)

# The classic CIFAR-10 CNN: 3x3 "valid" convolutions and 2x2 max-pools, in this order.
CNN_STACK = ("conv", "pool", "conv", "pool", "conv")
CNN_KERNEL = 3
CNN_POOL = 2

# keras.applications refuses include_top=False inputs below 32x32 for all three backbones.
TRANSFER_MIN_SIZE = 32


def cnn_feature_size(size: int) -> int:
    """Spatial size of the CNN's last feature map for an input side of `size` (may be <= 0)."""
    for step in CNN_STACK:
        size = size - (CNN_KERNEL - 1) if step == "conv" else size // CNN_POOL
        if size <= 0:
            return 0
    return size


def minimum_image_size(architecture: str) -> int:
    """Smallest input side the architecture accepts (the cnn's is derived from its layer stack)."""
    check_architecture(architecture)
    if architecture == CNN:
        size = 1
        while cnn_feature_size(size) < 1:
            size += 1
        return size
    return TRANSFER_MIN_SIZE


def check_architecture(architecture: str) -> str:
    if architecture not in ARCHITECTURES:
        raise ConfigError(
            f"unknown architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}"
        )
    return architecture


def check_image_size(architecture: str, image_size: Sequence[int]) -> tuple[int, int]:
    """Return (H, W) as ints, or raise ConfigError saying what the architecture needs."""
    try:
        if isinstance(image_size, (str, bytes)):
            raise TypeError
        height, width = (int(side) for side in image_size)
    except (TypeError, ValueError):
        raise ConfigError(
            f"image_size={image_size!r} is not valid; expected two integers [height, width]"
        ) from None
    if any(float(side) != int(side) for side in image_size):
        raise ConfigError(f"image_size={list(image_size)} must hold whole numbers of pixels")
    smallest = minimum_image_size(architecture)
    if height < smallest or width < smallest:
        raise ConfigError(
            f"image_size={[height, width]} is too small for {architecture}: "
            f"it needs at least {smallest}x{smallest} pixels"
        )
    return height, width
