"""The confidence cascade at the gateway, in front of a real `ingot serve`: the small model answers
at and above the threshold, the full model below it, over REST and gRPC; `x-ingot-answered-by`,
the log's `answered_by`, the per-path latency series, a down small upstream, and the table's
validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ingot.gateway.cascade import Cascade, confident, parse_cascade
from ingot.gateway.routing import RoutingError, Upstream, dump, parse, validate
from tests.gateway.conftest import dead_upstream, flushed_rows, routes_document
from tests.serving.support import MODEL, colour_images, grpc_stubs, http, predict_request

PREDICT = f"/v1/models/{MODEL}:predict"
SMALL_VERSION, FULL_VERSION = 1, 2  # the conformance server's trained v1 plays the small model


def _table(cascade) -> dict:
    return {"model": "digits", "upstreams": {
        "champion": {"rest": "http://full:8501", "grpc": "full:8500", "version": 2, "cascade": cascade}}}


# ------------------------------------------------------------------ the routing table


def test_a_cascade_is_read_per_arm_and_dumped_back():
    table = validate(_table({"small": {"rest": "http://small:8501", "grpc": "small:8500", "version": 3},
                             "threshold": 0.93}))
    assert table.cascades == {"champion": Cascade(Upstream("http://small:8501", "small:8500", 3), 0.93)}
    assert Upstream("http://small:8501", "small:8500", 3) in table.all_upstreams()
    again = parse(dump(table))
    assert again.cascades == table.cascades and again.upstreams == table.upstreams
    assert validate(_table(None)).cascades == {}


def test_the_rollout_controller_keeps_an_arms_cascade_when_it_writes_the_table():
    from ingot.rollout.routing import routing_table, routing_yaml

    cascade = {"small": {"rest": "http://small:8501", "grpc": "small:8500", "version": 4}, "threshold": 0.9}
    target = {"champion": {"rest": "http://a:1", "grpc": "a:2", "cascade": cascade},
              "challenger": {"rest": "http://b:1", "grpc": "b:2"}}
    table = parse(routing_yaml(routing_table(target, model="digits", experiment="e", weight=10,
                                             champion_version=1, challenger_version=2)))
    assert table.cascades == {"champion": Cascade(Upstream("http://small:8501", "small:8500", 4), 0.9)}


@pytest.mark.parametrize(("cascade", "message"), [
    ({"threshold": 0.9}, "upstreams.champion.cascade.small: missing"),
    ({"small": {"rest": "http://s:1", "grpc": "s:2", "version": 1}, "threshold": 1.5},
     "upstreams.champion.cascade.threshold: expected"),
    ({"small": {"rest": "http://s:1", "grpc": "s:2", "version": 1}, "threshold": "high"},
     "upstreams.champion.cascade.threshold: expected"),
    ({"small": {"rest": "http://s:1", "grpc": "s:2", "version": 1}, "threshold": True},
     "upstreams.champion.cascade.threshold: expected"),
    ({"small": {"rest": "http://s:1", "grpc": "s:2", "version": 1}}, "upstreams.champion.cascade.threshold"),
    ({"small": {"rest": "ftp://s", "grpc": "s:2", "version": 1}, "threshold": 0.5},
     "upstreams.champion.cascade.small.rest: expected"),
    ({"small": {"rest": "http://s:1", "grpc": "s:2", "version": 0}, "threshold": 0.5},
     "upstreams.champion.cascade.small.version: expected"),
    ({"small": {"rest": "http://s:1", "grpc": "s:2", "version": 1, "cascade": {}}, "threshold": 0.5},
     "upstreams.champion.cascade.small.cascade: unknown key"),
    ({"small": {"rest": "http://s:1", "grpc": "s:2", "version": 1}, "threshold": 0.5, "mode": "x"},
     "upstreams.champion.cascade.mode: unknown key"),
    ([0.5], "upstreams.champion.cascade: expected a mapping"),
])
def test_a_bad_cascade_is_refused_naming_the_key(cascade, message):
    with pytest.raises(RoutingError, match=message.replace(".", r"\.")):
        validate(_table(cascade))


def test_parse_cascade_accepts_the_bounds():
    small = {"rest": "http://s:1", "grpc": "s:2", "version": 1}
    assert parse_cascade({"small": small, "threshold": 0}, "k").threshold == 0.0
    assert parse_cascade({"small": small, "threshold": 1}, "k").threshold == 1.0


def test_confident_needs_every_row_at_or_above_the_threshold():
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7]], np.float32)
    assert confident({"probabilities": probabilities}, float(np.float32(0.7)))
    assert not confident({"probabilities": probabilities}, float(np.nextafter(np.float32(0.7), np.float32(1))))
    assert confident({"probabilities": probabilities[:1]}, 0.9)
    assert not confident({"class_ids": np.array([0, 1])}, 0.0)  # no probabilities: the full model answers
    assert not confident(None, 0.0)
    assert not confident({"probabilities": np.zeros((0, 2))}, 0.0)


# ------------------------------------------------------------------ in front of real upstreams

pytestmark_serving = pytest.mark.xdist_group("serving-conformance")


def _ends(server) -> dict[str, str]:
    return {"rest": server.rest_url, "grpc": server.grpc_target}


def _cascaded(upstream, threshold: float, *, small=None, challenger_weight: float = 0) -> dict:
    doc = routes_document(upstream, champion=FULL_VERSION, challenger=None)
    doc["weights"] = {"challenger": 0}
    doc["upstreams"]["champion"]["cascade"] = {"small": {**(small or _ends(upstream)), "version": SMALL_VERSION},
                                               "threshold": threshold}
    return doc


def _rest(server, images, path=PREDICT):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(server.rest_url + path, data=json.dumps({"instances": images.tolist()}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as err:
        return err.code, err.read(), {k.lower(): v for k, v in err.headers.items()}


def _direct(upstream, images, version: int) -> tuple[bytes, float]:
    """The upstream's own answer for `version` and its lowest top-1 probability over the rows."""
    status, body, _ = _rest(upstream, images, f"/v1/models/{MODEL}/versions/{version}:predict")
    assert status == 200
    top1 = min(max(row["probabilities"]) for row in json.loads(body)["predictions"])
    return body, top1


def _metric_counts(gateway) -> dict:
    _, text, _ = http("GET", gateway.rest_url + "/monitoring/prometheus/metrics")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


@pytestmark_serving
def test_rest_the_small_model_answers_at_the_threshold_and_the_full_one_just_above(start_gateway, conformance_server):
    upstream = conformance_server
    batch = colour_images([0, 1, 2, 0, 1, 2], seed=11)
    status, body, _ = _rest(upstream, batch, f"/v1/models/{MODEL}/versions/{SMALL_VERSION}:predict")
    top1s = [max(row["probabilities"]) for row in json.loads(body)["predictions"]]
    images = batch[int(np.argmax(top1s))][None]  # the small model's surest row
    small_body, top1 = _direct(upstream, images, SMALL_VERSION)
    full_body, _ = _direct(upstream, images, FULL_VERSION)
    assert small_body != full_body  # two different models: the answer says which one answered

    at = start_gateway(_cascaded(upstream, top1))
    status, body, headers = _rest(at, images)
    assert (status, body) == (200, small_body)
    assert headers["x-ingot-answered-by"] == "small" and headers["x-ingot-model-version"] == str(SMALL_VERSION)
    assert headers["x-ingot-variant"] == "champion"
    row, = flushed_rows(at, headers["x-ingot-request-id"])
    assert (row["answered_by"], row["variant"], row["model_version"], row["assignment"], row["evidence"]) == (
        "small", "champion", SMALL_VERSION, "weight", True)

    above = start_gateway(_cascaded(upstream, float(np.nextafter(top1, 1.0))))
    status, body, headers = _rest(above, images)
    assert (status, body) == (200, full_body)
    assert headers["x-ingot-answered-by"] == "full" and headers["x-ingot-model-version"] == str(FULL_VERSION)
    row, = flushed_rows(above, headers["x-ingot-request-id"])
    assert (row["answered_by"], row["variant"], row["model_version"], row["evidence"]) == (
        "full", "champion", FULL_VERSION, True)

    # A named version asks for that model: never cascaded.
    status, body, headers = _rest(at, images, f"/v1/models/{MODEL}/versions/{FULL_VERSION}:predict")
    assert (status, body) == (200, full_body) and "x-ingot-answered-by" not in headers
    row, = flushed_rows(at, headers["x-ingot-request-id"])
    assert row["answered_by"] is None

    # A batch goes to the small model only when it is sure of every row.
    _, lowest = _direct(upstream, batch, SMALL_VERSION)
    assert lowest < top1
    assert _rest(at, batch)[2]["x-ingot-answered-by"] == "full"
    low = start_gateway(_cascaded(upstream, lowest))
    assert _rest(low, batch)[2]["x-ingot-answered-by"] == "small"


@pytestmark_serving
def test_grpc_the_answered_by_metadata_follows_the_threshold(start_gateway, conformance_server):
    upstream = conformance_server
    images = colour_images([2], seed=4)
    channel, prediction, _ = grpc_stubs(upstream.grpc_target)
    try:
        direct = prediction.Predict(predict_request(images=images, version=SMALL_VERSION), timeout=30)
        full = prediction.Predict(predict_request(images=images, version=FULL_VERSION), timeout=30)
    finally:
        channel.close()
    top1 = float(np.max(np.frombuffer(direct.outputs["probabilities"].tensor_content, np.float32)))
    for threshold, answered_by, version, expected in ((top1 - 1e-6, "small", SMALL_VERSION, direct),
                                                     (top1 + 1e-6, "full", FULL_VERSION, full)):
        gateway = start_gateway(_cascaded(upstream, threshold))
        channel, prediction, _ = grpc_stubs(gateway.grpc_target)
        try:
            response, call = prediction.Predict.with_call(predict_request(images=images), timeout=30)
        finally:
            channel.close()
        metadata = dict(call.initial_metadata())
        assert metadata["x-ingot-answered-by"] == answered_by and metadata["x-ingot-model-version"] == str(version)
        assert response.model_spec.version.value == version
        assert response.outputs["probabilities"] == expected.outputs["probabilities"]
        row, = flushed_rows(gateway, metadata["x-ingot-request-id"])
        assert (row["answered_by"], row["model_version"], row["variant"]) == (answered_by, version, "champion")


@pytestmark_serving
def test_a_down_small_upstream_hands_the_request_to_the_full_model_and_is_counted(start_gateway, conformance_server):
    upstream = conformance_server
    images = colour_images([1], seed=2)
    full_body, _ = _direct(upstream, images, FULL_VERSION)
    gateway = start_gateway(_cascaded(upstream, 0.0, small=dead_upstream()))
    for _ in range(3):
        status, body, headers = _rest(gateway, images)
        assert (status, body, headers["x-ingot-answered-by"]) == (200, full_body, "full")
    counts = _metric_counts(gateway)
    assert counts[("ingot_gateway_cascade_small_failures_total", (("arm", "champion"), ("model", MODEL)))] == 3
    assert counts[("ingot_gateway_cascade_answers_total",
                   (("answered_by", "full"), ("arm", "champion"), ("model", MODEL)))] == 3


@pytestmark_serving
def test_the_small_and_full_paths_are_separate_latency_series(start_gateway, conformance_server):
    upstream = conformance_server
    images = colour_images([0], seed=11)
    _, top1 = _direct(upstream, images, SMALL_VERSION)
    assert top1 < 1.0
    small = start_gateway(_cascaded(upstream, top1))
    full = start_gateway(_cascaded(upstream, 1.0))
    for _ in range(2):
        assert _rest(small, images)[2]["x-ingot-answered-by"] == "small"
    key = ("ingot_gateway_path_latency_seconds_count", (("arm", "champion"), ("model", MODEL), ("path", "small")))
    counts = _metric_counts(small)
    assert counts[key] == 2
    assert ("ingot_gateway_path_latency_seconds_count",
            (("arm", "champion"), ("model", MODEL), ("path", "full"))) not in counts
    assert counts[("ingot_gateway_cascade_small_seconds_count", (("arm", "champion"), ("model", MODEL)))] == 2
    assert _rest(full, images)[2]["x-ingot-answered-by"] == "full"
    counts = _metric_counts(full)
    assert counts[("ingot_gateway_path_latency_seconds_count",
                   (("arm", "champion"), ("model", MODEL), ("path", "full")))] == 1
