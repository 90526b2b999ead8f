"""Version lifecycle under real conditions: rollover while clients keep sending, corrupt and
half-written versions, version policies, readiness, timeouts and overload."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from ingot.protocol.status import Code, ServingError
from ingot.serving.config import BatchingOptions, parse_model_server_config, single_model_config
from tests.serving.support import (
    MODEL,
    colour_images,
    grpc_stubs,
    http,
    predict_request,
    publish,
    start_server,
    wait_for,
)

pytestmark = pytest.mark.xdist_group("serving-lifecycle")  # one worker: TF and the exports once

ALLOWED = (1, 2, 4, 8)


def test_rollover_under_load_loses_no_request_and_the_new_version_is_warm(exports, tmp_path):
    base = tmp_path / "repo"
    publish(exports["v1"], base)
    batching = BatchingOptions(max_batch_size=8, allowed_batch_sizes=ALLOWED, num_batch_threads=1)
    server = start_server(single_model_config(MODEL, base / MODEL), batching=batching, poll_s=0.1)
    channel, prediction, _ = grpc_stubs(server.grpc_target)
    request = predict_request(images=colour_images([0]))
    results: list[tuple[float, int | None, str]] = []  # (start time, version, error)
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        for _ in range(5000):  # bounded; stop ends it far earlier
            if stop.is_set():
                return
            started = time.monotonic()
            try:
                version, error = prediction.Predict(request, timeout=10).model_spec.version.value, ""
            except grpc.RpcError as err:
                version, error = None, f"{err.code()}: {err.details()}"
            with lock:
                results.append((started, version, error))

    threads = [threading.Thread(target=client) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert publish(exports["v2"], base) == 2
        wait_for(lambda: any(v == 2 for _, v, _ in list(results)), timeout_s=30, what="v2 to answer")
        time.sleep(0.5)  # keep the load on while v1 unloads
    finally:
        stop.set()
        for t in threads:
            t.join(15)
        channel.close()
    try:
        errors = [e for _, _, e in results if e]
        assert not errors, errors[:3]
        versions = [v for _, v, _ in results]
        assert versions.count(1) > 3 and versions.count(2) > 3
        record = server.manager.record(MODEL, 2)
        # Warm-up ran before AVAILABLE, covering every batch size the server pads to for the
        # answering signatures (records at 1, 2, 4 ... plus the padded 8) ...
        assert record.warmup_requests_replayed >= 9
        assert record.warmup_batch_sizes["serving_default"] == list(ALLOWED)
        assert record.warmup_batch_sizes["serving_bytes"] == list(ALLOWED)
        # ... and the drift monitor's embedding once: no caller waits on it.
        assert record.warmup_batch_sizes["serving_embedding"] == [1]
        # ... and no request reached version 2 before it was AVAILABLE (so none ran it cold).
        assert record.servable.first_request_at >= record.available_at
        statuses = {s.version: s.state.name for s in server.manager.status(MODEL)}
        assert statuses == {2: "AVAILABLE", 1: "END"}
    finally:
        server.stop()


def _corrupt_copy(source, target, *, keep_manifest: bool):
    shutil.copytree(source, target)
    (target / "saved_model.pb").write_bytes(b"\x08\x01garbage, not a SavedModel")
    if not keep_manifest:
        (target / "MANIFEST.sha256").unlink()


@pytest.mark.parametrize("keep_manifest, code", [(True, "DATA_LOSS"), (False, None)])
def test_a_corrupt_new_version_leaves_the_old_one_serving(exports, tmp_path, keep_manifest, code):
    base = tmp_path / "repo"
    publish(exports["v1"], base)
    server = start_server(single_model_config(MODEL, base / MODEL), poll_s=0.1)
    try:
        _corrupt_copy(base / MODEL / "1", base / MODEL / "2", keep_manifest=keep_manifest)
        wait_for(lambda: server.manager.record(MODEL, 2) and server.manager.record(MODEL, 2).state.name == "END",
                 what="version 2 to fail")
        status, body, _ = http("GET", f"{server.rest_url}/v1/models/{MODEL}")
        assert status == 200
        v2, v1 = body["model_version_status"]
        assert (v2["version"], v2["state"]) == ("2", "END")
        assert v2["status"]["error_code"] != "OK" and v2["status"]["error_message"]
        if code:
            assert v2["status"]["error_code"] == code and "MANIFEST.sha256" in v2["status"]["error_message"]
        assert (v1["version"], v1["state"], v1["status"]["error_code"]) == ("1", "AVAILABLE", "OK")
        status, answer, headers = http("POST", f"{server.rest_url}/v1/models/{MODEL}:predict",
                                       {"instances": colour_images([1]).tolist()})
        assert status == 200 and headers["X-Model-Version"] == "1"
        assert answer["predictions"][0]["class_names"] == "green"
        assert http("GET", f"{server.rest_url}/readyz")[0] == 200
    finally:
        server.stop()


def test_half_written_and_non_numeric_directories_are_never_looked_at(exports, tmp_path):
    base = tmp_path / "repo"
    (base / MODEL / ".tmp-0123").mkdir(parents=True)
    (base / MODEL / ".tmp-0123" / "saved_model.pb").write_bytes(b"half written")
    (base / MODEL / "latest").mkdir()
    server = start_server(single_model_config(MODEL, base / MODEL), poll_s=0.05, wait_ready=False)
    try:
        polls = server.manager.polls
        wait_for(lambda: server.manager.polls >= polls + 3, what="a few polls")
        assert http("GET", f"{server.rest_url}/v1/models/{MODEL}")[0] == 404  # nothing seen at all
        status, body, _ = http("GET", f"{server.rest_url}/readyz")
        assert status == 503 and body["models"] == {MODEL: []}
        publish(exports["v1"], base)
        wait_for(lambda: http("GET", f"{server.rest_url}/readyz")[0] == 200, what="ready")
        assert [s.version for s in server.manager.status(MODEL)] == [1]
    finally:
        server.stop()


def test_specific_version_policy_ignores_newer_versions(exports, tmp_path):
    base = tmp_path / "repo"
    publish(exports["v1"], base)
    publish(exports["v2"], base)
    config = parse_model_server_config(
        f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base / MODEL}" '
        "model_version_policy { specific { versions: 1 } } } }"
    )
    server = start_server(config)
    try:
        assert [(s.version, s.state.name) for s in server.manager.status(MODEL)] == [(1, "AVAILABLE")]
    finally:
        server.stop()


def test_per_request_timeout_is_an_error_not_a_hang(exports, tmp_path):
    base = tmp_path / "repo"
    publish(exports["v1"], base)
    slow_batches = BatchingOptions(max_batch_size=64, batch_timeout_micros=5_000_000, num_batch_threads=1)
    server = start_server(single_model_config(MODEL, base / MODEL), batching=slow_batches, rest_timeout_s=0.3)
    channel, prediction, _ = grpc_stubs(server.grpc_target)
    try:
        status, body, _ = http("POST", f"{server.rest_url}/v1/models/{MODEL}:predict",
                               {"instances": colour_images([0]).tolist()})
        assert status == 504 and "Deadline exceeded" in body["error"]  # not the 200 the batch would give
        with pytest.raises(grpc.RpcError) as info:
            prediction.Predict(predict_request(images=colour_images([0])), timeout=0.3)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        channel.close()
        server.stop()


def test_overload_answers_503_at_once_and_the_queue_stays_bounded(exports, tmp_path):
    base = tmp_path / "repo"
    publish(exports["v1"], base)
    tight = BatchingOptions(max_batch_size=1, max_enqueued_batches=2, num_batch_threads=1)
    server = start_server(single_model_config(MODEL, base / MODEL), batching=tight)
    runner = server.manager.resolve(MODEL)._runners["serving_default"]
    model_call = runner.processor._call
    peak = [0]

    def slow_call(inputs):  # a slow model, so that requests pile up
        peak[0] = max(peak[0], runner.scheduler.queued_tasks)
        time.sleep(0.3)
        return model_call(inputs)

    runner.processor._call = slow_call
    body = {"instances": colour_images([0]).tolist()}

    def call(_):
        return http("POST", f"{server.rest_url}/v1/models/{MODEL}:predict", body)

    try:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(call, range(12)))
        statuses = sorted(r[0] for r in results)
        assert set(statuses) == {200, 503} and statuses.count(503) >= 3
        for status, answer, _ in results:
            if status == 503:
                assert answer == {"error": "The batch scheduling queue to which this task was submitted is full"}
        assert peak[0] <= 2  # max_enqueued_batches × max_batch_size
        assert http("GET", f"{server.rest_url}/healthz")[0] == 200
    finally:
        runner.processor._call = model_call
        server.stop()


def test_stopping_finishes_in_flight_requests(exports, tmp_path):
    base = tmp_path / "repo"
    publish(exports["v1"], base)
    batching = BatchingOptions(max_batch_size=8, batch_timeout_micros=600_000, num_batch_threads=1)
    server = start_server(single_model_config(MODEL, base / MODEL), batching=batching)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(http, "POST", f"{server.rest_url}/v1/models/{MODEL}:predict",
                              {"instances": colour_images([2]).tolist()})
        time.sleep(0.2)  # the request now waits in the batch queue
        server.stop(grace_s=5)
        status, body, _ = pending.result(10)
    assert status == 200 and body["predictions"][0]["class_names"] == "blue"


def test_an_incomplete_copy_is_retried_until_it_loads(exports, tmp_path):
    """A version directory still being copied by hand fails to load; TF Serving's retry
    (--max_num_load_retries, --load_retry_interval_micros) loads it once it is complete."""
    base = tmp_path / "repo"
    publish(exports["v1"], base)
    server = start_server(single_model_config(MODEL, base / MODEL), poll_s=0.1,
                          load_retry_interval_s=0.3, max_num_load_retries=20)
    try:
        partial = base / MODEL / "2"
        partial.mkdir()
        shutil.copy(base / MODEL / "1" / "saved_model.pb", partial / "saved_model.pb")  # no variables yet
        wait_for(lambda: server.manager.record(MODEL, 2) and server.manager.record(MODEL, 2).error is not None,
                 what="the partial copy to fail")
        assert [s.state.name for s in server.manager.status(MODEL)] == ["END", "AVAILABLE"]
        for entry in (base / MODEL / "1").iterdir():
            if entry.name != "saved_model.pb":
                (shutil.copytree if entry.is_dir() else shutil.copy)(entry, partial / entry.name)
        wait_for(lambda: server.manager.latest_available(MODEL).version == 2, what="the retry to load version 2")
        record = server.manager.record(MODEL, 2)
        assert record.load_attempts >= 2 and record.error is None
    finally:
        server.stop()


def test_the_model_config_file_is_polled_and_reloaded(exports, tmp_path):
    base = tmp_path / "repo"
    publish(exports["v1"], base)
    publish(exports["v2"], base)
    config_file = tmp_path / "models.config"

    def write(labels: str) -> None:
        config_file.write_text(
            f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base / MODEL}" '
            f"model_version_policy {{ all {{}} }} {labels} }} }}"
        )

    write('version_labels { key: "stable" value: 1 }')
    from ingot.serving.config import load_model_server_config

    server = start_server(load_model_server_config(config_file), config_file=config_file, config_poll_s=0.1,
                          warmup=False)
    try:
        wait_for(lambda: server.manager.readiness()["models"][MODEL] == [2, 1], what="both versions")
        assert server.manager.labels(MODEL) == {"stable": 1}
        assert server.manager.record(MODEL, 1).warmup_requests_replayed == 0  # --enable_model_warmup=false
        write('version_labels { key: "stable" value: 2 } version_labels { key: "old" value: 1 }')
        wait_for(lambda: server.manager.labels(MODEL) == {"stable": 2, "old": 1}, what="the new labels")
        status, _, headers = http("POST", f"{server.rest_url}/v1/models/{MODEL}/labels/stable:predict",
                                  {"instances": colour_images([0]).tolist()})
        assert status == 200 and headers["X-Model-Version"] == "2"
        config_file.write_text("this is not a model config")  # a broken edit is ignored
        time.sleep(0.4)
        assert server.manager.labels(MODEL) == {"stable": 2, "old": 1}
    finally:
        server.stop()


def test_a_request_racing_an_unload_goes_to_the_version_now_serving(exports, tmp_path):
    """resolve() can hand out a version that starts unloading before the request is queued;
    the request must then go to the version serving now, not fail."""
    import asyncio

    base = tmp_path / "repo"
    publish(exports["v1"], base)
    publish(exports["v2"], base)
    config = parse_model_server_config(
        f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base / MODEL}" model_version_policy {{ all {{}} }} }} }}'
    )
    server = start_server(config, batching=BatchingOptions(max_batch_size=4, num_batch_threads=1))
    try:
        wait_for(lambda: server.manager.readiness()["models"][MODEL] == [2, 1], what="both versions")
        from ingot.protocol.model_spec import ModelSpec
        from ingot.serving.backend import PredictCall, RequestContext

        backend = server.server.backend
        stale = server.manager.resolve(MODEL)
        assert stale.version == 2
        server.manager._unload(server.manager.record(MODEL, 2))  # what the poller does in a rollover
        inputs = {"images": colour_images([0])}

        def run(spec):
            ctx = RequestContext("GRPC", {}, timeout_s=10)
            return asyncio.run(backend.predict(ctx, stale, PredictCall(spec, "", inputs)))

        answer = run(ModelSpec(MODEL))
        assert answer.version == 1 and answer.outputs["class_names"].tolist() == [b"red"]
        with pytest.raises(ServingError) as info:  # pinned to the version that went away
            run(ModelSpec(MODEL, 2))
        assert info.value.code == Code.NOT_FOUND
    finally:
        server.stop()
