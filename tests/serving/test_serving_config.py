"""Config parsing in TF Serving's text formats, version policies, and `ingot serve` flags."""

from __future__ import annotations

import argparse

import pytest

from ingot.errors import ConfigError
from ingot.serving.config import (
    BatchingOptions,
    aspired_versions,
    load_monitoring_config,
    numeric_versions,
    parse_batching_parameters,
    parse_model_server_config,
    repository_config,
    single_model_config,
)

CONFIG = """
model_config_list {
  config {
    name: "flowers"
    base_path: "/models/flowers"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 3 versions: 4 } }
    version_labels { key: "stable" value: 3 }
    version_labels { key: "canary" value: 4 }
  }
  config {
    name: "digits"
    base_path: "/models/digits"
    model_version_policy { all {} }
  }
}
"""


def test_model_server_config_text_format_with_policies_and_labels():
    config = parse_model_server_config(CONFIG)
    flowers, digits = config.model_config_list.config
    assert flowers.name == "flowers" and digits.base_path == "/models/digits"
    assert dict(flowers.version_labels) == {"stable": 3, "canary": 4}
    assert aspired_versions(flowers.model_version_policy, [1, 2, 3, 4, 5]) == [4, 3]
    assert aspired_versions(digits.model_version_policy, [1, 7, 3]) == [7, 3, 1]


def test_latest_policy_defaults_to_one_and_takes_n_newest():
    from tensorflow_serving.config import file_system_storage_path_source_pb2 as fs

    policy = fs.FileSystemStoragePathSourceConfig.ServableVersionPolicy()
    assert aspired_versions(policy, [2, 10, 9]) == [10]
    policy.latest.num_versions = 2
    assert aspired_versions(policy, [2, 10, 9]) == [10, 9]
    assert aspired_versions(policy, []) == []


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("model_config_list { config { name: 'a' } }", "no base_path"),
        ("model_config_list { config { base_path: '/x' } }", "has no name"),
        ("model_config_list { }", "no config entries"),
        ("model_config_list { config { name: 'a' base_path: '/x' } config { name: 'a' base_path: '/y' } }", "appears twice"),
        ("model_config_list { config { name: 'a' base_path: '/x' model_platform: 'pytorch' } }", "only 'tensorflow'"),
        ("model_config_list { config { name: 'a' base_path: '/x' model_version_policy { specific {} } } }", "lists no versions"),
        ("model_config_list { config { name: 'a' base_path: '/x' version_labels { key: 'x' value: 0 } } }", "positive"),
        ("model_config_list { config { nme: 'a' } }", "not a valid ModelServerConfig"),
        ("custom_model_config { }", "only model_config_list"),
    ],
)
def test_bad_model_configs_are_refused_with_the_reason(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_model_server_config(text, source="models.config")


def test_numeric_versions_ignore_tmp_and_non_numeric_entries(tmp_path):
    for name in ("1", "12", ".tmp-abc", "latest", "3x"):
        (tmp_path / "m" / name).mkdir(parents=True)
    (tmp_path / "m" / "7").write_text("a file, not a version")
    assert numeric_versions(tmp_path / "m") == [1, 12]
    assert numeric_versions(tmp_path / "missing") == []


def test_single_model_and_repository_configs(tmp_path):
    config = single_model_config("m", tmp_path / "m")
    assert config.model_config_list.config[0].base_path == str((tmp_path / "m").resolve())
    (tmp_path / "repo" / "b" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "a").mkdir()
    (tmp_path / "repo" / ".tmp-x").mkdir()
    names = [m.name for m in repository_config(tmp_path / "repo").model_config_list.config]
    assert names == ["a", "b"]
    with pytest.raises(ConfigError, match="holds no model directories"):
        repository_config(tmp_path / "repo" / "a")
    with pytest.raises(ConfigError, match="does not exist"):
        repository_config(tmp_path / "nowhere")


def test_batching_parameters_text_format_and_tf_serving_defaults():
    options = parse_batching_parameters(
        """
        max_batch_size { value: 16 }
        batch_timeout_micros { value: 2000 }
        max_enqueued_batches { value: 4 }
        num_batch_threads { value: 2 }
        allowed_batch_sizes: 4
        allowed_batch_sizes: 8
        allowed_batch_sizes: 16
        """
    )
    assert (options.max_batch_size, options.batch_timeout_micros, options.max_enqueued_batches) == (16, 2000, 4)
    assert options.num_batch_threads == 2 and options.allowed_batch_sizes == (4, 8, 16)
    assert [options.padded_size(n) for n in (1, 4, 5, 16)] == [4, 4, 8, 16]
    defaults = parse_batching_parameters("")
    assert (defaults.max_batch_size, defaults.batch_timeout_micros, defaults.max_enqueued_batches) == (1000, 0, 10)
    assert BatchingOptions(max_batch_size=5).padded_size(3) == 3


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("max_batch_size { value: 8 } allowed_batch_sizes: 2 allowed_batch_sizes: 4", "must match max_batch_size"),
        ("allowed_batch_sizes: 4 allowed_batch_sizes: 2 max_batch_size { value: 2 }", "strictly increasing"),
        ("max_batch_size { value: 0 }", "max_batch_size=0 must be >= 1"),
        ("max_batch_size: 8", "not a valid BatchingParameters"),
    ],
)
def test_bad_batching_parameters_are_refused(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_batching_parameters(text, source="batching.config")


def test_monitoring_config(tmp_path):
    assert load_monitoring_config(None).prometheus_enabled
    path = tmp_path / "monitoring.config"
    path.write_text('prometheus_config { enable: true, path: "/metrics" }')
    assert load_monitoring_config(path).prometheus_path == "/metrics"
    path.write_text("prometheus_config { enable: false }")
    assert not load_monitoring_config(path).prometheus_enabled
    path.write_text("prometheus_config { enabled: true }")
    with pytest.raises(ConfigError, match="MonitoringConfig"):
        load_monitoring_config(path)


def _serve_args(*argv: str) -> argparse.Namespace:
    from ingot.cli.main import build_parser

    return build_parser().parse_args(["serve", *argv])


def test_serve_flags_are_tf_servings(tmp_path):
    from ingot.cli.serve import server_options

    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 8 } batch_timeout_micros { value: 500 }")
    options = server_options(_serve_args(
        "--port=9000", "--rest_api_port=9001", "--model_name=m", f"--model_base_path={tmp_path}",
        "--enable_batching=true", f"--batching_parameters_file={batching}", "--rest_api_timeout_in_ms=250",
        "--file_system_poll_wait_seconds=5", "--enable_model_warmup=false", "--num_model_warmup_threads=3",
    ))
    assert (options.grpc_port, options.rest_port, options.host) == (9000, 9001, "127.0.0.1")
    assert options.manager.batching.max_batch_size == 8
    assert options.rest_timeout_s == 0.25 and options.manager.file_system_poll_wait_seconds == 5
    assert options.manager.enable_model_warmup is False and options.manager.warmup_threads == 3
    assert options.model_config.model_config_list.config[0].name == "m"


def test_hostile_input_limits_are_flags_with_sane_defaults(tmp_path):
    from ingot.cli.serve import server_options

    defaults = server_options(_serve_args(f"--model_base_path={tmp_path}")).limits
    assert (defaults.max_decoded_bytes, defaults.max_batch_rows, defaults.max_image_pixels) == (128 << 20, 1024, 50_000_000)
    assert (defaults.header_timeout_s, defaults.body_timeout_s, defaults.idle_timeout_s) == (10, 30, 60)
    limits = server_options(_serve_args(
        f"--model_base_path={tmp_path}", "--max_decoded_bytes=1000", "--max_batch_rows=0", "--max_image_pixels=0",
        "--http_header_timeout_seconds=2", "--http_body_timeout_seconds=3", "--http_idle_timeout_seconds=4",
        "--parse_workers=1",
    )).limits
    assert (limits.max_decoded_bytes, limits.max_batch_rows, limits.max_image_pixels) == (1000, None, None)
    assert (limits.header_timeout_s, limits.body_timeout_s, limits.idle_timeout_s, limits.parse_workers) == (2, 3, 4, 1)
    assert limits.json.max_bytes == 1000 and limits.json.max_rows is None
    help_text = build_help()
    for flag in ("--max_decoded_bytes", "--max_batch_rows", "--max_image_pixels", "--http_header_timeout_seconds",
                 "--http_body_timeout_seconds", "--http_idle_timeout_seconds", "--parse_workers"):
        assert flag in help_text


def build_help() -> str:
    from ingot.cli.main import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return subparsers.choices["serve"].format_help()


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--model_base_path=B", "--max_decoded_bytes=0"], "--max_decoded_bytes must be positive"),
        (["--model_base_path=B", "--max_batch_rows=-1"], "--max_batch_rows must be 0"),
        (["--model_base_path=B", "--batching_parameters_file=x"], "without --enable_batching"),
        (["--model_base_path=B", "--num_model_warmup_threads=0"], "--num_model_warmup_threads=0 must be at least 1"),
        (["--model_base_path=B", "--port=8600", "--rest_api_port=8600"], "must differ"),
        (["--model_base_path=B", "--port=0", "--rest_api_port=0"], "both APIs are disabled"),
        (["--model_base_path=B", "--port=70000"], "not a port number"),
        (["--model_config_file=/nonexistent/models.config"], "cannot read model config file"),
        (["--model_config_file=C", "--model_base_path=B"], "not both"),
        (["--model_repository=/nonexistent/repo"], "does not exist"),
    ],
)
def test_bad_serve_flags_fail_before_serving(tmp_path, argv, fragment):
    from ingot.cli.serve import server_options

    argv = [a.replace("=B", f"={tmp_path}").replace("=C", f"={tmp_path}/c") for a in argv]
    with pytest.raises(ConfigError, match=fragment):
        server_options(_serve_args(*argv))


def test_try_commands_show_curl_and_ingot_predict():
    from ingot.cli.serve import try_commands

    text = try_commands("0.0.0.0", 8501, 8500, ["digits"])
    assert "curl http://127.0.0.1:8501/v1/models/digits" in text
    assert "ingot predict --server http://127.0.0.1:8501 --model digits" in text
    assert "grpc://127.0.0.1:8500" in text
