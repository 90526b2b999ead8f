"""The model registry: which model versions exist, where their artifacts are, how they were made
(data hash, config, metrics, gate decision, pipeline run) and where each stands (stage), with an
append-only history of every stage change.

Every write runs in one short transaction that first locks the model's row (`SELECT ... FOR
UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so registrations and promotions of one model
are serialized; unique constraints back that up, and a write that loses a race on one is retried,
finds the winner's row, and returns it instead of creating a duplicate.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import case, create_engine, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from ingot import settings
from ingot.errors import ConfigError, ModelError, NotFoundError
from ingot.registry.migrations import migrate
from ingot.registry.records import (
    ModelSummary,
    ModelVersion,
    NewVersion,
    Stage,
    StageEvent,
    Status,
)
from ingot.registry.schema import EventRow, ModelRow, VersionRow, utc_now
from ingot.registry.verify import Verifier, checksum_verifier
from ingot.settings import REGISTRY_URL_ENV  # re-exported by ingot.registry

T = TypeVar("T")


DEFAULT_ACTOR = "ingot"
# TF Serving serves models by directory name: keep names path- and URL-safe.
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_WRITE_ATTEMPTS = 5

# Stage changes a caller may ask for. Entering a stage is never done from None by hand: mark_ready
# assigns the first stage. A champion leaves its stage only when another version is promoted.
ALLOWED_TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.CANDIDATE: frozenset({Stage.CHALLENGER, Stage.CHAMPION, Stage.ARCHIVED, Stage.REJECTED}),
    Stage.CHALLENGER: frozenset({Stage.CHAMPION, Stage.CANDIDATE, Stage.ARCHIVED, Stage.REJECTED}),
    Stage.CHAMPION: frozenset(),
    Stage.ARCHIVED: frozenset({Stage.CHAMPION}),  # rollback to a previous champion
    Stage.REJECTED: frozenset(),
}
_SERVING_STAGES = frozenset({Stage.CHALLENGER, Stage.CHAMPION})


def default_url() -> str:
    """The registry the CLI uses when given none: `$INGOT_REGISTRY_URL`, else SQLite under data_dir()."""
    return os.environ.get(REGISTRY_URL_ENV) or str(_default_sqlite_url())


def _default_sqlite_url() -> URL:
    return URL.create("sqlite", database=str(settings.data_dir() / "registry.db"))


def normalize_url(url: str | None, *, what: str = "registry URL") -> URL:
    """Parse and check a registry (or inference log) URL; `postgresql://` and `postgres://`
    mean psycopg 3. `what` names the setting in error messages."""
    if url is None:
        return _default_sqlite_url()
    expected = "expected sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{what} {url!r} is not a database URL; {expected}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise ConfigError(
                f"{what} driver {parsed.drivername!r} is not supported; use postgresql+psycopg:// "
                "(or plain postgresql://, which means psycopg 3)"
            )
        if not parsed.database:
            raise ConfigError(f"{what} {parsed.render_as_string()!r} names no database; {expected}")
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise ConfigError(f"{what} driver {parsed.drivername!r} is not supported; use sqlite:///PATH")
        return parsed
    raise ConfigError(f"{what} scheme {parsed.drivername!r} is not supported; {expected}")


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or str(url.database).startswith("file::memory:")


def create_registry_engine(url: URL) -> Engine:
    """An engine set up for the registry's transactions on either backend."""
    if url.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    if _is_memory(url):
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(str(url.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    file_backed = not _is_memory(url)

    # pysqlite would otherwise skip BEGIN before DDL and SELECT (legacy transaction control);
    # emitting it ourselves makes migrations transactional and lets writers take the lock up front
    # (BEGIN IMMEDIATE), so two writers queue on busy_timeout instead of failing on lock upgrade.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA busy_timeout = 30000")
        if file_backed:
            cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("ingot_write") else "BEGIN")

    return engine


class Registry:
    """Model versions, their lineage and stages, in SQLite or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._write_engine = engine.execution_options(ingot_write=True)
        self._read_sessions = sessionmaker(engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)
        try:
            migrate(self._write_engine)
        except OperationalError as err:
            raise ConfigError(f"cannot open the registry at {self.url}: {_first_line(err)}") from err

    @classmethod
    def from_url(cls, url: str | None = None) -> Registry:
        """Open (creating or migrating the schema as needed) the registry at `url`.

        None means the SQLite file `settings.data_dir()/registry.db`.
        """
        return cls(create_registry_engine(normalize_url(url)))

    @property
    def url(self) -> str:
        """The URL with any password masked, for messages."""
        return self._engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- writes

    def register_version(
        self,
        name: str,
        *,
        version: int,
        artifact_uri: str,
        model_sha256: str,
        data_hash: str | None = None,
        config: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        gate: Mapping[str, Any] | None = None,
        pipeline_run_id: str | None = None,
        actor: str = DEFAULT_ACTOR,
    ) -> ModelVersion:
        """Record a published version as PENDING; idempotent for the same (name, version, sha256).

        A retried register step gets the existing record back; the same version number with a
        different sha256 is an error, because a version number names one artifact forever.
        `gate` is the evaluation gate's decision; only a blessed one can ever become champion.
        """
        spec = NewVersion(
            version=version, artifact_uri=artifact_uri, model_sha256=model_sha256, data_hash=data_hash,
            config=dict(config or {}), metrics=dict(metrics or {}), gate=dict(gate) if gate is not None else None,
            pipeline_run_id=pipeline_run_id,
        )
        return self.register_many(name, [spec], actor=actor)[0]

    def register_many(
        self, name: str, versions: Sequence[NewVersion], *, actor: str = DEFAULT_ACTOR
    ) -> list[ModelVersion]:
        """Register several versions of one model in one transaction (e.g. backfilling a
        registry from an existing model repository); same rules as `register_version`."""
        _check_name(name)
        _check_text("actor", actor)
        specs = [_checked_spec(name, spec) for spec in versions]
        by_number: dict[int, NewVersion] = {}
        for spec in specs:
            seen = by_number.setdefault(spec.version, spec)
            if seen.model_sha256 != spec.model_sha256:
                raise ConfigError(f"{name}:{spec.version} appears twice in one batch with different sha256")
        if not by_number:
            return []

        def write(session: Session) -> list[ModelVersion]:
            model = self._lock_model(session, name, create=True)
            existing: dict[int, VersionRow] = {}
            numbers = list(by_number)
            for start in range(0, len(numbers), 500):
                chunk = numbers[start:start + 500]
                rows = session.scalars(
                    select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.version.in_(chunk))
                )
                existing.update({row.version: row for row in rows if row.version is not None})
            now = utc_now()
            rows_out: list[VersionRow] = []
            for spec in by_number.values():
                row = existing.get(spec.version)
                if row is not None:
                    if row.model_sha256 != spec.model_sha256:
                        raise ModelError(
                            f"{name}:{spec.version} is already registered with model_sha256 "
                            f"{row.model_sha256}, not {spec.model_sha256}; a version number names one "
                            "artifact forever, so publish the new model as a new version"
                        )
                else:
                    row = VersionRow(
                        model_id=model.id, version=spec.version, status=Status.PENDING.value, stage=None,
                        artifact_uri=spec.artifact_uri, model_sha256=spec.model_sha256,
                        data_hash=spec.data_hash, config=spec.config, metrics=spec.metrics, gate=spec.gate,
                        pipeline_run_id=spec.pipeline_run_id, registered_by=actor,
                        created_at=now, updated_at=now,
                    )
                    session.add(row)
                rows_out.append(row)
            session.flush()
            return [_version_record(row, name) for row in rows_out]

        return self._write(write)

    def mark_ready(
        self,
        name: str,
        version: int,
        *,
        verify: Verifier | Mapping[str, str],
        actor: str | None = None,
    ) -> ModelVersion:
        """Verify the artifact and move a PENDING version to READY, or to FAILED with the reason.

        `verify` is either a callable `(artifact_uri, model_sha256) -> bool | None` (False or an
        exception means failure; the pipeline plugs in the model repository's manifest check) or
        a mapping of relative file path -> expected sha256 under a local `artifact_uri`. On
        READY the stage policy applies: the first blessed version of a name becomes champion,
        later ones (and anything never blessed) become candidates. Raises ModelError after
        recording FAILED; calling it again on a READY version returns it unchanged.
        """
        verifier = _as_verifier(verify)
        current = self.get_version(name, version)
        if current.status is Status.READY:
            return current
        if current.status is Status.FAILED:
            raise ModelError(
                f"{current.label} already FAILED verification ({current.status_reason}); "
                "publish and register the artifact again as a new version"
            )
        failure: str | None = None
        try:
            if verifier(str(current.artifact_uri), str(current.model_sha256)) is False:
                failure = "checksum verification returned False"
        except Exception as err:  # any failure to verify means the artifact is not usable
            failure = f"{type(err).__name__}: {err}"
        event_actor = actor or current.registered_by

        def write(session: Session) -> ModelVersion:
            model = self._lock_model(session, name, create=False)
            row = self._version_row(session, model, name, version)
            if row.status != Status.PENDING.value:  # a concurrent mark_ready finished first
                return _version_record(row, name)
            now = utc_now()
            row.updated_at = now
            if failure is not None:
                row.status = Status.FAILED.value
                row.status_reason = failure
                return _version_record(row, name)
            row.status = Status.READY.value
            row.status_reason = None
            champion = self._stage_row(session, model.id, Stage.CHAMPION)
            blessed = bool(row.gate) and row.gate.get("blessed") is True  # type: ignore[union-attr]
            if blessed and champion is None:
                stage, reason = Stage.CHAMPION, f"first blessed READY version of {name}"
            elif blessed:
                stage, reason = Stage.CANDIDATE, f"blessed; {name}:{champion.version} is champion"  # type: ignore[union-attr]
            else:
                stage = Stage.CANDIDATE
                reason = "not blessed by an evaluation gate; only blessed versions become champion automatically"
            self._set_stage(session, row, stage, reason=reason, actor=event_actor, at=now)
            return _version_record(row, name)

        result = self._write(write)
        if failure is not None and result.status is Status.FAILED:
            raise ModelError(f"{result.label} failed artifact verification and is marked FAILED: {failure}")
        return result

    def record_rejection(
        self,
        name: str,
        *,
        reasons: Sequence[str],
        metrics: Mapping[str, Any] | None = None,
        data_hash: str | None = None,
        config: Mapping[str, Any] | None = None,
        pipeline_run_id: str | None = None,
        gate: Mapping[str, Any] | None = None,
        actor: str = DEFAULT_ACTOR,
    ) -> ModelVersion:
        """Record a model the gate rejected: nothing was published, so it has no version number.

        Its stage is `rejected`, its status FAILED, and `reasons` are kept in its gate decision.
        Idempotent per (name, pipeline_run_id): a retried step returns the first record.
        """
        _check_name(name)
        _check_text("actor", actor)
        if isinstance(reasons, str) or not reasons or not all(isinstance(r, str) and r.strip() for r in reasons):
            raise ConfigError("a rejection needs reasons: a non-empty list of non-empty strings")
        if gate is not None and gate.get("blessed") is True:
            raise ConfigError(f"gate decision for {name} is blessed; register the published version instead")
        reason_list = [r.strip() for r in reasons]
        decision = {**dict(gate or {}), "blessed": False, "reasons": reason_list}
        config_d, metrics_d = _json_dict("config", config), _json_dict("metrics", metrics)
        _json_dict("gate", decision)
        if pipeline_run_id is not None:
            _check_text("pipeline_run_id", pipeline_run_id)

        def write(session: Session) -> ModelVersion:
            model = self._lock_model(session, name, create=True)
            if pipeline_run_id is not None:
                existing = session.scalar(
                    select(VersionRow).where(
                        VersionRow.model_id == model.id,
                        VersionRow.version.is_(None),
                        VersionRow.pipeline_run_id == pipeline_run_id,
                    )
                )
                if existing is not None:
                    return _version_record(existing, name)
            now = utc_now()
            row = VersionRow(
                model_id=model.id, version=None, status=Status.FAILED.value, stage=Stage.REJECTED.value,
                status_reason="rejected by the evaluation gate", artifact_uri=None, model_sha256=None,
                data_hash=data_hash, config=config_d, metrics=metrics_d, gate=decision,
                pipeline_run_id=pipeline_run_id, registered_by=actor, created_at=now, updated_at=now,
            )
            session.add(row)
            session.flush()
            session.add(EventRow(version_id=row.id, at=now, from_stage=None, to_stage=Stage.REJECTED.value,
                                 reason="; ".join(reason_list), actor=actor))
            return _version_record(row, name)

        return self._write(write)

    def transition(self, name: str, version: int, to_stage: Stage | str, *, reason: str, actor: str) -> ModelVersion:
        """Move a version to another stage, recording the event.

        Promoting to champion archives the current champion in the same transaction (both events
        recorded); a new challenger sends the previous one back to candidate. A candidate may
        become champion directly only when the name has no champion; otherwise it goes through
        challenger (the A/B test). Asking for the stage a version already has changes nothing.
        """
        target = _parse_stage(to_stage)
        _check_text("reason", reason)
        _check_text("actor", actor)

        def write(session: Session) -> ModelVersion:
            model = self._lock_model(session, name, create=False)
            row = self._version_row(session, model, name, version)
            label = f"{name}:{version}"
            current = Stage(row.stage) if row.stage else None
            if current is target:
                return _version_record(row, name)
            if current is None:
                raise ModelError(
                    f"{label} has no stage yet (status {row.status}); only a READY version can change stage"
                )
            if target not in ALLOWED_TRANSITIONS[current]:
                allowed = ", ".join(sorted(s.value for s in ALLOWED_TRANSITIONS[current])) or "none"
                hint = " (a champion is archived when another version is promoted)" if current is Stage.CHAMPION else ""
                raise ModelError(
                    f"cannot move {label} from {current.value} to {target.value}; allowed from "
                    f"{current.value}: {allowed}{hint}"
                )
            if target in _SERVING_STAGES and row.status != Status.READY.value:
                raise ModelError(f"{label} is {row.status}; only a READY version can become {target.value}")
            now = utc_now()
            if target is Stage.CHAMPION:
                champion = self._stage_row(session, model.id, Stage.CHAMPION)
                if champion is not None and current is Stage.CANDIDATE:
                    raise ModelError(
                        f"{label} is a candidate and {name}:{champion.version} is champion; make it the "
                        "challenger first so the A/B test decides"
                    )
                if champion is not None:
                    self._set_stage(session, champion, Stage.ARCHIVED, at=now, actor=actor,
                                    reason=f"replaced by {label} as champion: {reason}")
            elif target is Stage.CHALLENGER:
                challenger = self._stage_row(session, model.id, Stage.CHALLENGER)
                if challenger is not None:
                    self._set_stage(session, challenger, Stage.CANDIDATE, at=now, actor=actor,
                                    reason=f"replaced by {label} as challenger: {reason}")
            self._set_stage(session, row, target, reason=reason, actor=actor, at=now)
            return _version_record(row, name)

        return self._write(write)

    # ---------------------------------------------------------------- reads

    def get_version(self, name: str, version: int) -> ModelVersion:
        with self._read_sessions() as session:
            row = session.scalar(
                select(VersionRow).join(ModelRow).where(ModelRow.name == name, VersionRow.version == version)
            )
            if row is None:
                model = self._model(session, name)
                latest = session.scalar(select(func.max(VersionRow.version)).where(VersionRow.model_id == model.id))
                known = f"latest is {latest}" if latest is not None else "it has no published versions"
                raise NotFoundError(f"model {name!r} has no version {version} ({known})")
            return _version_record(row, name)

    def get_record(self, record_id: int) -> ModelVersion:
        """Any record by its id, including rejections, which have no version number."""
        with self._read_sessions() as session:
            found = session.execute(
                select(VersionRow, ModelRow.name).join(ModelRow).where(VersionRow.id == record_id)
            ).first()
            if found is None:
                raise NotFoundError(f"no registry record with id {record_id}")
            return _version_record(found[0], found[1])

    def latest(
        self, name: str, stage: Stage | str | None = None, *, status: Status | str | None = None
    ) -> ModelVersion | None:
        """The highest-numbered published version, optionally in a stage/status; None if none."""
        with self._read_sessions() as session:
            model = self._model(session, name)
            query = select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.version.is_not(None))
            if stage is not None:
                query = query.where(VersionRow.stage == _parse_stage(stage).value)
            if status is not None:
                query = query.where(VersionRow.status == _parse_status(status).value)
            row = session.scalar(query.order_by(VersionRow.version.desc()).limit(1))
            return _version_record(row, name) if row is not None else None

    def champion(self, name: str) -> ModelVersion | None:
        """The current champion, or None; unknown names raise NotFoundError."""
        with self._read_sessions() as session:
            model = self._model(session, name)
            row = self._stage_row(session, model.id, Stage.CHAMPION)
            return _version_record(row, name) if row is not None else None

    def champion_metrics(self, name: str) -> dict[str, Any] | None:
        """The champion's metrics for the gate's comparison; None when there is nothing to beat
        (no champion yet, or a name never registered)."""
        with self._read_sessions() as session:
            metrics = session.scalar(
                select(VersionRow.metrics).join(ModelRow).where(
                    ModelRow.name == name, VersionRow.stage == Stage.CHAMPION.value
                )
            )
            return dict(metrics) if metrics is not None else None

    def list_models(self) -> list[ModelSummary]:
        with self._read_sessions() as session:
            rows = session.execute(
                select(
                    ModelRow.name,
                    ModelRow.created_at,
                    func.count(VersionRow.version),
                    func.count(VersionRow.id) - func.count(VersionRow.version),
                    func.max(case((VersionRow.stage == Stage.CHAMPION.value, VersionRow.version))),
                    func.max(VersionRow.version),
                )
                .outerjoin(VersionRow, VersionRow.model_id == ModelRow.id)
                .group_by(ModelRow.id, ModelRow.name, ModelRow.created_at)
                .order_by(ModelRow.name)
            )
            return [
                ModelSummary(
                    name=str(row[0]), created_at=cast(datetime, row[1]), versions=int(cast(int, row[2])),
                    rejections=int(cast(int, row[3])), champion=cast("int | None", row[4]),
                    latest=cast("int | None", row[5]),
                )
                for row in rows
            ]

    def list_versions(
        self, name: str, *, include_rejections: bool = True, limit: int | None = None
    ) -> list[ModelVersion]:
        """Records of a model, newest first; rejections included unless asked otherwise."""
        if limit is not None and limit < 1:
            raise ConfigError(f"limit must be a positive number of records, got {limit}")
        with self._read_sessions() as session:
            model = self._model(session, name)
            query = select(VersionRow).where(VersionRow.model_id == model.id).order_by(VersionRow.id.desc())
            if not include_rejections:
                query = query.where(VersionRow.version.is_not(None))
            if limit is not None:
                query = query.limit(limit)
            return [_version_record(row, name) for row in session.scalars(query)]

    def by_pipeline_run(self, pipeline_run_id: str) -> list[ModelVersion]:
        """What a pipeline run registered (its published version or its rejection)."""
        with self._read_sessions() as session:
            found = session.execute(
                select(VersionRow, ModelRow.name).join(ModelRow)
                .where(VersionRow.pipeline_run_id == pipeline_run_id).order_by(VersionRow.id)
            )
            return [_version_record(row, model_name) for row, model_name in found]

    def events(self, name: str, version: int) -> list[StageEvent]:
        """Stage history of a version, oldest first."""
        return self.record_events(self.get_version(name, version).id)

    def record_events(self, record_id: int) -> list[StageEvent]:
        with self._read_sessions() as session:
            rows = session.scalars(select(EventRow).where(EventRow.version_id == record_id).order_by(EventRow.id))
            return [_event_record(row) for row in rows]

    # ---------------------------------------------------------------- internals

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one write transaction; retry when it lost a race on a unique constraint
        (the retry finds the winner's row) or on a transient lock/serialization failure."""
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                with self._write_sessions() as session, session.begin():
                    return work(session)
            except IntegrityError as err:
                if not _is_unique_violation(err) or attempt == _WRITE_ATTEMPTS:
                    raise ModelError(f"registry write rejected by the database: {_first_line(err)}") from err
            except OperationalError as err:
                if not _is_transient(err) or attempt == _WRITE_ATTEMPTS:
                    raise ModelError(f"registry write failed: {_first_line(err)}") from err
            time.sleep(0.01 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _lock_model(self, session: Session, name: str, *, create: bool) -> ModelRow:
        """The model's row, locked for this transaction; created first if asked (race-free:
        a concurrent creator makes ON CONFLICT DO NOTHING wait, then we lock the winner's row)."""
        locked = select(ModelRow).where(ModelRow.name == name).with_for_update()
        model = session.scalar(locked)
        if model is None and create:
            insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
            session.execute(
                insert(ModelRow).values(name=name, created_at=utc_now()).on_conflict_do_nothing(
                    index_elements=[ModelRow.name]
                )
            )
            model = session.scalar(locked)
        if model is None:
            raise _unknown_model(session, name)
        return model

    @staticmethod
    def _model(session: Session, name: str) -> ModelRow:
        model = session.scalar(select(ModelRow).where(ModelRow.name == name))
        if model is None:
            raise _unknown_model(session, name)
        return model

    @staticmethod
    def _version_row(session: Session, model: ModelRow, name: str, version: int) -> VersionRow:
        row = session.scalar(
            select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.version == version).with_for_update()
        )
        if row is None:
            raise NotFoundError(f"model {name!r} has no version {version}")
        return row

    @staticmethod
    def _stage_row(session: Session, model_id: int, stage: Stage) -> VersionRow | None:
        return session.scalar(
            select(VersionRow).where(VersionRow.model_id == model_id, VersionRow.stage == stage.value)
        )

    @staticmethod
    def _set_stage(session: Session, row: VersionRow, stage: Stage, *, reason: str, actor: str, at: Any) -> None:
        session.add(EventRow(
            version_id=row.id, at=at, from_stage=row.stage, to_stage=stage.value, reason=reason, actor=actor
        ))
        row.stage = stage.value
        row.updated_at = at
        session.flush()  # one statement per change keeps the one-champion index satisfied in order


def _unknown_model(session: Session, name: str) -> NotFoundError:
    names = list(session.scalars(select(ModelRow.name).order_by(ModelRow.name).limit(6)))
    known = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "") if names else "none registered yet"
    return NotFoundError(f"no model named {name!r} in the registry (known: {known})")


def _version_record(row: VersionRow, name: str) -> ModelVersion:
    return ModelVersion(
        id=row.id, name=name, version=row.version, status=Status(row.status),
        stage=Stage(row.stage) if row.stage else None, status_reason=row.status_reason,
        artifact_uri=row.artifact_uri, model_sha256=row.model_sha256, data_hash=row.data_hash,
        config=dict(row.config or {}), metrics=dict(row.metrics or {}),
        gate=dict(row.gate) if row.gate is not None else None, pipeline_run_id=row.pipeline_run_id,
        registered_by=row.registered_by, created_at=row.created_at, updated_at=row.updated_at,
    )


def _event_record(row: EventRow) -> StageEvent:
    return StageEvent(
        id=row.id, version_id=row.version_id, at=row.at,
        from_stage=Stage(row.from_stage) if row.from_stage else None, to_stage=Stage(row.to_stage),
        reason=row.reason, actor=row.actor,
    )


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise ConfigError(
            f"model name {name!r} is not valid; expected 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (it becomes a directory and a URL path segment)"
        )


def _check_text(what: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a non-empty string, got {value!r}")


def _json_dict(what: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping (JSON object), got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} must be JSON-serializable (no NaN, numpy scalars or objects): {err}") from None
    return dict(value)


def _checked_spec(name: str, spec: NewVersion) -> NewVersion:
    if not isinstance(spec.version, int) or isinstance(spec.version, bool) or spec.version < 1:
        raise ConfigError(
            f"version of {name} must be a positive integer (the model repository's directory), got {spec.version!r}"
        )
    _check_text("artifact_uri", spec.artifact_uri)
    sha = spec.model_sha256.lower() if isinstance(spec.model_sha256, str) else spec.model_sha256
    if not isinstance(sha, str) or not _SHA256_PATTERN.match(sha):
        raise ConfigError(f"model_sha256 of {name}:{spec.version} must be 64 hex digits, got {spec.model_sha256!r}")
    if spec.gate is not None and spec.gate.get("blessed") is not True:
        raise ConfigError(
            f"the gate did not bless {name}:{spec.version}; record it with record_rejection() instead of registering it"
        )
    if spec.pipeline_run_id is not None:
        _check_text("pipeline_run_id", spec.pipeline_run_id)
    if spec.data_hash is not None:
        _check_text("data_hash", spec.data_hash)
    return NewVersion(
        version=spec.version, artifact_uri=spec.artifact_uri, model_sha256=sha, data_hash=spec.data_hash,
        config=_json_dict("config", spec.config), metrics=_json_dict("metrics", spec.metrics),
        gate=_json_dict("gate", spec.gate) if spec.gate is not None else None, pipeline_run_id=spec.pipeline_run_id,
    )


def _as_verifier(verify: Verifier | Mapping[str, str]) -> Verifier:
    if isinstance(verify, Mapping):
        return checksum_verifier(verify)
    if callable(verify):
        return verify
    raise ConfigError(
        "verify must be a callable (artifact_uri, model_sha256) -> bool or a mapping of relative path -> sha256"
    )


def _parse_stage(stage: Stage | str) -> Stage:
    try:
        return Stage(stage)
    except ValueError:
        raise ConfigError(f"unknown stage {stage!r}; expected one of {', '.join(s.value for s in Stage)}") from None


def _parse_status(status: Status | str) -> Status:
    try:
        return Status(str(status).upper())
    except ValueError:
        raise ConfigError(f"unknown status {status!r}; expected one of {', '.join(s.value for s in Status)}") from None


def _is_unique_violation(err: IntegrityError) -> bool:
    code = getattr(err.orig, "sqlstate", None)
    return code == "23505" or "UNIQUE constraint failed" in str(err.orig)


def _is_transient(err: DBAPIError) -> bool:
    code = getattr(err.orig, "sqlstate", None)
    return code in ("40001", "40P01") or "database is locked" in str(err.orig)


def _first_line(err: DBAPIError) -> str:
    return str(err.orig).strip().splitlines()[0] if err.orig is not None else str(err)

