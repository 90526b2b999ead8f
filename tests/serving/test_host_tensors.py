"""ingot.serving.host_tensors: inputs reach TensorFlow sharing memory when they can, copied once
(never misaligned, which would abort the process) when they cannot."""

from __future__ import annotations

import numpy as np
import pytest

from ingot.serving.batching import Task, merge_inputs, shape_key
from ingot.serving.host_tensors import ALIGNMENT, aligned_empty, shareable, to_tensor


def test_aligned_empty_is_aligned_contiguous_and_writable():
    for dtype in (np.uint8, np.float32, np.int64, np.float16):
        array = aligned_empty((3, 5, 7), dtype)
        assert array.shape == (3, 5, 7) and array.dtype == dtype
        assert array.ctypes.data % ALIGNMENT == 0 and array.flags.c_contiguous and array.flags.writeable
        assert shareable(array)


def test_an_aligned_array_is_shared_not_copied():
    array = aligned_empty((2, 4), np.float32)
    array[:] = 1.0
    tensor = to_tensor(array)
    array[0, 0] = 42.0  # visible through the tensor: one buffer
    assert tensor.numpy()[0, 0] == 42.0


@pytest.mark.parametrize("make", [
    lambda: np.frombuffer(b"\x00" + bytes(range(48)), np.uint8)[1:].reshape(2, 24),  # read-only, misaligned
    lambda: aligned_empty((100,), np.uint8)[3:99].reshape(8, 12),  # writable, misaligned
    lambda: np.arange(24, dtype=np.int64).reshape(4, 6).T,  # not C-contiguous
])
def test_other_arrays_are_copied_once_with_their_values(make):
    array = make()
    array_values = np.array(array)
    assert not shareable(array)
    tensor = to_tensor(array)
    np.testing.assert_array_equal(tensor.numpy(), array_values)
    assert tensor.dtype.as_numpy_dtype == array.dtype


def test_strings_bools_and_empty_arrays_go_through_tf_constant():
    strings = np.array([b"a", b"bc"], dtype=object)
    assert list(to_tensor(strings).numpy()) == [b"a", b"bc"]
    assert to_tensor(np.array([True, False])).numpy().tolist() == [True, False]
    assert to_tensor(np.zeros((0, 3), np.float32)).shape == (0, 3)


def test_merged_batches_are_aligned_and_padded_with_the_first_item():
    parts = [np.full((n, 2, 2), n, np.uint8) for n in (1, 2)]
    tasks = [Task({"x": p}, len(p), shape_key({"x": p})) for p in parts]
    merged = merge_inputs(tasks, 5)["x"]
    assert shareable(merged)
    np.testing.assert_array_equal(merged[:, 0, 0], [1, 2, 2, 1, 1])
    strings = [Task({"s": np.array([b"a"], dtype=object)}, 1, ()), Task({"s": np.array([b"b"], dtype=object)}, 1, ())]
    assert merge_inputs(strings, 3)["s"].tolist() == [b"a", b"b", b"a"]
