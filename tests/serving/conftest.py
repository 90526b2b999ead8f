"""Session-wide tiny models, exported once per test process."""

from __future__ import annotations

import pytest

from tests.serving.support import export, tiny_model


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """Two different real exports: 'v1' (trained 3 epochs) and 'v2' (another seed, untrained)."""
    root = tmp_path_factory.mktemp("exports")
    return {
        "v1": export(tiny_model(seed=0, epochs=3), root / "v1"),
        "v2": export(tiny_model(seed=7, epochs=0), root / "v2"),
    }


@pytest.fixture(scope="session")
def conformance_server(exports, tmp_path_factory):
    """Model 'colours' with versions 1 (trained) and 2, labels stable→1 and canary→2, batching on
    with allowed batch sizes; shared by the REST and gRPC conformance tests (read-only use)."""
    from ingot.serving.config import BatchingOptions, parse_model_server_config
    from tests.serving.support import MODEL, publish, start_server, wait_for

    base = tmp_path_factory.mktemp("repo")
    assert publish(exports["v1"], base) == 1
    assert publish(exports["v2"], base) == 2
    config = parse_model_server_config(f"""
        model_config_list {{ config {{
            name: "{MODEL}" base_path: "{base / MODEL}" model_platform: "tensorflow"
            model_version_policy {{ all {{}} }}
            version_labels {{ key: "stable" value: 1 }}
            version_labels {{ key: "canary" value: 2 }}
        }} }}""")
    batching = BatchingOptions(max_batch_size=8, allowed_batch_sizes=(1, 2, 4, 8), num_batch_threads=1)
    server = start_server(config, batching=batching, max_body_bytes=256 << 10)
    wait_for(lambda: server.manager.readiness()["models"][MODEL] == [2, 1], what="both versions AVAILABLE")
    yield server
    server.stop()
