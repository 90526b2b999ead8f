"""POST /v1/feedback through a running gateway: join, idempotency, 409, 404, 400, 401, 403,
attribution after a weight change; the client's send_feedback and `ingot feedback`. A label
carries its answer's feedback key, or comes with the feedback token."""

from __future__ import annotations

import pytest

from ingot.cli.main import main as cli
from ingot.client.feedback import FeedbackRejected, send_feedback, send_labels
from tests.gateway.conftest import (
    flushed_rows,
    repository_of,
    routes_document,
    write_routes,
)
from tests.gateway.test_gateway_api import predict
from tests.serving.support import colour_images, http, wait_for

pytestmark = pytest.mark.xdist_group("serving-conformance")


@pytest.fixture
def upstream(conformance_server):
    return conformance_server


@pytest.fixture
def start(start_gateway, upstream):
    """A gateway that reads the upstream's model cards (class names for checking labels)."""
    return lambda doc: start_gateway(doc, model_repository=repository_of(upstream))


KEYS: dict[str, str] = {}  # request id -> the feedback key its answer carried


def served(gateway, labels, **headers):
    """Predict, wait until the rows are logged; returns (request id, predicted class names)."""
    _, _, answer = predict(gateway, colour_images(labels, seed=2), headers=headers)
    request_id = answer["x-ingot-request-id"]
    KEYS[request_id] = answer["x-ingot-feedback-key"]
    rows = flushed_rows(gateway, request_id, at_least=len(labels))
    return request_id, [r["predicted_class_name"] for r in rows]


def test_labels_join_the_serving_row_idempotently_and_conflicts_are_refused(start, upstream):
    gateway = start(routes_document(upstream))
    request_id, predicted = served(gateway, [0, 1])
    url, key = gateway.rest_url, KEYS[request_id]
    [first] = send_feedback(url, request_id, predicted[0], feedback_key=key)
    assert (first["variant"], first["model_version"], first["correct"], first["created"]) == ("champion", 2, True, True)
    [again] = send_feedback(url, request_id, predicted[0], feedback_key=key)
    assert again["created"] is False and again["received_at"] == first["received_at"]
    other = next(c for c in ("red", "green", "blue") if c != predicted[0])
    with pytest.raises(FeedbackRejected) as err:
        send_feedback(url, request_id, other, feedback_key=key)
    assert err.value.status == 409 and "already labelled" in str(err.value)
    [by_id] = send_feedback(url, request_id, 2, row=1, feedback_key=key)  # a class id works too
    assert by_id["label_name"] == "blue"
    _, metrics, _ = http("GET", url + "/monitoring/prometheus/metrics")
    correct = 1 + by_id["correct"]  # each stored label counted once, repeats not at all
    series = 'ingot_gateway_feedback_labels_total{model="colours",model_version="2",outcome="%s",variant="champion"}'
    assert f"{series % 'correct'} {float(correct)}" in metrics
    if correct == 1:
        assert f"{series % 'incorrect'} 1.0" in metrics


@pytest.mark.parametrize(("item", "status", "fragment"), [
    ({"request_id": "never-seen", "label": "red", "feedback_key": "{key}"}, 403, "missing or wrong for request "
     "'never-seen'"),
    ({"request_id": "{rid}", "row": 7, "label": "red"}, 404, "row 7"),
    ({"request_id": "{rid}", "label": "purple"}, 400, "label 'purple' is not a class of model 'colours' version 2"),
    ({"request_id": "{rid}", "label": 3}, 400, "or a class id 0..2"),
    ({"request_id": "{rid}", "label": "red", "extra": 1}, 400, "unknown key(s) ['extra']"),
])
def test_bad_feedback_gets_404_or_400_naming_what_is_wrong(start, upstream, item, status, fragment):
    gateway = start(routes_document(upstream))
    request_id, _ = served(gateway, [0])
    item = {"feedback_key": KEYS[request_id],
            **{k: (v.format(rid=request_id, key=KEYS[request_id]) if isinstance(v, str) else v) for k, v in item.items()}}
    got, body, _ = http("POST", gateway.rest_url + "/v1/feedback", item)
    assert got == status and set(body) == {"error"} and fragment in body["error"], body


def test_a_feedback_token_is_required_when_the_table_names_one(start, upstream, tmp_path):
    """With a token (a rollout or monitor reads the log), the answer's key alone is not enough: 403
    without credentials, 401 for wrong ones (contract change: no Authorization was 401)."""
    import json
    import urllib.request

    secret = "s3cret-" + "x" * 32
    token_file = tmp_path / "token"
    token_file.write_text(secret + "\n")
    gateway = start(routes_document(upstream, token_file=str(token_file)))
    request_id, predicted = served(gateway, [1])
    item = {"request_id": request_id, "label": predicted[0], "feedback_key": KEYS[request_id]}
    for headers, status in (({}, 403), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": f"Basic {secret}"}, 401)):
        request = urllib.request.Request(gateway.rest_url + "/v1/feedback", method="POST", headers=headers,
                                         data=json.dumps(item).encode())
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=10)
        assert err.value.code == status
        if status == 401:
            assert "Bearer" in err.value.headers["WWW-Authenticate"]
        else:
            assert "only with its feedback token" in json.loads(err.value.read())["error"]
    [stored] = send_feedback(gateway.rest_url, request_id, predicted[0], token=secret)  # no key needed
    assert stored["correct"] is True
    assert predict(gateway)[0] == 200  # predictions never need the token


def test_labels_stay_with_the_variant_that_served_after_the_weights_change(start, upstream):
    gateway = start(routes_document(upstream, weight=100))
    early, early_classes = served(gateway, [0], **{"x-ingot-caller": "user-1"})
    write_routes(gateway.routes_path, routes_document(upstream, weight=0))
    wait_for(lambda: predict(gateway, headers={"x-ingot-caller": "user-1"})[2]["x-ingot-variant"] == "champion",
             what="the weight change")
    late, late_classes = served(gateway, [0], **{"x-ingot-caller": "user-1"})
    stored = send_labels(gateway.rest_url, [{"request_id": early, "label": "red", "feedback_key": KEYS[early]},
                                            {"request_id": late, "label": "red", "feedback_key": KEYS[late]}])
    assert [(s["variant"], s["model_version"]) for s in stored] == [("challenger", 1), ("champion", 2)]
    assert [s["correct"] for s in stored] == [early_classes[0] == "red", late_classes[0] == "red"]


def test_the_feedback_command_prints_one_line(start, upstream, capsys):
    gateway = start(routes_document(upstream))
    request_id, predicted = served(gateway, [2])
    assert cli(["feedback", request_id, predicted[0], "--gateway", gateway.rest_url, "--key", KEYS[request_id]]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{request_id} row 0: label {predicted[0]!r} (correct) for champion version 2")
    assert cli(["feedback", "no-such-request", "red", "--gateway", gateway.rest_url, "--key", KEYS[request_id]]) == 1
    assert "feedback refused (403): a label needs the feedback_key" in capsys.readouterr().err
    assert cli(["feedback", request_id, predicted[0], "--gateway", gateway.rest_url]) == 1
    assert "give the answer's x-ingot-feedback-key with --key" in capsys.readouterr().err


def test_ingot_predict_through_the_gateway_prints_what_feedback_needs(start, upstream, capsys, tmp_path):
    """The request id, row, variant and version: what a person passes to `ingot feedback` later."""
    import json

    from PIL import Image

    gateway = start(routes_document(upstream))
    path = tmp_path / "blob.png"
    Image.fromarray(next(iter(colour_images([2], seed=3)))).save(path)
    assert cli(["predict", str(path), "--server", gateway.rest_url, "--model", "colours"]) == 0
    line = capsys.readouterr().out.strip()
    assert "\trequest " in line and " row 0 (champion v2) key " in line, line
    assert cli(["predict", str(path), "--server", gateway.rest_url, "--model", "colours", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["request_id"] and (document["row"], document["variant"], document["model_version"]) == \
        (0, "champion", 2)
    assert len(document["feedback_key"]) == 64


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_the_client_exposes_who_answered_and_sends_feedback(start, upstream, scheme):
    from ingot.client import Client

    gateway = start(routes_document(upstream, weight=100))
    url = gateway.rest_url if scheme == "http" else f"grpc://{gateway.grpc_target}"
    with Client.connect(url) as client:
        first, second = client.classify(list(colour_images([0, 2], seed=6)), model="colours")
        assert first.request_id and first.request_id == second.request_id and (first.row, second.row) == (0, 1)
        assert (first.variant, first.model_version) == ("challenger", 1)
        assert client.last_served.request_id == first.request_id
        assert first.feedback_key and client.last_served.feedback_key == first.feedback_key
        flushed_rows(gateway, first.request_id, at_least=2)
        stored = client.feedback(second, second.class_name, gateway_url=gateway.rest_url)  # the Prediction itself
        assert (stored["variant"], stored["model_version"], stored["correct"]) == ("challenger", 1, True)
        again = client.feedback(first.request_id, first.class_name, feedback_key=first.feedback_key,
                                gateway_url=gateway.rest_url)
        assert again["row"] == 0 and again["correct"] is True
        with pytest.raises(FeedbackRejected) as err:
            client.feedback(first.request_id, first.class_name, gateway_url=gateway.rest_url)  # no key
        assert err.value.status == 403


def test_without_a_log_predictions_work_and_feedback_is_503(start_gateway, upstream):
    gateway = start_gateway(routes_document(upstream), log_enabled=False)
    status, _, headers = predict(gateway)
    assert status == 200 and headers["x-ingot-variant"] == "champion"
    got, body, _ = http("POST", gateway.rest_url + "/v1/feedback", {"request_id": headers["x-ingot-request-id"],
                                                                    "label": "red"})
    assert got == 503 and "runs without one" in body["error"]
    got, body, _ = http("GET", gateway.rest_url + "/v1/feedback")
    assert got == 405 and "POST a label" in body["error"]
