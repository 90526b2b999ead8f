"""Make the frozen upgrade fixtures in tests/db/fixtures/: a registry + inference log database
as the migrations of commit 70afdc6 created it (registry schema 6 holding the rollout and
drift-trigger tables, inference log schema 1), with rows in every table, dumped as SQL.

It was run once, at that commit, from the repository root:

    PYTHONPATH=$PWD python tests/db/make_fixtures.py

and its output is committed; the upgrade test (test_upgrade.py) loads the dumps, runs today's
migrations and compares every row. Running it again with later code would describe the later
layout, not the old one, so do not regenerate the fixtures: add a new pair for a new layout.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHA = "ab" * 32
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def populate(url: str) -> None:
    """Rows in every table, through the stores' own API of that commit."""
    from ingot.inference_log.records import FeedbackItem, LogRecord
    from ingot.inference_log.store import InferenceLogStore
    from ingot.monitor.triggers import TriggerStore
    from ingot.registry import Registry
    from ingot.rollout.store import RolloutStore

    with Registry.from_url(url) as registry:
        gate = {"blessed": True, "reasons": ["accuracy 0.91 >= 0.9"]}
        for version in (1, 2, 3):
            registry.register_version("digits", version=version, artifact_uri=f"/models/digits/{version}",
                                      model_sha256=SHA[:-1] + str(version), data_hash="data-1",
                                      config={"epochs": version}, metrics={"accuracy": 0.9 + version / 100},
                                      gate=gate, pipeline_run_id=f"run-{version}", actor="fixture")
            registry.mark_ready("digits", version, verify=lambda _uri, _sha: True)
        registry.transition("digits", 2, "challenger", reason="A/B test", actor="fixture")
        registry.record_rejection("digits", reasons=["accuracy 0.5 < 0.9"], metrics={"accuracy": 0.5},
                                  pipeline_run_id="run-rejected", actor="fixture")
        registry.register_version("pending-model", version=7, artifact_uri="/models/pending-model/7",
                                  model_sha256=SHA, actor="fixture")

        rollouts = RolloutStore(registry)
        rollout = rollouts.create(model="digits", champion=1, challenger=2, steps=[10, 50], actor="fixture",
                                  policy={"min_samples": 100}, target={"gateway": "http://gw:8080"})
        rollout = rollouts.transition(rollout, "warming", reason="warm-up", actor="fixture",
                                      evidence={"ready": True})
        rollouts.transition(rollout, "analyzing", reason="first step", actor="fixture",
                            evidence={"n": [0, 0]}, step_index=0, step_started_at=T0)
        rollouts.acquire("rollout:digits", "controller-1", ttl_s=3600)

        triggers = TriggerStore(registry.engine)
        first = triggers.claim("digits", reason="drift p=0.001", statistics={"p_value": 0.001}, backend="local",
                               now=T0 - timedelta(days=3))
        assert not hasattr(first, "blocking")
        triggers.mark_running(first.id, run_id="local-1", log_path="/tmp/run.log", pid=4242, host="box")  # type: ignore[union-attr]
        triggers.finish(first.id, "succeeded", detail="published digits:3")  # type: ignore[union-attr]
        triggers.claim("digits", reason="accuracy 0.7 < 0.8", statistics={"accuracy": 0.7}, backend="kfp", now=T0)

    with InferenceLogStore.from_url(url) as log:
        records = [
            LogRecord(request_id=f"req-{i}", row=0, ts=T0 + timedelta(seconds=i), model="digits", experiment=rollout.experiment,
                      variant="champion" if i % 2 else "challenger", assignment="weight", model_version=1 + i % 2,
                      signature="serving_default", input_sha256=SHA, predicted_class_id=i % 10,
                      predicted_class_name=str(i % 10), confidence=0.5 + i / 100, input_mean=120.5, input_std=30.25,
                      latency_ms=3.5 + i, status="OK")
            for i in range(4)
        ]
        records.append(LogRecord(request_id="req-0", row=0, ts=T0, model="digits", experiment=rollout.experiment,
                                 variant="shadow", assignment="mirror", model_version=3, signature="serving_default",
                                 input_sha256=None, predicted_class_id=None, predicted_class_name=None,
                                 confidence=None, input_mean=None, input_std=None, latency_ms=9.0,
                                 status="UNAVAILABLE"))
        log.write(records)
        names = [str(i) for i in range(10)]
        log.record_feedback([FeedbackItem("req-0", 0, "0"), FeedbackItem("req-1", 0, 7)],
                            lambda _model, _version: names)


def dump_sqlite(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return "\n".join(conn.iterdump()) + "\n"


def dump_postgresql(server: object, database: str) -> str:
    from tests.support.postgres import find_bindir

    port = server.port  # type: ignore[attr-defined]
    out = subprocess.run(
        [str(find_bindir() / "pg_dump"), "--no-owner", "--no-privileges", "--no-comments", "--inserts",
         "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database],
        check=True, capture_output=True, text=True,
    ).stdout
    # psql meta-commands (\restrict in newer pg_dump) are not SQL; the loader runs plain SQL.
    return "".join(line for line in out.splitlines(keepends=True) if not line.startswith("\\"))


def main() -> int:
    from tests.support.postgres import throwaway_postgres

    FIXTURES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "old.db"
        populate(f"sqlite:///{path}")
        (FIXTURES / "registry_v6_log_v1.sqlite.sql").write_text(dump_sqlite(path))
    with throwaway_postgres() as server:
        server.create_database("old")
        populate(server.url_for("old"))
        (FIXTURES / "registry_v6_log_v1.postgresql.sql").write_text(dump_postgresql(server, "old"))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
