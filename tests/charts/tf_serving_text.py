"""Parse the TF Serving config files the chart renders, with protobuf's own text-format parser.

ModelServerConfig comes from tensorflow-serving-api. MonitoringConfig and BatchingParameters are not
shipped in that package, so their descriptors are declared here from TF Serving's .proto files
(tensorflow_serving/config/monitoring_config.proto, servables/tensorflow/session_bundle_config.proto);
only names and types matter to the text parser, which rejects unknown fields and wrong types.
"""

from __future__ import annotations

from functools import lru_cache

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,  # noqa: F401  (registers google/protobuf/wrappers.proto)
)
from tensorflow_serving.config import model_server_config_pb2

_F = descriptor_pb2.FieldDescriptorProto


@lru_cache(maxsize=1)
def _messages() -> dict[str, type]:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(descriptor_pb2.FileDescriptorProto.FromString(
        wrappers_pb2.DESCRIPTOR.serialized_pb).SerializeToString())
    proto = descriptor_pb2.FileDescriptorProto(
        name="ingot_test/tf_serving_configs.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=_F.TYPE_MESSAGE, label=_F.LABEL_OPTIONAL,
                         type_name=".tensorflow.serving.PrometheusConfig")
    batching = proto.message_type.add(name="BatchingParameters")
    for number, name in enumerate(["max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"], 1):
        batching.field.add(name=name, number=number, type=_F.TYPE_MESSAGE, label=_F.LABEL_OPTIONAL,
                           type_name=".google.protobuf.Int64Value")
    batching.field.add(name="thread_pool_name", number=5, type=_F.TYPE_MESSAGE, label=_F.LABEL_OPTIONAL,
                       type_name=".google.protobuf.StringValue")
    batching.field.add(name="allowed_batch_sizes", number=6, type=_F.TYPE_INT64, label=_F.LABEL_REPEATED)
    batching.field.add(name="pad_variable_length_inputs", number=7, type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL)
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
            for name in ("MonitoringConfig", "BatchingParameters")}


def parse_model_server_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def parse_monitoring_config(text: str):
    return text_format.Parse(text, _messages()["MonitoringConfig"]())


def parse_batching_parameters(text: str):
    return text_format.Parse(text, _messages()["BatchingParameters"]())
