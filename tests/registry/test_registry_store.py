"""Registry behaviour on SQLite and PostgreSQL: registration, verification, stages, events, reads."""

from __future__ import annotations

import hashlib
from datetime import UTC

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ingot.errors import ConfigError, ModelError, NotFoundError
from ingot.registry import NewVersion, Registry, Stage, Status
from tests.registry.helpers import BLESSED, SHA_A, SHA_B, ok, publish


def register(registry: Registry, name: str = "digits", version: int = 1, sha: str = SHA_A, **overrides):
    fields = dict(
        version=version, artifact_uri=f"/repo/{name}/{version}", model_sha256=sha, data_hash="d" * 64,
        config={"architecture": "cnn", "image_size": [32, 32]}, metrics={"accuracy": 0.93},
        gate=BLESSED, pipeline_run_id="run-1", actor="pipeline",
    )
    fields.update(overrides)
    return registry.register_version(name, **fields)


# ------------------------------------------------------------------------------ registration

def test_register_records_lineage_as_pending_without_stage(registry: Registry) -> None:
    created = register(registry)
    assert created.version == 1 and created.name == "digits"
    assert created.status is Status.PENDING and created.stage is None
    assert created.artifact_uri == "/repo/digits/1" and created.model_sha256 == SHA_A
    assert created.data_hash == "d" * 64 and created.pipeline_run_id == "run-1"
    assert created.config == {"architecture": "cnn", "image_size": [32, 32]}
    assert created.metrics == {"accuracy": 0.93} and created.blessed
    assert created.registered_by == "pipeline"
    assert created.created_at.tzinfo is UTC and created.created_at == created.updated_at
    assert registry.get_version("digits", 1) == created
    assert registry.events("digits", 1) == []


def test_retried_registration_returns_the_existing_version(registry: Registry) -> None:
    first = register(registry)
    again = register(registry, metrics={"accuracy": 0.5}, pipeline_run_id="run-retry")
    assert again == first  # the stored lineage wins; a retry never rewrites it
    assert [v.version for v in registry.list_versions("digits")] == [1]


def test_same_version_with_another_artifact_is_refused(registry: Registry) -> None:
    register(registry, sha=SHA_A)
    with pytest.raises(ModelError, match=f"digits:1 is already registered with model_sha256 {SHA_A}, not {SHA_B}"):
        register(registry, sha=SHA_B)
    assert registry.get_version("digits", 1).model_sha256 == SHA_A


def test_sha256_is_normalized_to_lower_case(registry: Registry) -> None:
    assert register(registry, sha="AB" * 32).model_sha256 == "ab" * 32
    assert register(registry, sha="ab" * 32).id == registry.get_version("digits", 1).id


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "bad/name"}, "model name 'bad/name' is not valid"),
        ({"name": ""}, "model name '' is not valid"),
        ({"version": 0}, "must be a positive integer"),
        ({"version": True}, "must be a positive integer"),
        ({"sha": "xyz"}, "must be 64 hex digits"),
        ({"artifact_uri": " "}, "artifact_uri must be a non-empty string"),
        ({"gate": {"blessed": False, "reasons": ["too weak"]}}, "record it with record_rejection"),
        ({"config": {"classes": {"a", "b"}}}, "config must be JSON-serializable"),
        ({"metrics": {"accuracy": float("nan")}}, "metrics must be JSON-serializable"),
        ({"actor": ""}, "actor must be a non-empty string"),
    ],
)
def test_invalid_registration_names_the_problem(registry: Registry, overrides: dict, message: str) -> None:
    overrides = dict(overrides)  # shared between the backends' runs
    name = overrides.pop("name", "digits")
    sha = overrides.pop("sha", SHA_A)
    with pytest.raises(ConfigError, match=message):
        register(registry, name, sha=sha, **overrides)
    assert registry.list_models() == [] or registry.list_versions("digits") == []


def test_register_many_is_one_idempotent_batch(registry: Registry) -> None:
    batch = [NewVersion(version=v, artifact_uri=f"/repo/m/{v}", model_sha256=f"{v:064x}") for v in range(1, 8)]
    first = registry.register_many("m", batch)
    assert [v.version for v in first] == list(range(1, 8))
    more = batch[3:] + [NewVersion(version=8, artifact_uri="/repo/m/8", model_sha256=f"{8:064x}")]
    second = registry.register_many("m", more)
    assert [v.id for v in second[:-1]] == [v.id for v in first[3:]]
    assert len(registry.list_versions("m")) == 8
    clash = [NewVersion(version=9, artifact_uri="/x", model_sha256=SHA_A),
             NewVersion(version=9, artifact_uri="/x", model_sha256=SHA_B)]
    with pytest.raises(ConfigError, match="m:9 appears twice in one batch"):
        registry.register_many("m", clash)
    # A conflict anywhere in a batch rolls back the whole batch.
    with pytest.raises(ModelError, match="m:2 is already registered"):
        registry.register_many("m", [NewVersion(version=10, artifact_uri="/x", model_sha256=SHA_A),
                                     NewVersion(version=2, artifact_uri="/x", model_sha256=SHA_B)])
    assert registry.latest("m").version == 8


# ------------------------------------------------------------------------------ verification

def test_first_blessed_ready_version_becomes_champion_later_ones_candidates(registry: Registry) -> None:
    register(registry, version=1, sha=SHA_A)
    register(registry, version=2, sha=SHA_B)
    champion = registry.mark_ready("digits", 1, verify=ok, actor="register-step")
    assert champion.status is Status.READY and champion.stage is Stage.CHAMPION
    candidate = registry.mark_ready("digits", 2, verify=ok)
    assert candidate.status is Status.READY and candidate.stage is Stage.CANDIDATE
    [event] = registry.events("digits", 1)
    assert (event.from_stage, event.to_stage, event.actor) == (None, Stage.CHAMPION, "register-step")
    assert event.reason == "first blessed READY version of digits"
    [event] = registry.events("digits", 2)
    assert event.to_stage is Stage.CANDIDATE and event.reason == "blessed; digits:1 is champion"
    assert event.actor == "pipeline"  # defaults to whoever registered it
    assert registry.champion("digits").version == 1


def test_a_version_without_a_gate_decision_never_becomes_champion_by_itself(registry: Registry) -> None:
    register(registry, gate=None)
    ready = registry.mark_ready("digits", 1, verify=ok)
    assert ready.stage is Stage.CANDIDATE and not ready.blessed
    assert registry.champion("digits") is None
    assert "not blessed" in registry.events("digits", 1)[0].reason


def test_verifier_gets_the_artifact_uri_and_sha(registry: Registry) -> None:
    register(registry)
    calls = []
    registry.mark_ready("digits", 1, verify=lambda uri, sha: calls.append((uri, sha)))
    assert calls == [("/repo/digits/1", SHA_A)]  # returning None counts as success
    assert registry.get_version("digits", 1).status is Status.READY


@pytest.mark.parametrize(
    ("verifier", "reason"),
    [
        (lambda uri, sha: False, "checksum verification returned False"),
        (lambda uri, sha: (_ for _ in ()).throw(OSError("MANIFEST.sha256 missing")), "OSError: MANIFEST.sha256 missing"),
    ],
)
def test_failed_verification_marks_failed_never_ready(registry: Registry, verifier, reason: str) -> None:
    register(registry)
    with pytest.raises(ModelError, match="digits:1 failed artifact verification and is marked FAILED"):
        registry.mark_ready("digits", 1, verify=verifier)
    failed = registry.get_version("digits", 1)
    assert failed.status is Status.FAILED and failed.status_reason == reason and failed.stage is None
    assert registry.champion("digits") is None and registry.events("digits", 1) == []
    with pytest.raises(ModelError, match="already FAILED verification"):
        registry.mark_ready("digits", 1, verify=ok)
    with pytest.raises(ModelError, match="has no stage yet"):
        registry.transition("digits", 1, Stage.CHALLENGER, reason="try", actor="me")


def test_mark_ready_on_a_ready_version_changes_nothing(registry: Registry) -> None:
    publish(registry, "digits", 1)
    calls = []
    again = registry.mark_ready("digits", 1, verify=lambda uri, sha: calls.append(uri))
    assert again.stage is Stage.CHAMPION and calls == []
    assert len(registry.events("digits", 1)) == 1


def test_checksum_mapping_verifies_real_files(registry: Registry, tmp_path) -> None:
    artifact = tmp_path / "digits" / "1"
    (artifact / "variables").mkdir(parents=True)
    (artifact / "saved_model.pb").write_bytes(b"graph")
    (artifact / "variables" / "variables.index").write_bytes(b"index")
    sums = {
        "saved_model.pb": hashlib.sha256(b"graph").hexdigest(),
        "variables/variables.index": hashlib.sha256(b"index").hexdigest(),
    }
    register(registry, version=1, sha=SHA_A, artifact_uri=f"file://{artifact}")
    assert registry.mark_ready("digits", 1, verify=sums).status is Status.READY

    (artifact / "variables" / "variables.index").write_bytes(b"tampered")
    register(registry, version=2, sha=SHA_B, artifact_uri=str(artifact))
    with pytest.raises(ModelError, match="marked FAILED"):
        registry.mark_ready("digits", 2, verify=sums)
    reason = registry.get_version("digits", 2).status_reason
    assert "1 of 2 files do not match" in reason and "variables/variables.index: sha256" in reason

    register(registry, version=3, sha="c" * 64, artifact_uri=str(artifact))
    with pytest.raises(ModelError):
        registry.mark_ready("digits", 3, verify={"../../escape": SHA_A, "missing.pb": SHA_A})
    reason = registry.get_version("digits", 3).status_reason
    assert "../../escape: outside the artifact directory" in reason and "missing.pb: missing" in reason


def test_checksum_mapping_cannot_read_remote_artifacts(registry: Registry) -> None:
    register(registry, artifact_uri="gs://bucket/digits/1")
    with pytest.raises(ModelError, match="checksum mappings need a local path"):
        registry.mark_ready("digits", 1, verify={"saved_model.pb": SHA_A})
    assert registry.get_version("digits", 1).status is Status.FAILED


def test_verify_must_be_callable_or_mapping(registry: Registry) -> None:
    register(registry)
    with pytest.raises(ConfigError, match="verify must be a callable"):
        registry.mark_ready("digits", 1, verify="yes")  # type: ignore[arg-type]
    assert registry.get_version("digits", 1).status is Status.PENDING


# ------------------------------------------------------------------------------ rejections

def test_rejections_are_recorded_with_reasons_and_no_version_number(registry: Registry) -> None:
    publish(registry, "digits", 1)
    rejected = registry.record_rejection(
        "digits", reasons=["class '3' f1 0.52 < 0.70", "accuracy 0.81 < 0.90"], metrics={"accuracy": 0.81},
        data_hash="e" * 64, config={"epochs": 1}, pipeline_run_id="run-7",
        gate={"checks": [{"name": "accuracy", "passed": False}]},
    )
    assert rejected.version is None and rejected.is_rejection
    assert rejected.stage is Stage.REJECTED and rejected.status is Status.FAILED
    assert rejected.reasons == ["class '3' f1 0.52 < 0.70", "accuracy 0.81 < 0.90"]
    assert rejected.gate["checks"] == [{"name": "accuracy", "passed": False}] and not rejected.blessed
    assert rejected.artifact_uri is None and rejected.model_sha256 is None
    [event] = registry.record_events(rejected.id)
    assert event.to_stage is Stage.REJECTED and event.reason == "class '3' f1 0.52 < 0.70; accuracy 0.81 < 0.90"
    # listed (newest first) but never "latest", never a champion comparison
    assert [r.id for r in registry.list_versions("digits")] == [rejected.id, registry.get_version("digits", 1).id]
    assert [r.version for r in registry.list_versions("digits", include_rejections=False)] == [1]
    assert registry.latest("digits").version == 1
    assert registry.get_record(rejected.id) == rejected
    assert registry.by_pipeline_run("run-7") == [rejected]
    [summary] = registry.list_models()
    assert (summary.versions, summary.rejections, summary.champion, summary.latest) == (1, 1, 1, 1)


def test_a_retried_rejection_is_recorded_once_per_pipeline_run(registry: Registry) -> None:
    first = registry.record_rejection("digits", reasons=["too weak"], pipeline_run_id="run-1")
    assert registry.record_rejection("digits", reasons=["too weak"], pipeline_run_id="run-1") == first
    other = registry.record_rejection("digits", reasons=["too weak"], pipeline_run_id="run-2")
    anonymous = [registry.record_rejection("digits", reasons=["manual"]) for _ in range(2)]
    assert len({first.id, other.id, *(r.id for r in anonymous)}) == 4
    assert registry.list_models()[0].rejections == 4 and registry.list_models()[0].versions == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reasons": []}, "a rejection needs reasons"),
        ({"reasons": "one string"}, "a rejection needs reasons"),
        ({"reasons": ["ok", " "]}, "a rejection needs reasons"),
        ({"reasons": ["x"], "gate": {"blessed": True}}, "is blessed; register the published version"),
        ({"reasons": ["x"], "metrics": [0.5]}, "metrics must be a mapping"),
    ],
)
def test_invalid_rejections_are_refused(registry: Registry, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        registry.record_rejection("digits", **kwargs)


# ------------------------------------------------------------------------------ stages

def test_promotion_archives_the_old_champion_in_the_same_transaction(registry: Registry) -> None:
    publish(registry, "digits", 1, accuracy=0.90)
    publish(registry, "digits", 2, accuracy=0.95)
    challenger = registry.transition("digits", 2, "challenger", reason="A/B test started", actor="ab")
    assert challenger.stage is Stage.CHALLENGER
    champion = registry.transition("digits", 2, Stage.CHAMPION, reason="sequential test: +2.1% accuracy", actor="ab")
    assert champion.stage is Stage.CHAMPION
    assert registry.get_version("digits", 1).stage is Stage.ARCHIVED
    assert registry.champion("digits").version == 2
    assert registry.champion_metrics("digits") == {"accuracy": 0.95, "macro_f1": pytest.approx(0.94)}
    old = registry.events("digits", 1)
    new = registry.events("digits", 2)
    assert [(e.from_stage, e.to_stage) for e in old] == [(None, Stage.CHAMPION), (Stage.CHAMPION, Stage.ARCHIVED)]
    assert old[-1].reason == "replaced by digits:2 as champion: sequential test: +2.1% accuracy"
    assert old[-1].actor == "ab" and old[-1].at == new[-1].at  # one transaction, one timestamp
    assert [(e.from_stage, e.to_stage) for e in new] == [
        (None, Stage.CANDIDATE), (Stage.CANDIDATE, Stage.CHALLENGER), (Stage.CHALLENGER, Stage.CHAMPION)]
    assert new[-1].id > old[-1].id


def test_rollback_restores_an_archived_champion(registry: Registry) -> None:
    publish(registry, "digits", 1)
    publish(registry, "digits", 2)
    registry.transition("digits", 2, "challenger", reason="ab", actor="ab")
    registry.transition("digits", 2, "champion", reason="won", actor="ab")
    registry.transition("digits", 1, "champion", reason="rollback: errors up", actor="oncall")
    assert registry.champion("digits").version == 1
    assert registry.get_version("digits", 2).stage is Stage.ARCHIVED


def test_a_new_challenger_sends_the_previous_one_back_to_candidate(registry: Registry) -> None:
    for version in (1, 2, 3):
        publish(registry, "digits", version)
    registry.transition("digits", 2, "challenger", reason="first A/B", actor="ab")
    registry.transition("digits", 3, "challenger", reason="newer model", actor="ab")
    assert registry.get_version("digits", 2).stage is Stage.CANDIDATE
    assert registry.events("digits", 2)[-1].reason == "replaced by digits:3 as challenger: newer model"
    assert registry.latest("digits", stage="challenger").version == 3


def test_a_candidate_becomes_champion_directly_only_when_there_is_none(registry: Registry) -> None:
    publish(registry, "digits", 1, gate=None)
    publish(registry, "digits", 2, gate=None)
    registry.transition("digits", 1, "champion", reason="approved by hand", actor="alice")
    assert registry.champion("digits").version == 1
    with pytest.raises(ModelError, match="make it the challenger first"):
        registry.transition("digits", 2, "champion", reason="skip the A/B", actor="alice")
    assert registry.champion("digits").version == 1


@pytest.mark.parametrize(
    ("version", "target", "message"),
    [
        (1, "archived", "cannot move digits:1 from champion to archived; allowed from champion: none"),
        (1, "candidate", "a champion is archived when another version is promoted"),
        (3, "challenger", "cannot move digits:3 from rejected to challenger"),
        (4, "challenger", "digits:4 has no stage yet \\(status PENDING\\)"),
    ],
)
def test_disallowed_transitions_are_refused(registry: Registry, version: int, target: str, message: str) -> None:
    publish(registry, "digits", 1)
    publish(registry, "digits", 2)
    publish(registry, "digits", 3)
    registry.transition("digits", 3, "rejected", reason="bias found in review", actor="alice")
    publish(registry, "digits", 4, ready=False)
    before = {v: registry.get_version("digits", v).stage for v in (1, 2, 3, 4)}
    with pytest.raises(ModelError, match=message):
        registry.transition("digits", version, target, reason="why", actor="alice")
    assert {v: registry.get_version("digits", v).stage for v in (1, 2, 3, 4)} == before


def test_asking_for_the_current_stage_is_a_no_op(registry: Registry) -> None:
    publish(registry, "digits", 1)
    assert registry.transition("digits", 1, "champion", reason="retry", actor="ab").stage is Stage.CHAMPION
    assert len(registry.events("digits", 1)) == 1


def test_transition_input_errors(registry: Registry) -> None:
    publish(registry, "digits", 1)
    with pytest.raises(ConfigError, match="unknown stage 'production'; expected one of candidate"):
        registry.transition("digits", 1, "production", reason="x", actor="me")
    with pytest.raises(ConfigError, match="reason must be a non-empty string"):
        registry.transition("digits", 1, "archived", reason="", actor="me")
    with pytest.raises(NotFoundError, match="model 'digits' has no version 9"):
        registry.transition("digits", 9, "archived", reason="x", actor="me")
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        registry.transition("nope", 1, "archived", reason="x", actor="me")


# ------------------------------------------------------------------------------ reads

def test_lookups(registry: Registry) -> None:
    assert registry.list_models() == []
    assert registry.champion_metrics("digits") is None  # nothing to beat yet
    publish(registry, "digits", 1, accuracy=0.91)
    publish(registry, "digits", 2, accuracy=0.92)
    publish(registry, "digits", 3, ready=False)
    publish(registry, "cifar", 1, gate=None)
    assert [s.name for s in registry.list_models()] == ["cifar", "digits"]
    assert registry.latest("digits").version == 3
    assert registry.latest("digits", status="ready").version == 2
    assert registry.latest("digits", stage=Stage.CHAMPION).version == 1
    assert registry.latest("digits", stage="archived") is None
    assert registry.champion("cifar") is None and registry.champion_metrics("cifar") is None
    assert registry.champion_metrics("digits")["accuracy"] == 0.91
    assert [v.version for v in registry.list_versions("digits")] == [3, 2, 1]
    assert [v.version for v in registry.list_versions("digits", limit=2)] == [3, 2]
    assert [v.label for v in registry.by_pipeline_run("run-digits-2")] == ["digits:2"]
    with pytest.raises(NotFoundError, match=r"model 'digits' has no version 7 \(latest is 3\)"):
        registry.get_version("digits", 7)
    with pytest.raises(NotFoundError, match=r"no model named 'mnist' in the registry \(known: cifar, digits\)"):
        registry.latest("mnist")
    with pytest.raises(NotFoundError, match="no registry record with id 999"):
        registry.get_record(999)
    with pytest.raises(ConfigError, match="unknown status 'done'"):
        registry.latest("digits", status="done")
    with pytest.raises(ConfigError, match="limit must be a positive number"):
        registry.list_versions("digits", limit=0)


def test_records_survive_reopening(registry_url: str) -> None:
    with Registry.from_url(registry_url) as registry:
        publish(registry, "digits", 1)
        registry.record_rejection("digits", reasons=["weak"], pipeline_run_id="r")
    with Registry.from_url(registry_url) as reopened:
        assert reopened.champion("digits").version == 1
        assert reopened.list_models()[0].rejections == 1
        assert reopened.get_version("digits", 1).to_dict()["stage"] == "champion"


# ------------------------------------------------------------------------------ database guards

def test_the_database_rejects_changes_to_stage_events(registry: Registry) -> None:
    publish(registry, "digits", 1)
    statements = ["UPDATE stage_events SET reason = 'rewritten'", "DELETE FROM stage_events"]
    if registry.dialect == "postgresql":
        statements.append("TRUNCATE stage_events")
    for statement in statements:
        with pytest.raises(DBAPIError, match="stage_events is append-only"):
            with registry.engine.begin() as conn:
                conn.execute(text(statement))
    [event] = registry.events("digits", 1)
    assert event.reason == "first blessed READY version of digits"


def test_the_database_allows_one_champion_and_one_challenger_per_model(registry: Registry) -> None:
    publish(registry, "digits", 1)
    publish(registry, "digits", 2)
    publish(registry, "digits", 3)
    registry.transition("digits", 2, "challenger", reason="ab", actor="ab")
    for stage, version in (("champion", 2), ("challenger", 3)):
        with pytest.raises(DBAPIError):
            with registry.engine.begin() as conn:
                conn.execute(text("UPDATE model_versions SET stage = :s WHERE version = :v"), {"s": stage, "v": version})
    assert registry.champion("digits").version == 1


def test_check_constraints_guard_statuses_and_stages(registry: Registry) -> None:
    publish(registry, "digits", 1)
    for statement in ("UPDATE model_versions SET status = 'DONE'", "UPDATE model_versions SET stage = 'prod'",
                      "UPDATE model_versions SET version = NULL"):
        with pytest.raises(DBAPIError):
            with registry.engine.begin() as conn:
                conn.execute(text(statement))


# ------------------------------------------------------------------------------ opening

def test_default_registry_is_a_sqlite_file_in_the_data_directory(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGOT_DATA_DIR", str(tmp_path / "nested" / "data"))
    monkeypatch.delenv("INGOT_REGISTRY_URL", raising=False)
    with Registry.from_url(None) as registry:
        assert registry.dialect == "sqlite"
        assert registry.url == f"sqlite:///{tmp_path / 'nested' / 'data' / 'registry.db'}"
        register(registry)
    assert (tmp_path / "nested" / "data" / "registry.db").is_file()


def test_no_url_means_the_registry_url_variable_like_default_url(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ingot.registry import default_url

    monkeypatch.setenv("INGOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INGOT_REGISTRY_URL", f"sqlite:///{tmp_path / 'from-env.db'}")
    with Registry.from_url(None) as registry:
        assert registry.url == default_url() == f"sqlite:///{tmp_path / 'from-env.db'}"
    assert (tmp_path / "from-env.db").is_file() and not (tmp_path / "data" / "registry.db").exists()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://ingot:secret@db:5432/registry", "postgresql+psycopg"),
        ("postgres://ingot@db/registry", "postgresql+psycopg"),
        ("postgresql+psycopg://ingot@db/registry", "postgresql+psycopg"),
        ("sqlite:///relative/registry.db", "sqlite"),
    ],
)
def test_registry_urls_are_normalized(url: str, driver: str) -> None:
    from ingot.registry import normalize_url

    assert normalize_url(url).drivername == driver


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "registry URL 'not a url' is not a database URL; expected sqlite:///PATH or postgresql://"),
        ("mysql://db/registry", "registry URL scheme 'mysql' is not supported"),
        ("postgresql+psycopg2://db/registry", "driver 'postgresql\\+psycopg2' is not supported; use postgresql\\+psycopg://"),
        ("postgresql://db", "names no database"),
    ],
)
def test_bad_registry_urls_say_what_is_expected(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Registry.from_url(url)


def test_an_unreachable_postgresql_is_a_clear_error_with_the_password_masked() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConfigError, match=rf"cannot open the registry at postgresql\+psycopg://ingot:\*\*\*@127.0.0.1:{port}/registry: ") as error:
        Registry.from_url(f"postgresql://ingot:hunter2@127.0.0.1:{port}/registry")
    assert "hunter2" not in str(error.value)


def test_repository_verifier_checks_the_manifest_and_the_model_digest(registry: Registry, tmp_path) -> None:
    from ingot import repository
    from ingot.registry import repository_verifier

    def fake_version(version: int, weights: bytes) -> tuple[str, str]:
        path = tmp_path / "digits" / str(version)
        (path / "variables").mkdir(parents=True)
        (path / "assets.extra").mkdir()
        (path / "saved_model.pb").write_bytes(b"graph")
        (path / "variables" / "variables.data-00000-of-00001").write_bytes(weights)
        (path / "assets.extra" / "model_card.json").write_text(f'{{"version": {version}}}')
        repository.write_manifest(path)
        return str(path), repository.model_sha256(path)

    for version, weights in ((1, b"w1"), (2, b"w2"), (3, b"w3")):
        uri, sha = fake_version(version, weights)
        registry.register_version("digits", version=version, artifact_uri=uri, model_sha256=sha if version != 3 else SHA_A,
                                  gate=BLESSED)
    assert registry.mark_ready("digits", 1, verify=repository_verifier).stage is Stage.CHAMPION

    (tmp_path / "digits" / "2" / "variables" / "variables.data-00000-of-00001").write_bytes(b"bit rot")
    with pytest.raises(ModelError, match="marked FAILED: PublishError: .*does not match its MANIFEST.sha256 digest"):
        registry.mark_ready("digits", 2, verify=repository_verifier)
    with pytest.raises(ModelError, match=f"marked FAILED: ModelError: .* holds model_sha256 [0-9a-f]{{64}}, not the registered {SHA_A}"):
        registry.mark_ready("digits", 3, verify=repository_verifier)
    assert [registry.get_version("digits", v).status for v in (1, 2, 3)] == [Status.READY, Status.FAILED, Status.FAILED]
