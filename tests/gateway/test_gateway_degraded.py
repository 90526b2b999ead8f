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
    assert {(r["degraded"], r["status"], r["predicted_class_id"]) for r in rows} == {("default", "OK", 1)}
    channel, prediction, _ = grpc_stubs(gateway.grpc_target)
    try:
        response, call = prediction.Predict.with_call(predict_request(images=colour_images([1])), timeout=30)
        assert dict(call.initial_metadata())["x-ingot-degraded"] == "default"
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
