"""`serving_embedding` on `ingot serve`: REST (row and columnar), gRPC Predict and metadata, the
same embedding every way."""

from __future__ import annotations

import numpy as np
import pytest

from tests.serving.support import MODEL, colour_images, grpc_stubs, http, predict_request

pytestmark = pytest.mark.xdist_group("serving-conformance")  # one worker: shared server, ordered tests


def test_embedding_over_rest_and_grpc_agree_and_metadata_lists_it(conformance_server):
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2

    images = colour_images([0, 1, 2], seed=21)
    url = conformance_server.rest_url
    status, rows, _ = http("POST", f"{url}/v1/models/{MODEL}/versions/1:predict",
                           {"signature_name": "serving_embedding", "instances": images.tolist()})
    assert status == 200, rows
    by_rows = np.asarray(rows["predictions"], dtype=np.float32)
    assert by_rows.ndim == 2 and by_rows.shape[0] == 3 and by_rows.std() > 0
    status, columns, _ = http("POST", f"{url}/v1/models/{MODEL}/versions/1:predict",
                              {"signature_name": "serving_embedding", "inputs": {"images": images.tolist()}})
    # One output: TF Serving's REST answer holds the bare tensor, not a dict of one key.
    assert status == 200 and isinstance(columns["outputs"], list)
    np.testing.assert_allclose(np.asarray(columns["outputs"]), by_rows, rtol=1e-5, atol=1e-6)

    channel, prediction, _ = grpc_stubs(conformance_server.grpc_target)
    try:
        response = prediction.Predict(predict_request(images=images, signature="serving_embedding", version=1),
                                      timeout=30)
        assert set(response.outputs) == {"embedding"}
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["embedding"]), by_rows, rtol=1e-5, atol=1e-6)
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = MODEL
        request.model_spec.version.value = 1
        request.metadata_field.append("signature_def")
        signatures = get_model_metadata_pb2.SignatureDefMap()
        assert prediction.GetModelMetadata(request, timeout=30).metadata["signature_def"].Unpack(signatures)
        embedding = signatures.signature_def["serving_embedding"]
        assert embedding.inputs["images"].dtype == tf.uint8.as_datatype_enum
        assert embedding.outputs["embedding"].dtype == tf.float32.as_datatype_enum
    finally:
        channel.close()

    status, body, _ = http("GET", f"{url}/v1/models/{MODEL}/versions/1/metadata")
    assert status == 200 and "serving_embedding" in body["metadata"]["signature_def"]["signature_def"]


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_the_monitor_embeds_captured_images_through_the_client(conformance_server, transport):
    """The monitor's embedder (no TensorFlow: Pillow decode, ingot.client) gives the server's embedding."""
    from ingot.client import Client
    from ingot.monitor.embedding import server_embedder
    from tests.serving.support import SIZE, png

    images = colour_images([0, 1, 2, 1], seed=22)
    target = (conformance_server.rest_url if transport == "rest"
              else f"grpc://{conformance_server.grpc_target}")
    with Client.connect(target) as client:
        embedded = server_embedder(client, MODEL, SIZE, version=1, batch=3)([png(image) for image in images])
    _, direct, _ = http("POST", f"{conformance_server.rest_url}/v1/models/{MODEL}/versions/1:predict",
                        {"signature_name": "serving_embedding", "instances": images.tolist()})
    assert embedded.shape[0] == 4
    from ingot.monitor.embedding import lazy_server_embedder

    lazy = lazy_server_embedder(lambda: Client.connect(target), MODEL, 1)  # input size from the metadata
    np.testing.assert_allclose(lazy([png(image) for image in images]), embedded[:, :], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(embedded, np.asarray(direct["predictions"]), rtol=1e-5, atol=1e-5)
