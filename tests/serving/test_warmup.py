"""Warm-up replays every signature's records, the signatures on several threads at once, and a
bad record still fails the load whichever thread runs it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ingot.protocol.status import ServingError
from ingot.serving.config import BatchingOptions
from ingot.serving.servable import DirectPool, Servable

pytestmark = pytest.mark.xdist_group("serving-lifecycle")  # the same worker as the exports

ALLOWED = (1, 2, 4, 8)


def _servable(path) -> Servable:
    batching = BatchingOptions(max_batch_size=8, allowed_batch_sizes=ALLOWED, num_batch_threads=1)
    servable = Servable("colours", 1, path, batching=batching, direct_pool=DirectPool(1, 8), max_elements=1 << 20)
    servable.load()
    return servable


def test_parallel_warm_up_covers_what_the_sequential_one_covers(exports):
    sequential, parallel = _servable(exports["v1"]), _servable(exports["v1"])
    try:
        one = sequential.warm_up(threads=1)
        two = parallel.warm_up(threads=2)
    finally:
        sequential.unload()
        parallel.unload()
    assert one.records == two.records == 7  # serving_default and serving_bytes at 1, 2, 4; the embedding at 1
    assert one.requests_replayed == two.requests_replayed == 9  # plus the padded 8 for the two answering ones
    assert one.batch_sizes_run == two.batch_sizes_run == {
        "serving_default": list(ALLOWED), "serving_bytes": list(ALLOWED), "serving_embedding": [1]}
    assert sorted(one.extra_batch_sizes) == sorted(two.extra_batch_sizes) == [8, 8]


def test_a_bad_record_fails_the_parallel_warm_up(exports, tmp_path):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    copy = tmp_path / "v1"
    shutil.copytree(exports["v1"], copy)
    warmup = copy / "assets.extra" / "tf_serving_warmup_requests"
    records = [raw.numpy() for raw in tf.data.TFRecordDataset(str(warmup))]
    bad = predict_pb2.PredictRequest()
    bad.model_spec.name = "colours"
    bad.model_spec.signature_name = "serving_bytes"
    bad.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(np.array([b"not an image"], dtype=object)))
    records.append(prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=bad)).SerializeToString())
    with tf.io.TFRecordWriter(str(warmup)) as writer:
        for record in records:
            writer.write(record)
    servable = _servable(copy)
    try:
        with pytest.raises(ServingError) as caught:
            servable.warm_up(threads=2)
    finally:
        servable.unload()
    assert caught.value.code.name == "INVALID_ARGUMENT"
