"""The protocol package's defences, without a server: costs checked before expansion, capped
inflation, UTF-8 only, balanced brackets on the fast path, long version numbers, image headers."""

from __future__ import annotations

import gzip
import io
import zlib

import numpy as np
import pytest

from ingot.protocol.images import check_encoded_images, declared_size
from ingot.protocol.rest.encoding import decode_content
from ingot.protocol.rest.fast import parse_dense_integer_array
from ingot.protocol.rest.request import JsonLimits, parse_predict_request
from ingot.protocol.routes import parse_v1_path
from ingot.protocol.status import Code, ServingError
from ingot.protocol.tensors import (
    DT_STRING,
    DT_UINT8,
    DecodeBudget,
    SignatureSpec,
    TensorSpec,
    array_from_proto,
)

IMAGES = SignatureSpec("serving_default", {"images": TensorSpec(DT_UINT8, (None, 4, 4, 3))}, {})
BYTES = SignatureSpec("serving_bytes", {"image_bytes": TensorSpec(DT_STRING, (None,))}, {})


def lookup(name):
    return {"": IMAGES, "serving_default": IMAGES, "serving_bytes": BYTES}[name]


def short_proto(dtype, shape, value):
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto(dtype=dtype)
    for d in shape:
        proto.tensor_shape.dim.add().size = d
    (proto.string_val if dtype == DT_STRING else proto.int_val).append(value)
    return proto


def test_a_short_string_tensor_is_costed_as_expanded_before_it_is():
    proto = short_proto(DT_STRING, (1000,), b"x" * 1024)  # 1 KiB sent, 1 MiB claimed
    with pytest.raises(ServingError, match="1056000 bytes once decoded, more than .* 1000000 bytes") as info:
        array_from_proto("image_bytes", proto, BYTES.inputs["image_bytes"], max_elements=1 << 24,
                         budget=DecodeBudget(1_000_000))
    assert info.value.code == Code.INVALID_ARGUMENT and "max_decoded_bytes" in info.value.message
    array = array_from_proto("image_bytes", proto, BYTES.inputs["image_bytes"], max_elements=1 << 24,
                             budget=DecodeBudget(2_000_000))
    assert array.shape == (1000,) and array[999] == b"x" * 1024


def test_rows_and_bytes_are_charged_across_inputs_of_one_request():
    budget = DecodeBudget(100)
    spec = IMAGES.inputs["images"]
    array_from_proto("images", short_proto(DT_UINT8, (2, 4, 4, 3), 1), spec, max_elements=1 << 20, budget=budget)
    assert budget.used == 96
    with pytest.raises(ServingError, match="192 bytes once decoded"):
        array_from_proto("images", short_proto(DT_UINT8, (2, 4, 4, 3), 1), spec, max_elements=1 << 20, budget=budget)
    with pytest.raises(ServingError, match="5461 rows .* limit of 64 per request"):
        array_from_proto("images", short_proto(DT_UINT8, (5461, 4, 4, 3), 1), spec, max_elements=1 << 20, max_rows=64)


def test_json_requests_obey_rows_and_decoded_bytes():
    body = b'{"instances": ' + str([[[[1, 2, 3]] * 4] * 4] * 5).encode() + b"}"
    assert parse_predict_request(body, lookup, JsonLimits(max_rows=5)).inputs["images"].shape == (5, 4, 4, 3)
    for fast_path in (True, False):
        with pytest.raises(ServingError, match="max_batch_rows"):
            parse_predict_request(body, lookup, JsonLimits(max_rows=4), fast_path=fast_path)
        with pytest.raises(ServingError, match="max_decoded_bytes"):
            parse_predict_request(body, lookup, JsonLimits(max_bytes=200), fast_path=fast_path)
    strings = b'{"signature_name": "serving_bytes", "instances": [{"b64": "' + b"QUFB" * 100 + b'"}]}'
    with pytest.raises(ServingError, match="max_decoded_bytes"):
        parse_predict_request(strings, lookup, JsonLimits(max_bytes=300))


@pytest.mark.parametrize("text", [b"[0]]][[0]", b"[[0],[0]]]", b"[[0]]]", b"]0[", b"[0,[0]]"])
def test_unbalanced_brackets_leave_the_fast_path(text):
    assert parse_dense_integer_array(text) is None


def test_unbalanced_brackets_in_a_request_are_a_json_parse_error():
    with pytest.raises(ServingError, match="JSON Parse error"):
        parse_predict_request(b'{"instances":[0]]][[0]}', lookup)


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_json_in_other_unicode_encodings_is_refused_before_scanning(codec):
    body = ('{"instances": ' + "[" * 40 + "1" + "]" * 40 + "}").encode(codec)
    with pytest.raises(ServingError, match="not UTF-8 text; JSON must be UTF-8"):
        parse_predict_request(body, lookup, JsonLimits(max_depth=8))


def test_utf8_with_non_ascii_strings_is_still_accepted():
    body = '{"signature_name": "serving_bytes", "instances": ["żółw 🐢"]}'.encode()
    assert parse_predict_request(body, lookup).inputs["image_bytes"][0] == "żółw 🐢".encode()


def test_inflation_is_capped_chunk_by_chunk():
    bomb = zlib.compress(b"\0" * (64 << 20), 9)
    with pytest.raises(ServingError, match="decompresses to more than the limit of 1048576") as info:
        decode_content(bomb, "deflate", 1 << 20)
    assert info.value.http_status == 413
    assert decode_content(gzip.compress(b'{"a": 1}'), "GZip", 100) == b'{"a": 1}'
    assert decode_content(b"plain", "identity", 100) == b"plain"
    with pytest.raises(ServingError, match="not valid gzip data") as info:
        decode_content(b"\x1f\x8b\x08\x00 junk", "gzip", 100)
    assert info.value.http_status == 400
    with pytest.raises(ServingError, match="'br' is not supported") as info:
        decode_content(b"x", "br", 100)
    assert info.value.http_status == 415


def test_versions_with_thousands_of_digits_are_a_400_not_a_crash():
    with pytest.raises(ServingError, match="Failed to convert version"):
        parse_v1_path("GET", "/v1/models/m/versions/" + "9" * 5000)
    assert parse_v1_path("GET", "/v1/models/m/versions/" + "0" * 5000 + "7").version == 7
    with pytest.raises(ServingError, match="Failed to convert version"):
        parse_v1_path("POST", f"/v1/models/m/versions/{1 << 63}:predict")


def _image(fmt, size):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB" if fmt != "PNG" else "L", size).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_declared_image_size_is_read_from_the_header(fmt):
    assert declared_size(_image(fmt, (300, 200))) == (300, 200)
    ok = np.array([_image(fmt, (100, 100)), b"not an image"], dtype=object)
    check_encoded_images({"image_bytes": ok}, max_pixels=10_000)
    with pytest.raises(ServingError, match="item 1: a .* image of 101x100 pixels"):
        check_encoded_images({"image_bytes": np.array([ok[0], _image(fmt, (101, 100))], dtype=object)},
                             max_pixels=10_000)


def test_a_bomb_beyond_pillows_own_bound_and_a_truncated_header_are_refused():
    bomb = _image("PNG", (20000, 20000))
    assert len(bomb) < 2 << 20
    with pytest.raises(ServingError, match="decompression-bomb bound"):
        check_encoded_images({"image_bytes": np.array([bomb], dtype=object)}, max_pixels=50_000_000)
    with pytest.raises(ServingError, match="cannot read the PNG image header"):
        check_encoded_images({"image_bytes": np.array([bomb[:12]], dtype=object)}, max_pixels=50_000_000)
    check_encoded_images({"image_bytes": np.array([bomb], dtype=object)}, max_pixels=None)  # off


def test_long_value_lists_convert_in_slices_with_the_same_result_and_checks():
    from tensorflow.core.framework import tensor_pb2

    from ingot.protocol.tensors import DT_BOOL, DT_FLOAT, DT_UINT64, VALUE_CHUNK

    n = VALUE_CHUNK * 2 + 5
    values = np.arange(n) % 256
    proto = tensor_pb2.TensorProto(dtype=DT_UINT8)
    proto.tensor_shape.dim.add().size = n
    proto.int_val.extend(values.tolist())
    np.testing.assert_array_equal(array_from_proto("x", proto, None, max_elements=1 << 24), values.astype(np.uint8))
    proto.int_val[n - 1] = 256  # out of range in the last slice
    with pytest.raises(ServingError, match="out of range for uint8"):
        array_from_proto("x", proto, None, max_elements=1 << 24)
    for dtype, field, data, expected in (
        (DT_FLOAT, "float_val", [0.5] * n, np.float32),
        (DT_BOOL, "bool_val", [True, False] * (n // 2), np.bool_),
        (DT_UINT64, "uint64_val", [2**64 - 1] * n, np.uint64),
    ):
        proto = tensor_pb2.TensorProto(dtype=dtype)
        proto.tensor_shape.dim.add().size = len(data)
        getattr(proto, field).extend(data)
        array = array_from_proto("x", proto, None, max_elements=1 << 24)
        assert array.dtype == expected
        np.testing.assert_array_equal(array, np.array(data, dtype=expected))
