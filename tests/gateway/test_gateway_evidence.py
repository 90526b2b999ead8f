"""Evidence no caller can forge, labels only from whoever got the answer, and a hung log database
that stalls nothing else: attacks on real `ingot gateway` processes, judged by the rollout
controller's own counting and analysis (ingot.rollout.counts, ingot.rollout.analysis) over the log."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ingot.gateway.assignment import bucket
from ingot.inference_log.store import InferenceLogStore
from ingot.rollout.analysis import Policy, analyze
from ingot.rollout.counts import arm_counts
from tests.gateway.conftest import flushed_rows, repository_of, routes_document
from tests.gateway.gateway_process import GatewayProcess
from tests.gateway.test_gateway_api import predict
from tests.serving.support import colour_images, wait_for

pytestmark = pytest.mark.xdist_group("serving-conformance")

EXPERIMENT = "colours-exp"
MALFORMED = {"instances": np.zeros((1, 16, 3), np.uint8).tolist()}  # not the model's image shape


@pytest.fixture
def upstream(conformance_server):
    return conformance_server


@pytest.fixture
def token(tmp_path):
    path = tmp_path / "feedback-token"
    path.write_text("labeller-" + "t" * 40 + "\n")
    return path


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "feedback-secret"
    path.write_text("s" * 48 + "\n")
    return path


@pytest.fixture
def processes():
    started: list[GatewayProcess] = []
    yield started
    for process in started:
        process.stop()


def sticky_key(arm: str, weight: float, salt: str = EXPERIMENT) -> str:
    """A caller key that lands on `arm`, found offline from the public hash (what an attacker does)."""
    for i in range(100_000):
        key = f"attacker-{i}"
        if (bucket(salt, key) < weight * 100) == (arm == "challenger"):
            return key
    raise AssertionError("no key found")


def settled_count(url: str, at_least: int) -> int:
    """The log's row count once it has reached `at_least` and stopped growing (writes are batched)."""
    with InferenceLogStore.from_url(url) as store:
        wait_for(lambda: store.count() >= at_least, timeout_s=30, what=f"{at_least} log rows")
        last, since = store.count(), time.monotonic()
        while time.monotonic() - since < 1.0:
            time.sleep(0.2)
            now = store.count()
            if now != last:
                last, since = now, time.monotonic()
        return last


def evidence(url: str):
    """What the controller would decide from the log now: the evidence in its counts (accuracy,
    errors, latency, step), its verdict on them, and the sample-ratio counts (random assignments)."""
    import dataclasses

    with InferenceLogStore.from_url(url) as store:
        counts = arm_counts(store.engine, "colours", EXPERIMENT)
    policy = Policy(min_labels=4, min_error_requests=4, min_latency_requests=4, min_step_requests=1)
    verdict = analyze(counts["champion"], counts["challenger"], policy)
    found = {arm: dataclasses.replace(c, assigned=None) for arm, c in counts.items()}
    return found, verdict.to_dict(), {arm: c.assigned for arm, c in counts.items()}


def test_forged_promote_and_rollback_attempts_leave_the_evidence_unchanged(tmp_path, upstream, token, secret,
                                                                          processes):
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    routes = {**routes_document(upstream, weight=50, token_file=str(token)), "experiment": EXPERIMENT}
    gateway = GatewayProcess(tmp_path, routes, log_url=log_url, extra=[
        "--model_repository", repository_of(upstream), "--require-feedback-token",
        "--feedback-secret-file", str(secret)])
    processes.append(gateway)
    labeller = {"Authorization": f"Bearer {token.read_text().strip()}"}

    # Honest traffic, labelled by the trusted labeller: the evidence.
    honest = []
    for i in range(16):
        status, _, headers = gateway.predict(colour_images([i % 3], seed=i))
        assert status == 200
        honest.append((headers["x-ingot-request-id"], i % 3))
    settled_count(log_url, 16)
    status, body, _ = gateway.feedback([{"request_id": rid, "label": label} for rid, label in honest], labeller)
    assert status == 200 and len(body["labels"]) == 16
    before = evidence(log_url)
    assert before[0]["champion"].requests + before[0]["challenger"].requests == 16 == sum(before[2].values())
    assert before[0]["champion"].total + before[0]["challenger"].total == 16

    # The attacks: offline sticky keys for each arm, pins, malformed requests pinned to the
    # challenger and unpinned, and labels without the token for every answer the attacker got.
    answers = []
    for arm in ("challenger", "champion"):
        key = sticky_key(arm, 50)
        for i in range(6):
            status, _, headers = gateway.predict(colour_images([i % 3], seed=100 + i), headers={"x-ingot-caller": key})
            assert status == 200 and headers["x-ingot-variant"] == arm
            answers.append((headers, i % 3))
    for i in range(4):
        status, _, headers = gateway.predict(colour_images([i % 3], seed=200 + i),
                                             headers={"x-ingot-variant": "challenger"})
        assert status == 200 and headers["x-ingot-variant"] == "challenger"
        answers.append((headers, i % 3))
    for headers in ({"x-ingot-variant": "challenger"},) * 6 + ({},) * 3:
        status, _, _ = gateway.predict(body=MALFORMED, headers=headers)
        assert status == 400
    for headers, label in answers:
        item = {"request_id": headers["x-ingot-request-id"], "label": label,
                "feedback_key": headers["x-ingot-feedback-key"]}
        assert gateway.feedback(item)[0] == 403  # the key alone: a rollout reads this log
        assert gateway.feedback(item, {"Authorization": "Bearer guessed"})[0] == 401
    for rid, label in honest:  # relabelling the evidence with its own answers' keys: refused too
        assert gateway.feedback({"request_id": rid, "label": (label + 1) % 3})[0] == 403

    total = settled_count(log_url, 16 + len(answers))
    after = evidence(log_url)
    assert after[:2] == before[:2]  # the controller's evidence and verdict: unchanged
    # The sample-ratio check counts every random assignment, refused ones too (a caller cannot
    # choose their arm): the 3 malformed unpinned requests, nothing the attacker steered.
    assert sum(after[2].values()) - sum(before[2].values()) == 3
    with InferenceLogStore.from_url(log_url) as store:
        rows = store.rows()
        assert len(store.labels()) == 16
    assert len(rows) == total >= 16 + len(answers)  # the attacks were logged ...
    attack_rows = [row for row in rows if row["assignment"] != "weight" or row["status"] != "OK"]
    assert {row["assignment"] for row in attack_rows} >= {"sticky", "header"}
    assert not any(row["evidence"] for row in attack_rows)  # ... and none of them is evidence
    assert sum(row["status"] == "INVALID_ARGUMENT" for row in attack_rows) >= 6


def test_a_reused_client_id_gives_two_rows_two_server_ids_and_labels_stay_apart(tmp_path, upstream, secret,
                                                                                processes):
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    gateway = GatewayProcess(tmp_path, routes_document(upstream), log_url=log_url, extra=[
        "--model_repository", repository_of(upstream), "--feedback-secret-file", str(secret)])
    processes.append(gateway)
    answers = [gateway.predict(colour_images([label], seed=9), headers={"x-ingot-request-id": "order-17"})[2]
               for label in (0, 1)]
    first, second = answers
    assert first["x-ingot-request-id"] != second["x-ingot-request-id"]
    assert first["x-ingot-client-request-id"] == second["x-ingot-client-request-id"] == "order-17"
    settled_count(log_url, 2)
    with InferenceLogStore.from_url(log_url) as store:
        rows = store.rows()
    assert [(r["request_id"], r["client_request_id"]) for r in rows] == [
        (first["x-ingot-request-id"], "order-17"), (second["x-ingot-request-id"], "order-17")]
    # A label with the first answer's key lands on the first row only; that key opens no other row.
    item = {"request_id": first["x-ingot-request-id"], "label": 0, "feedback_key": first["x-ingot-feedback-key"]}
    status, body, _ = gateway.feedback(item)
    assert status == 200 and body["labels"][0]["request_id"] == first["x-ingot-request-id"]
    stolen = {**item, "request_id": second["x-ingot-request-id"]}
    status, body, _ = gateway.feedback(stolen)
    assert status == 403 and "missing or wrong" in body["error"]
    status, body, _ = gateway.feedback({**item, "feedback_key": "0" * 64})
    assert status == 403
    status, body, _ = gateway.feedback({"request_id": "order-17", "label": 0})  # the caller's id is no key
    assert status == 403


def test_replicas_sharing_a_secret_take_each_others_keys_and_a_label_right_after_the_answer_is_stored(
        tmp_path, upstream, secret, processes):
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    common = ["--model_repository", repository_of(upstream)]
    one = GatewayProcess(tmp_path, routes_document(upstream), log_url=log_url, name="one",
                         extra=[*common, "--feedback-secret-file", str(secret)])
    processes.append(one)
    two = GatewayProcess(tmp_path, routes_document(upstream), log_url=log_url, name="two",
                         extra=[*common, "--feedback-secret-file", str(secret)])
    processes.append(two)
    alone = GatewayProcess(tmp_path, routes_document(upstream), log_url=log_url, name="alone", extra=common)
    processes.append(alone)  # no secret given: one of its own, made at start
    stored = 0
    for i in range(3):
        _, _, answer = one.predict(colour_images([i], seed=30 + i))
        item = {"request_id": answer["x-ingot-request-id"], "label": i, "feedback_key": answer["x-ingot-feedback-key"]}
        status, body, _ = two.feedback(item)  # at once, to the other replica: it waits for the row
        assert status == 200, body
        stored += 1
        assert alone.feedback(item)[0] == 403
    with InferenceLogStore.from_url(log_url) as store:
        assert len(store.labels()) == stored == 3


class HungDatabase:
    """A TCP listener that accepts connections and never answers: a database that hangs."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.socket.close()
        for conn in self.held:
            conn.close()


def test_a_hung_log_database_stalls_no_routing_reload_and_feedback_answers_503(tmp_path, upstream, secret,
                                                                                processes):
    database = HungDatabase()
    try:
        log_url = f"postgresql://ingot@127.0.0.1:{database.port}/log"
        gateway = GatewayProcess(tmp_path, routes_document(upstream, weight=100), log_url=log_url, extra=[
            "--feedback-secret-file", str(secret), "--feedback-concurrency", "2"])
        processes.append(gateway)
        status, _, answer = gateway.predict(colour_images([0]))  # its row waits on the hung database
        assert status == 200 and answer["x-ingot-variant"] == "challenger"
        item = {"request_id": answer["x-ingot-request-id"], "label": 0, "feedback_key": answer["x-ingot-feedback-key"]}

        def timed_feedback(_):
            started = time.monotonic()
            status, body, _ = gateway.feedback(item)
            return status, time.monotonic() - started, body

        with ThreadPoolExecutor(8) as pool:
            feedback = [pool.submit(timed_feedback, i) for i in range(8)]
            time.sleep(0.2)
            gateway.write_routes(routes_document(upstream, weight=0))  # a rollback to weight 0
            changed = time.monotonic()
            wait_for(lambda: gateway.predict(colour_images([1]))[2]["x-ingot-variant"] == "champion",
                     timeout_s=30, interval_s=0.02, what="the rollback to be taken")
            reload_s = time.monotonic() - changed
            results = [f.result() for f in feedback]
        assert reload_s < 2.0, reload_s
        assert [status for status, _, _ in results] == [503] * 8, results
        assert sum(seconds < 1.0 for _, seconds, _ in results) >= 6, [seconds for _, seconds, _ in results]
        assert gateway.process.poll() is None
    finally:
        database.close()


# ---------------------------------------------------------------- in-process gateways (cheaper)


def test_pins_need_the_pin_token_when_the_table_names_one_and_are_never_evidence(start_gateway, upstream, tmp_path):
    import grpc

    from tests.serving.support import grpc_stubs, predict_request

    pin_token = tmp_path / "pin-token"
    pin_token.write_text("pin-" + "p" * 40)
    gateway = start_gateway({**routes_document(upstream, weight=0), "pin_token_file": str(pin_token)})
    status, body, _ = predict(gateway, headers={"x-ingot-variant": "challenger"})
    assert status == 403 and b"x-ingot-pin-token" in body
    status, _, _ = predict(gateway, headers={"x-ingot-variant": "challenger", "x-ingot-pin-token": "wrong"})
    assert status == 403
    status, _, _ = predict(gateway, path="/v1/models/colours/versions/1:predict")  # a version chooses the arm too
    assert status == 403
    status, _, headers = predict(gateway, headers={"x-ingot-variant": "challenger",
                                                   "x-ingot-pin-token": pin_token.read_text()})
    assert status == 200 and headers["x-ingot-variant"] == "challenger"
    [row] = flushed_rows(gateway, headers["x-ingot-request-id"])
    assert (row["assignment"], row["evidence"]) == ("header", False)
    status, _, plain = predict(gateway)  # unpinned requests need nothing
    assert status == 200
    [row] = flushed_rows(gateway, plain["x-ingot-request-id"])
    assert (row["assignment"], row["evidence"]) == ("weight", True)
    channel, prediction, _ = grpc_stubs(gateway.grpc_target)
    try:
        with pytest.raises(grpc.RpcError) as err:
            prediction.Predict(predict_request(images=colour_images([1])), timeout=30,
                               metadata=(("x-ingot-variant", "challenger"),))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        channel.close()


@pytest.mark.parametrize("trusted", [False, True])
def test_sticky_rows_are_evidence_only_when_the_table_trusts_the_caller_header(start_gateway, upstream, trusted):
    doc = routes_document(upstream, weight=50)
    if trusted:
        doc["trusted_caller_header"] = "x-ingot-caller"
    gateway = start_gateway(doc)
    status, _, headers = predict(gateway, headers={"x-ingot-caller": "user-1"})
    assert status == 200
    [row] = flushed_rows(gateway, headers["x-ingot-request-id"])
    assert (row["assignment"], row["evidence"]) == ("sticky", trusted)


def test_a_trusted_caller_header_must_be_the_caller_header():
    from ingot.gateway.routing import RoutingError, validate

    doc = {"model": "m", "caller_header": "x-user", "trusted_caller_header": "x-ingot-caller",
           "upstreams": {"champion": {"rest": "http://h:1", "grpc": "h:2", "version": 1}}}
    with pytest.raises(RoutingError, match="trusted_caller_header: expected the caller_header 'x-user'"):
        validate(doc)
    assert validate({**doc, "trusted_caller_header": "X-User"}).trusted_caller_header == "x-user"
    with pytest.raises(RoutingError, match="pin_token_file: expected a file path"):
        validate({**doc, "trusted_caller_header": "", "pin_token_file": 7})


@pytest.mark.parametrize(("table", "extra", "message"), [
    ({}, ["--require-feedback-token"], "--require-feedback-token: the routing table names no feedback_token_file"),
    ({}, ["--feedback-secret-file", "{tmp}/missing"], "cannot read the feedback-key secret file"),
    ({}, ["--feedback-secret-file", "{tmp}/short"], "holds a 3-byte token; a token needs at least 32 bytes"),
    ({"pin_token_file": "{tmp}/missing"}, [], "cannot read routing table pin_token_file"),
    ({"pin_token_file": "{tmp}/short"}, [], "routing table pin_token_file"),
    ({}, ["--feedback-concurrency", "0"], "--feedback-concurrency must be at least 1"),
])
def test_feedback_and_pin_settings_are_checked_before_anything_binds(tmp_path, capsys, table, extra, message):
    import yaml

    from ingot.cli.main import main as cli

    (tmp_path / "short").write_text("abc")
    doc = {"model": "m", "upstreams": {"champion": {"rest": "http://127.0.0.1:1", "grpc": "127.0.0.1:1", "version": 1}},
           **{key: value.format(tmp=tmp_path) for key, value in table.items()}}
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert cli(["gateway", "--routes", str(path), *(arg.format(tmp=tmp_path) for arg in extra)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ingot: error: ") and message in err and "\n" not in err
