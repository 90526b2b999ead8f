"""Gateway fixtures: real `ingot serve` upstreams (the serving suite's tiny exported models) and
gateways started in threads on free loopback ports, each with its own routing file and SQLite log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.serving.conftest import conformance_server, exports  # noqa: F401 - shared session fixtures
from tests.serving.support import MODEL, free_port


def routes_document(upstream: Any, *, champion: int = 2, challenger: int | None = 1, weight: float = 0,
                    mirror: float = 0, token_file: str = "", challenger_target: Any = None,
                    champion_target: Any = None) -> dict[str, Any]:
    """A routing table over `ingot serve` upstreams (champion and challenger may be one server
    serving both versions, as in the conformance set-up)."""

    def ends(server: Any) -> dict[str, str]:
        if isinstance(server, dict):
            return server
        return {"rest": server.rest_url, "grpc": server.grpc_target}

    doc: dict[str, Any] = {
        "model": MODEL, "experiment": "colours-exp", "caller_header": "x-ingot-caller",
        "weights": {"challenger": weight}, "mirror": mirror,
        "upstreams": {"champion": {**ends(champion_target or upstream), "version": champion}},
        "feedback_token_file": token_file,
    }
    if challenger is not None:
        doc["upstreams"]["challenger"] = {**ends(challenger_target or upstream), "version": challenger}
    return doc


def repository_of(server: Any) -> str:
    """The model repository an `ingot serve` upstream loads from (its model cards name the classes)."""
    return str(Path(server.options.model_config.model_config_list.config[0].base_path).parent)


def dead_upstream() -> dict[str, str]:
    """Addresses where nothing listens: a model server that is down."""
    return {"rest": f"http://127.0.0.1:{free_port()}", "grpc": f"127.0.0.1:{free_port()}"}


def write_routes(path: Path, doc: dict[str, Any]) -> None:
    """Atomic, as the rollout controller writes it: temp file then rename."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc))
    tmp.replace(path)


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """start_gateway(routes_doc, **GatewayOptions overrides) -> a started GatewayThread."""
    from ingot.gateway.server import GatewayOptions, GatewayThread
    from ingot.serving.frontend import RequestLimits

    started: list[GatewayThread] = []

    def start(doc: dict[str, Any], **overrides: Any) -> GatewayThread:
        routes = tmp_path / f"routes-{len(started)}.yaml"
        write_routes(routes, doc)
        options = GatewayOptions(
            routes=str(routes), host="127.0.0.1", grpc_port=0, rest_port=0,
            log_url=f"sqlite:///{tmp_path / f'log-{len(started)}.db'}", routes_poll_s=0.05,
            limits=RequestLimits(max_body_bytes=256 << 10, max_json_depth=16, max_elements=1 << 16,
                                 default_timeout_s=30.0),
            shutdown_grace_s=5.0,
        )
        for key, value in overrides.items():
            setattr(options, key, value)
        gateway = GatewayThread(options).start()
        gateway.routes_path = routes
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


def flushed_rows(gateway: Any, request_id: str | None = None, *, at_least: int = 1) -> list[dict[str, Any]]:
    """The gateway's logged rows once its queue has drained (logging is off the request path)."""
    from tests.serving.support import wait_for

    store = gateway.gateway.log_store

    def rows() -> list[dict[str, Any]] | None:
        from ingot.gateway.logstore import LogUnavailable

        try:
            found = store.get().rows(request_id)
        except LogUnavailable:  # the writer is opening the database right now: ask again
            return None
        return found if len(found) >= at_least else None

    return wait_for(rows, timeout_s=20, what=f"{at_least} log rows for {request_id}")
