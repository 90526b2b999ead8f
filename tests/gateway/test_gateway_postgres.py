"""The gateway logging into a real PostgreSQL that is killed mid-stream: every request still
succeeds, drops are counted, and logging (and feedback) resume after the restart."""

from __future__ import annotations

import pytest

from ingot.client.feedback import send_feedback
from tests.gateway.conftest import repository_of, routes_document
from tests.gateway.test_gateway_api import predict
from tests.serving.support import colour_images, http, wait_for
from tests.support.postgres import throwaway_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("serving-conformance")]


def metric(gateway, name: str) -> float:
    _, text, _ = http("GET", gateway.rest_url + "/monitoring/prometheus/metrics")
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


def test_postgres_down_requests_succeed_drops_are_counted_and_logging_resumes(start_gateway, conformance_server):
    with throwaway_postgres(durable=True) as server:
        url = server.create_database("gateway_log")
        gateway = start_gateway(routes_document(conformance_server), log_url=url, log_queue_size=100,
                                model_repository=repository_of(conformance_server))
        store = gateway.gateway.log_store
        status, _, first = predict(gateway, colour_images([0]))
        assert status == 200
        wait_for(lambda: store.get().rows(first["x-ingot-request-id"]), what="the first row in PostgreSQL")

        server.crash()
        statuses, sent = set(), 0
        while sent < 3000:  # until the bounded queue overflows (the writer holds one batch besides)
            statuses |= {predict(gateway, colour_images([i % 3]))[0] for i in range(50)}
            sent += 50
            if metric(gateway, "ingot_gateway_log_records_dropped_total") > 0:
                break
        assert statuses == {200}  # the log never fails a request
        assert metric(gateway, "ingot_gateway_log_records_dropped_total") > 0

        server.restart()  # what was queued while it was down is written, then new rows flow again
        wait_for(lambda: metric(gateway, "ingot_gateway_log_queue_depth") == 0, timeout_s=30, what="the backlog")
        status, _, after = predict(gateway, colour_images([2]))
        assert status == 200
        rows = wait_for(lambda: store.get().rows(after["x-ingot-request-id"]), what="logging to resume")
        assert rows[0]["status"] == "OK" and rows[0]["variant"] == "champion"
        written = metric(gateway, "ingot_gateway_log_records_written_total")
        dropped = metric(gateway, "ingot_gateway_log_records_dropped_total")
        wait_for(lambda: metric(gateway, "ingot_gateway_log_queue_depth") == 0, what="the queue to drain")
        assert written + dropped == sent + 2 and store.get().count() == written
        [label] = send_feedback(gateway.rest_url, after["x-ingot-request-id"], "blue",
                                feedback_key=after["x-ingot-feedback-key"])
        assert (label["variant"], label["model_version"]) == ("champion", 2)
        gateway.stop()  # before the server goes away with the block
