"""numpy inputs handed to TensorFlow without the copies `tf.constant` makes.

`tf.constant(array)` (and passing numpy to a concrete function, which does the same) holds two
new copies of the array while the tensor lives: measured here, a 63 MiB uint8 batch cost 126 MiB
on top of the array. A tensor made through DLPack shares the array's memory instead, but only an
array TensorFlow can use in place: numeric, C-contiguous, writable (numpy will not export a
read-only one) and aligned to 64 bytes (TensorFlow aborts the process on a misaligned buffer). So
`aligned_empty` allocates such arrays (the batcher concatenates into one), and `to_tensor` copies
anything else once into one before sharing it; strings and empty arrays go through `tf.constant`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ALIGNMENT = 64  # EIGEN_MAX_ALIGN_BYTES in TensorFlow's CPU builds; a multiple of every smaller one
_SHAREABLE = frozenset(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32,
                                              np.uint64, np.int64, np.float16, np.float32, np.float64))


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ALIGNMENT-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    offset = (-raw.ctypes.data) % ALIGNMENT
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


def shareable(array: np.ndarray) -> bool:
    """Whether TensorFlow can use this array's memory in place (see the module docstring)."""
    return (array.dtype in _SHAREABLE and array.size > 0 and array.flags.c_contiguous
            and array.flags.writeable and array.ctypes.data % ALIGNMENT == 0)


def to_tensor(array: np.ndarray) -> Any:
    """A tf.Tensor with the array's values, sharing its memory when it can (at most one copy)."""
    import tensorflow as tf

    if array.dtype not in _SHAREABLE or array.size == 0:
        return tf.constant(array)
    if not shareable(array):
        copy = aligned_empty(array.shape, array.dtype)
        np.copyto(copy, array)
        array = copy
    return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
