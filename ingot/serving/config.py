"""Model server configuration in TF Serving's own formats.

- `ModelServerConfig` text files (`--model_config_file`), parsed with tensorflow-serving-api's
  generated proto, so a config written for `tensorflow_model_server` works unchanged;
- `BatchingParameters` (`--batching_parameters_file`) and `MonitoringConfig`
  (`--monitoring_config_file`): tensorflow-serving-api does not ship these two protos, so their
  schemas (field names and numbers from TF Serving's .proto files) are declared here in a private
  descriptor pool and parsed with the same `text_format` machinery;
- the version policy: which of the numeric versions on disk a model should serve.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ingot.errors import ConfigError

DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"


# --------------------------------------------------------------------------- model server config


def parse_model_server_config(text: str, *, source: str = "<model config>"):
    """Parse ModelServerConfig text format; raises ConfigError naming the file and the problem."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as err:
        raise ConfigError(f"{source}: not a valid ModelServerConfig text proto: {err}") from None
    validate_model_server_config(config, source=source)
    return config


def load_model_server_config(path: str | os.PathLike) -> object:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read model config file {path}: {err.strerror or err}") from None
    config = parse_model_server_config(text, source=str(path))
    return resolve_base_paths(config, relative_to=Path.cwd())


def single_model_config(model_name: str, model_base_path: str | os.PathLike):
    """What `--model_name/--model_base_path` mean: one model, latest version."""
    from tensorflow_serving.config import model_server_config_pb2

    if not model_name:
        raise ConfigError("--model_name must not be empty")
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = model_name
    model.base_path = _absolute(model_base_path, Path.cwd())
    model.model_platform = "tensorflow"
    validate_model_server_config(config, source="--model_name/--model_base_path")
    return config


def repository_config(repository: str | os.PathLike):
    """Every model directory of a model repository (`<base>/<name>/<version>/`), latest version each.

    An Ingot convenience for `make serve`; TF Serving needs a config file listing the models.
    """
    from tensorflow_serving.config import model_server_config_pb2

    base = Path(repository).expanduser().resolve()
    if not base.is_dir():
        raise ConfigError(
            f"model repository {base} does not exist or is not a directory; publish a model first "
            "(`make run` trains and publishes the default one) or pass --model_base_path"
        )
    names = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise ConfigError(
            f"model repository {base} holds no model directories; publish a model first "
            "(expected <repository>/<model_name>/<version>/saved_model.pb)"
        )
    config = model_server_config_pb2.ModelServerConfig()
    for name in names:
        model = config.model_config_list.config.add()
        model.name = name
        model.base_path = str(base / name)
        model.model_platform = "tensorflow"
    validate_model_server_config(config, source=str(base))
    return config


def _absolute(base_path: str | os.PathLike, relative_to: Path) -> str:
    """Local paths become absolute; URLs (gs://, s3://) stay as they are."""
    text = os.fspath(base_path)
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = relative_to / path
    return str(path.resolve())


def model_roots(config, repository: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Where a model config reload may point: the model repository (when the models came from
    one) and each configured model's base path, made absolute as the config's paths are."""
    roots = [] if repository is None else [_absolute(repository, Path.cwd())]
    roots += [_absolute(model.base_path, Path.cwd()) for model in config.model_config_list.config]
    return tuple(dict.fromkeys(roots))


def path_under_roots(base_path: str, roots: tuple[str, ...]) -> bool:
    """Whether `base_path` (already absolute, symlinks resolved) is a root or lies below one; for
    URLs, textually below, with no `.` or `..` segment."""
    if "://" in base_path:
        if any(part in (".", "..") for part in base_path.split("://", 1)[1].split("/")):
            return False
        return any(base_path.rstrip("/") == root.rstrip("/") or base_path.startswith(root.rstrip("/") + "/")
                   for root in roots if "://" in root)
    path = Path(base_path)
    for root in roots:
        if "://" in root:
            continue
        if path == Path(root) or Path(root) in path.parents:
            return True
    return False


def resolve_base_paths(config, *, relative_to: Path):
    for model in config.model_config_list.config:
        model.base_path = _absolute(model.base_path, relative_to)
    return config


def validate_model_server_config(config, *, source: str) -> None:
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(
            f"{source}: only model_config_list is supported (custom_model_config is not)"
        )
    models = list(config.model_config_list.config)
    if not models:
        raise ConfigError(f"{source}: model_config_list has no config entries; add at least one model")
    seen: set[str] = set()
    for model in models:
        if not model.name:
            raise ConfigError(f"{source}: a model config has no name")
        if "/" in model.name or model.name.startswith("."):
            raise ConfigError(f"{source}: model name {model.name!r} must not contain '/' or start with '.'")
        if model.name in seen:
            raise ConfigError(f"{source}: model name {model.name!r} appears twice; names must be unique")
        seen.add(model.name)
        if not model.base_path:
            raise ConfigError(f"{source}: model {model.name!r} has no base_path")
        if model.model_platform not in ("", "tensorflow"):
            raise ConfigError(
                f"{source}: model {model.name!r} has model_platform {model.model_platform!r}; "
                "only 'tensorflow' SavedModels are served"
            )
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "specific" and not policy.specific.versions:
            raise ConfigError(f"{source}: model {model.name!r}: specific version policy lists no versions")
        for label, version in model.version_labels.items():
            if version <= 0:
                raise ConfigError(
                    f"{source}: model {model.name!r}: label {label!r} points to version {version}; "
                    "versions are positive integers"
                )


def model_config_text(config) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


# --------------------------------------------------------------------------- version policy


def aspired_versions(policy, on_disk: Iterable[int]) -> list[int]:
    """The versions a model should serve under its ServableVersionPolicy, highest first.

    Latest N (N defaults to and is at least 1, as in TF Serving), all, or a specific list
    (only those that exist on disk).
    """
    versions = sorted(set(int(v) for v in on_disk), reverse=True)
    choice = policy.WhichOneof("policy_choice") if policy is not None else None
    if choice == "all":
        return versions
    if choice == "specific":
        wanted = set(int(v) for v in policy.specific.versions)
        return [v for v in versions if v in wanted]
    count = max(int(policy.latest.num_versions), 1) if choice == "latest" else 1
    return versions[:count]


def numeric_versions(base_path: str | os.PathLike) -> list[int]:
    """Numeric version directories under a model's base path (TF Serving's rule, through
    ingot.repository): `.tmp-*` and anything else non-numeric is never looked at, so a
    half-written publish is invisible. An unreadable base path reads as no versions."""
    from ingot.repository import list_versions

    text = os.fspath(base_path).rstrip("/")
    parent, _, name = text.rpartition("/")
    try:
        return sorted(int(v) for v in list_versions(parent or "/", name))
    except Exception:  # noqa: BLE001 - TF Serving logs and retries on the next poll
        return []


# --------------------------------------------------------------------------- batching parameters


@dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's BatchingParameters with its defaults (shared_batch_scheduler.h)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None
    pad_variable_length_inputs: bool = False

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"batching parameter {name}={getattr(self, name)} must be >= 1")
        if self.batch_timeout_micros < 0:
            raise ConfigError(f"batching parameter batch_timeout_micros={self.batch_timeout_micros} must be >= 0")
        sizes = list(self.allowed_batch_sizes)
        if sizes:
            if any(s < 1 for s in sizes) or sizes != sorted(set(sizes)):
                raise ConfigError(
                    f"allowed_batch_sizes {sizes} must be positive and strictly increasing"
                )
            if sizes[-1] != self.execution_batch_size:
                raise ConfigError(
                    "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                    f"{sizes[-1]}; expected {self.execution_batch_size}"
                )

    @property
    def execution_batch_size(self) -> int:
        """The largest batch the model runs (max_batch_size unless large-batch splitting sets it)."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size:
            return int(self.max_execution_batch_size)
        return int(self.max_batch_size)

    def padded_size(self, size: int) -> int:
        """The allowed batch size a batch of `size` is padded to (itself when none are set)."""
        for allowed in self.allowed_batch_sizes:
            if allowed >= size:
                return allowed
        return size


_EXTRA_PROTOS: dict[str, type] = {}


def _extra_proto_classes() -> dict[str, type]:
    """BatchingParameters and MonitoringConfig message classes, built once in a private pool."""
    if _EXTRA_PROTOS:
        return _EXTRA_PROTOS
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    fdp = descriptor_pb2.FileDescriptorProto(
        name="ingot/serving/tf_serving_extra_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    F = descriptor_pb2.FieldDescriptorProto
    batching = fdp.message_type.add(name="BatchingParameters")
    for name, number, type_name in (
        ("max_batch_size", 1, ".google.protobuf.Int64Value"),
        ("batch_timeout_micros", 2, ".google.protobuf.Int64Value"),
        ("max_enqueued_batches", 3, ".google.protobuf.Int64Value"),
        ("num_batch_threads", 4, ".google.protobuf.Int64Value"),
        ("thread_pool_name", 5, ".google.protobuf.StringValue"),
        ("enable_large_batch_splitting", 8, ".google.protobuf.BoolValue"),
        ("max_execution_batch_size", 9, ".google.protobuf.Int64Value"),
    ):
        batching.field.add(name=name, number=number, type=F.TYPE_MESSAGE, type_name=type_name, label=F.LABEL_OPTIONAL)
    batching.field.add(name="allowed_batch_sizes", number=6, type=F.TYPE_INT64, label=F.LABEL_REPEATED)
    batching.field.add(name="pad_variable_length_inputs", number=7, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)

    prometheus = fdp.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    monitoring = fdp.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config", number=1, type=F.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig", label=F.LABEL_OPTIONAL,
    )
    pool.Add(fdp)
    for name in ("BatchingParameters", "MonitoringConfig"):
        descriptor = pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        _EXTRA_PROTOS[name] = message_factory.GetMessageClass(descriptor)
    return _EXTRA_PROTOS


def _parse_text(message_name: str, text: str, source: str):
    from google.protobuf import text_format

    message = _extra_proto_classes()[message_name]()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        raise ConfigError(f"{source}: not a valid {message_name} text proto: {err}") from None
    return message


def parse_batching_parameters(text: str, *, source: str = "<batching parameters>") -> BatchingOptions:
    """TF Serving's BatchingParameters text format → BatchingOptions (unset fields keep TF's defaults)."""
    message = _parse_text("BatchingParameters", text, source)
    kwargs: dict = {}
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
                 "max_execution_batch_size", "enable_large_batch_splitting"):
        if message.HasField(name):
            kwargs[name] = getattr(message, name).value
    if message.allowed_batch_sizes:
        kwargs["allowed_batch_sizes"] = tuple(int(s) for s in message.allowed_batch_sizes)
    kwargs["pad_variable_length_inputs"] = bool(message.pad_variable_length_inputs)
    try:
        return BatchingOptions(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load_batching_parameters(path: str | os.PathLike) -> BatchingOptions:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"cannot read batching parameters file {path}: {err.strerror or err}") from None
    return parse_batching_parameters(text, source=str(path))


@dataclass(frozen=True)
class MonitoringOptions:
    prometheus_enabled: bool = True
    prometheus_path: str = DEFAULT_METRICS_PATH


def load_monitoring_config(path: str | os.PathLike | None) -> MonitoringOptions:
    """TF Serving's MonitoringConfig. Without a file Ingot still exports metrics at TF Serving's
    path (TF Serving needs the file to enable them); a file can turn them off or move them."""
    if not path:
        return MonitoringOptions()
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"cannot read monitoring config file {path}: {err.strerror or err}") from None
    message = _parse_text("MonitoringConfig", text, str(path))
    prom = message.prometheus_config
    metrics_path = prom.path or DEFAULT_METRICS_PATH
    if not metrics_path.startswith("/"):
        raise ConfigError(f"{path}: prometheus_config.path {metrics_path!r} must start with '/'")
    return MonitoringOptions(prometheus_enabled=bool(prom.enable), prometheus_path=metrics_path)


def parse_bool_flag(value: str | bool) -> bool:
    """TF Serving's bool flags: `--enable_batching`, `--enable_batching=true|false|1|0`."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"expected true or false, got {value!r}")

