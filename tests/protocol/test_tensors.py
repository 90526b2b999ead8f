"""TensorProto ⇄ numpy without TensorFlow, checked against TensorFlow's own conversion."""

from __future__ import annotations

import numpy as np
import pytest

from ingot.protocol.status import ServingError
from ingot.protocol.tensors import DT_STRING, DT_UINT8, TensorSpec, array_from_proto, array_to_proto

tf = pytest.importorskip("tensorflow")  # ships with the project; the comparisons need it


@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3),
        np.array([[0.1, -2.5]], np.float32),
        np.array([1, -(2**40)], np.int64),
        np.array([True, False]),
        np.array([b"\x89PNG", b""], dtype=object),
        np.array(3.5, np.float64),
    ],
)
def test_round_trip_matches_tensorflow(array):
    from tensorflow.core.framework import tensor_pb2

    ours = array_to_proto(array, tensor_pb2.TensorProto())
    np.testing.assert_array_equal(tf.make_ndarray(ours), array)
    theirs = tf.make_tensor_proto(array)
    back = array_from_proto("x", theirs, None, max_elements=1000)
    np.testing.assert_array_equal(back, array)
    assert back.shape == array.shape


def test_typed_value_fields_and_broadcast():
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto(dtype=DT_UINT8)
    for d in (1, 2, 2, 3):
        proto.tensor_shape.dim.add().size = d
    proto.int_val.extend(range(12))
    spec = TensorSpec(DT_UINT8, (None, 2, 2, 3))
    assert array_from_proto("images", proto, spec, max_elements=100).ravel().tolist() == list(range(12))
    del proto.int_val[:]
    proto.int_val.append(9)
    assert array_from_proto("images", proto, spec, max_elements=100).sum() == 9 * 12
    proto.int_val.append(300)
    with pytest.raises(ServingError, match="2 values in int_val do not fill shape"):
        array_from_proto("images", proto, spec, max_elements=100)


def test_claimed_shape_is_checked_before_any_allocation():
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto(dtype=DT_UINT8)
    for d in (10**9, 2, 2, 3):  # 12 GB claimed by a 20-byte message
        proto.tensor_shape.dim.add().size = d
    proto.int_val.append(0)
    spec = TensorSpec(DT_UINT8, (None, 2, 2, 3))
    with pytest.raises(ServingError, match="more than the server's limit"):
        array_from_proto("images", proto, spec, max_elements=1 << 24)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: tf.make_tensor_proto(np.zeros((1, 2, 2, 3), np.float32)), "dtype float; the signature expects uint8"),
        (lambda: tf.make_tensor_proto(np.zeros((1, 3, 2, 3), np.uint8)), "has shape \\[1,3,2,3\\]"),
        (lambda: tf.make_tensor_proto(np.zeros((2, 3), np.uint8)), "has rank 2"),
    ],
)
def test_dtype_and_shape_must_fit_the_signature(make, fragment):
    with pytest.raises(ServingError, match=fragment):
        array_from_proto("images", make(), TensorSpec(DT_UINT8, (None, 2, 2, 3)), max_elements=1000)


def test_truncated_tensor_content_is_refused():
    proto = tf.make_tensor_proto(np.zeros((2, 2, 2, 3), np.uint8))
    proto.tensor_content = proto.tensor_content[:-1]
    with pytest.raises(ServingError, match="tensor_content has 23 bytes"):
        array_from_proto("images", proto, TensorSpec(DT_UINT8, (None, 2, 2, 3)), max_elements=1000)


def test_strings_keep_their_bytes():
    proto = tf.make_tensor_proto([b"a", b"\x00b"])
    value = array_from_proto("image_bytes", proto, TensorSpec(DT_STRING, (None,)), max_elements=10)
    assert value.tolist() == [b"a", b"\x00b"]
