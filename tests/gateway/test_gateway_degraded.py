"""Degraded answers: the fallback chain past dead model servers says why, in headers and the log."""

from __future__ import annotations

import json
import time

import pytest

from tests.gateway.conftest import dead_upstream, flushed_rows, routes_document
from tests.gateway.test_gateway_api import predict
from tests.serving.support import colour_images, grpc_stubs, predict_request, wait_for
from tests.support.redis import redis_server

pytestmark = pytest.mark.xdist_group("serving-conformance")


@pytest.fixture
def upstream(conformance_server):  # type: ignore[no-untyped-def]
    return conformance_server


def dead_routes(upstream, **extra):  # type: ignore[no-untyped-def]
    doc = routes_document(upstream, challenger=None, champion_target=dead_upstream())
    doc.update(extra)
    return doc


def test_without_a_fallback_a_dead_champion_is_a_503_within_the_deadline(start_gateway, upstream):
    gateway = start_gateway(dead_routes(upstream, deadline_ms=500))
    started = time.perf_counter()
    status, body, headers = predict(gateway)
    assert status == 503 and "x-ingot-degraded" not in headers
    assert time.perf_counter() - started < 5


def test_the_default_answer_is_marked_degraded_on_rest_grpc_and_in_the_log(start_gateway, upstream):
    from tests.gateway.conftest import write_routes

    live = routes_document(upstream, challenger=None)
    live.update(fallback=["default"], default_answer={"class_id": 1}, deadline_ms=500)
    gateway = start_gateway(live)
    assert predict(gateway)[0] == 200  # the gateway has seen the model's signatures
    dead = {**live, "upstreams": {"champion": {**dead_upstream(), "version": 2}}}  # the champion dies
    write_routes(gateway.routes_path, dead)
    wait_for(lambda: predict(gateway)[2].get("x-ingot-degraded") or None, timeout_s=10, what="degraded answers")
    status, body, headers = predict(gateway, colour_images([0, 2], seed=4))
    assert status == 200 and headers["x-ingot-degraded"] == "default"
    assert json.loads(body) == {"predictions": [{"class_ids": 1}, {"class_ids": 1}]}
    status, body, _ = predict(gateway, document={"inputs": colour_images([0]).tolist()})
    assert status == 200 and json.loads(body) == {"outputs": {"class_ids": [1]}}
    rows = flushed_rows(gateway, headers["x-ingot-request-id"], at_least=2)
    assert {(r["degraded"], r["status"], r["predicted_class_id"], bool(r["evidence"])) for r in rows} == {
        ("default", "OK", 1, False)}  # never A/B evidence
    channel, prediction, _ = grpc_stubs(gateway.grpc_target)
    try:
        response, call = prediction.Predict.with_call(predict_request(images=colour_images([1])), timeout=30)
        assert dict(call.initial_metadata())["x-ingot-degraded"] == "default"
        assert dict(call.trailing_metadata())["x-ingot-degraded"] == "default"
        assert list(response.outputs["class_ids"].int64_val) == [1]
    finally:
        channel.close()


def test_a_challenger_answered_by_the_champion_is_marked_other_arm(start_gateway, upstream):
    gateway = start_gateway(routes_document(upstream, weight=100, challenger_target=dead_upstream()))
    status, _, headers = predict(gateway)
    assert status == 200 and headers["x-ingot-degraded"] == "other_arm" and headers["x-ingot-variant"] == "champion"
    rows = flushed_rows(gateway, headers["x-ingot-request-id"])
    assert rows[0]["degraded"] == "other_arm"


def test_the_stale_cached_answer_serves_when_the_champion_dies(start_gateway, upstream, tmp_path):
    from tests.gateway.conftest import write_routes

    with redis_server() as redis:
        doc = routes_document(upstream, challenger=None)
        doc.update(cache={"ttl_s": 1, "stale_ttl_s": 600}, fallback=["cached", "default"],
                   default_answer={"class_id": 0})
        gateway = start_gateway(doc, cache_url=redis.url)
        images = colour_images([2], seed=31)
        status, first, _ = predict(gateway, images)
        assert status == 200
        wait_for(lambda: predict(gateway, images)[2]["x-ingot-cache"] == "hit" or None, timeout_s=10, what="stored")
        # the champion goes away (its address now points nowhere) and the fresh entry expires
        write_routes(gateway.routes_path, {**doc, "upstreams": {"champion": {**dead_upstream(), "version": 2}}})
        time.sleep(1.2)

        def stale():  # type: ignore[no-untyped-def]
            answer = predict(gateway, images)
            return answer if answer[2].get("x-ingot-degraded") == "cached" else None

        status, body, headers = wait_for(stale, timeout_s=10, what="the stale answer")
        assert (status, body) == (200, first)
        other = predict(gateway, colour_images([0], seed=1))  # never cached: the default
        assert other[2]["x-ingot-degraded"] == "default"


def path_count(gateway, path: str) -> float:  # type: ignore[no-untyped-def]
    """Observations of ingot_gateway_path_latency_seconds for `path` (any model, any arm)."""
    registry = gateway.gateway.metrics.registry
    return sum(sample.value for metric in registry.collect() if metric.name == "ingot_gateway_path_latency_seconds"
               for sample in metric.samples if sample.name.endswith("_count") and sample.labels["path"] == path)


def test_the_previous_champion_answers_when_the_champion_dies_marked_and_never_evidence(start_gateway, upstream):
    from tests.gateway.conftest import write_routes

    live = routes_document(upstream, challenger=None)  # champion: version 2
    live["upstreams"]["previous_champion"] = {"rest": upstream.rest_url, "grpc": upstream.grpc_target, "version": 1}
    live.update(fallback=["previous_champion"], deadline_ms=2000)
    gateway = start_gateway(live)
    assert predict(gateway)[0] == 200
    dead = {**live, "upstreams": {**live["upstreams"], "champion": {**dead_upstream(), "version": 2}}}
    write_routes(gateway.routes_path, dead)
    wait_for(lambda: predict(gateway)[2].get("x-ingot-degraded") or None, timeout_s=10, what="degraded answers")
    degraded_before = path_count(gateway, "degraded")
    status, body, headers = predict(gateway, colour_images([0, 1], seed=5))
    assert status == 200 and headers["x-ingot-degraded"] == "previous_champion"
    assert headers["x-ingot-model-version"] == "1" and len(json.loads(body)["predictions"]) == 2
    rows = flushed_rows(gateway, headers["x-ingot-request-id"], at_least=2)
    assert {(r["degraded"], r["model_version"], r["assignment"], bool(r["evidence"])) for r in rows} == {
        ("previous_champion", 1, "fallback", False)}
    assert path_count(gateway, "degraded") == degraded_before + 1
    channel, prediction, _ = grpc_stubs(gateway.grpc_target)
    try:
        response, call = prediction.Predict.with_call(predict_request(images=colour_images([1])), timeout=30)
        assert dict(call.trailing_metadata())["x-ingot-degraded"] == "previous_champion"
        assert response.model_spec.version.value == 1
    finally:
        channel.close()


def test_the_breaker_opens_on_a_killed_upstream_stays_open_then_a_probe_closes_it(start_gateway, upstream):
    from ingot.gateway.breaker import CLOSED, OPEN
    from tests.support.proxy import tcp_proxy

    with tcp_proxy(upstream.rest_url) as rest, tcp_proxy(upstream.grpc_target) as grpc_:
        doc = routes_document(upstream, challenger=None,
                              champion_target={"rest": f"http://{rest.address}", "grpc": grpc_.address})
        doc.update(fallback=["default"], default_answer={"class_id": 0}, breaker={"failures": 2, "open_s": 1.5},
                   deadline_ms=2000)
        gateway = start_gateway(doc)
        breakers = gateway.gateway.backend.breakers
        status, _, headers = predict(gateway)
        assert status == 200 and "x-ingot-degraded" not in headers
        rest.kill()
        grpc_.kill()
        for _ in range(2):  # two failures in a row open it
            assert predict(gateway)[2]["x-ingot-degraded"] == "default"
        assert breakers.states()[grpc_.address] == OPEN
        rest.restart()
        grpc_.restart()
        seen = rest.accepted
        started = time.perf_counter()
        status, _, headers = predict(gateway)  # open: not even tried, though the server is back
        assert headers["x-ingot-degraded"] == "default" and rest.accepted == seen
        assert time.perf_counter() - started < 1.0
        time.sleep(max(0.0, 1.6 - (time.perf_counter() - started)))
        status, _, headers = predict(gateway)  # the half-open probe answers: closed again
        assert status == 200 and "x-ingot-degraded" not in headers and rest.accepted > seen
        assert breakers.states()[grpc_.address] == CLOSED


def test_a_champion_falls_to_the_challenger_when_other_arm_is_configured(start_gateway, upstream):
    from tests.gateway.conftest import write_routes

    live = routes_document(upstream)  # champion 2, challenger 1 (weight 0: every request is the champion's)
    live.update(fallback=["other_arm"])
    gateway = start_gateway(live)
    assert predict(gateway)[0] == 200
    write_routes(gateway.routes_path,
                 {**live, "upstreams": {**live["upstreams"], "champion": {**dead_upstream(), "version": 2}}})
    wait_for(lambda: predict(gateway)[2].get("x-ingot-degraded") or None, timeout_s=10, what="degraded answers")
    status, _, headers = predict(gateway)
    assert status == 200 and headers["x-ingot-degraded"] == "other_arm"
    assert (headers["x-ingot-variant"], headers["x-ingot-model-version"]) == ("challenger", "1")
