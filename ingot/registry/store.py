"""The model registry: which model versions exist, where their artifacts are, how they were made
(data hash, config, metrics, gate decision, pipeline run) and where each stands (stage), with an
append-only history of every stage change.

Every write runs in one short transaction that first locks the model's row (`SELECT ... FOR
UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so registrations and promotions of one model
are serialized; unique constraints back that up, and a write that loses a race on one is retried,
finds the winner's row, and returns it instead of creating a duplicate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ingot import db
from ingot.db import default_url, first_line, migrate, normalize_url, open_engine, utc_now
from ingot.errors import ConfigError, ModelError, NotFoundError
from ingot.registry import policy
from ingot.registry.migrations import REGISTRY
from ingot.registry.records import ModelSummary, ModelVersion, NewVersion, Stage, StageEvent, Status
from ingot.registry.schema import EventRow, ModelRow, VersionRow
from ingot.registry.validation import (
    as_verifier,
    check_name,
    check_text,
    checked_batch,
    json_dict,
    parse_stage,
    parse_status,
    rejection_decision,
)
from ingot.registry.verify import Verifier

T = TypeVar("T")

DEFAULT_ACTOR = "ingot"
_WRITE_ATTEMPTS = 5


class Registry:
    """Model versions, their lineage and stages, in SQLite or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._write_engine = engine.execution_options(ingot_write=True)
        self._read_sessions = sessionmaker(engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)
        try:
            migrate(self._write_engine, REGISTRY)
        except OperationalError as err:
            raise ConfigError(f"cannot open the registry at {self.url}: {first_line(err)}") from err

    @classmethod
    def from_url(cls, url: str | None = None) -> Registry:
        """Open (creating or migrating the schema as needed) the registry at `url`.

        None means `default_url()`: `$INGOT_REGISTRY_URL`, else the SQLite file
        `settings.data_dir()/registry.db`.
        """
        return cls(open_engine(normalize_url(url or default_url())))

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
        check_name(name)
        check_text("actor", actor)
        by_number = checked_batch(name, versions)
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
            return [row.record(name) for row in rows_out]

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
        verifier = as_verifier(verify)
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
                return row.record(name)
            now = utc_now()
            row.updated_at = now
            if failure is not None:
                row.status = Status.FAILED.value
                row.status_reason = failure
                return row.record(name)
            row.status = Status.READY.value
            row.status_reason = None
            champion = self._stage_row(session, model.id, Stage.CHAMPION)
            blessed = bool(row.gate) and row.gate.get("blessed") is True  # type: ignore[union-attr]
            stage, reason = policy.ready_stage(
                name, blessed=blessed, champion=champion.version if champion is not None else None
            )
            self._set_stage(session, row, stage, reason=reason, actor=event_actor, at=now)
            return row.record(name)

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
        check_name(name)
        check_text("actor", actor)
        decision = rejection_decision(name, reasons, gate)
        config_d, metrics_d = json_dict("config", config), json_dict("metrics", metrics)
        if pipeline_run_id is not None:
            check_text("pipeline_run_id", pipeline_run_id)

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
                    return existing.record(name)
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
                                 reason="; ".join(decision["reasons"]), actor=actor))
            return row.record(name)

        return self._write(write)

    def transition(self, name: str, version: int, to_stage: Stage | str, *, reason: str, actor: str) -> ModelVersion:
        """Move a version to another stage, recording the event.

        Promoting to champion archives the current champion in the same transaction (both events
        recorded); a new challenger sends the previous one back to candidate. A candidate may
        become champion directly only when the name has no champion; otherwise it goes through
        challenger (the A/B test). Asking for the stage a version already has changes nothing.
        """
        target = parse_stage(to_stage)
        check_text("reason", reason)
        check_text("actor", actor)

        def write(session: Session) -> ModelVersion:
            model = self._lock_model(session, name, create=False)
            row = self._version_row(session, model, name, version)
            label = f"{name}:{version}"
            current = Stage(row.stage) if row.stage else None
            if current is target:
                return row.record(name)
            policy.check_transition(label, current, target, row.status)
            now = utc_now()
            holder = self._stage_row(session, model.id, target) if target in policy.DISPLACED_TO else None
            if target is Stage.CHAMPION:
                policy.check_promotion(label, name, cast(Stage, current), holder.version if holder else None)
            if holder is not None:
                self._set_stage(session, holder, policy.DISPLACED_TO[target], at=now, actor=actor,
                                reason=f"replaced by {label} as {target.value}: {reason}")
            self._set_stage(session, row, target, reason=reason, actor=actor, at=now)
            return row.record(name)

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
            return row.record(name)

    def get_record(self, record_id: int) -> ModelVersion:
        """Any record by its id, including rejections, which have no version number."""
        with self._read_sessions() as session:
            found = session.execute(
                select(VersionRow, ModelRow.name).join(ModelRow).where(VersionRow.id == record_id)
            ).first()
            if found is None:
                raise NotFoundError(f"no registry record with id {record_id}")
            return found[0].record(found[1])

    def latest(
        self, name: str, stage: Stage | str | None = None, *, status: Status | str | None = None
    ) -> ModelVersion | None:
        """The highest-numbered published version, optionally in a stage/status; None if none."""
        with self._read_sessions() as session:
            model = self._model(session, name)
            query = select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.version.is_not(None))
            if stage is not None:
                query = query.where(VersionRow.stage == parse_stage(stage).value)
            if status is not None:
                query = query.where(VersionRow.status == parse_status(status).value)
            row = session.scalar(query.order_by(VersionRow.version.desc()).limit(1))
            return row.record(name) if row is not None else None

    def champion(self, name: str) -> ModelVersion | None:
        """The current champion, or None; unknown names raise NotFoundError."""
        with self._read_sessions() as session:
            model = self._model(session, name)
            row = self._stage_row(session, model.id, Stage.CHAMPION)
            return row.record(name) if row is not None else None

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
            return [row.record(name) for row in session.scalars(query)]

    def by_pipeline_run(self, pipeline_run_id: str) -> list[ModelVersion]:
        """What a pipeline run registered (its published version or its rejection)."""
        with self._read_sessions() as session:
            found = session.execute(
                select(VersionRow, ModelRow.name).join(ModelRow)
                .where(VersionRow.pipeline_run_id == pipeline_run_id).order_by(VersionRow.id)
            )
            return [row.record(model_name) for row, model_name in found]

    def events(self, name: str, version: int) -> list[StageEvent]:
        """Stage history of a version, oldest first."""
        return self.record_events(self.get_version(name, version).id)

    def record_events(self, record_id: int) -> list[StageEvent]:
        with self._read_sessions() as session:
            rows = session.scalars(select(EventRow).where(EventRow.version_id == record_id).order_by(EventRow.id))
            return [row.record() for row in rows]

    # ---------------------------------------------------------------- internals

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one write transaction; retry when it lost a race on a unique constraint
        (the retry finds the winner's row) or on a transient lock/serialization failure."""
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                with self._write_sessions() as session, session.begin():
                    return work(session)
            except IntegrityError as err:
                if not db.is_unique_violation(err) or attempt == _WRITE_ATTEMPTS:
                    raise ModelError(f"registry write rejected by the database: {first_line(err)}") from err
            except OperationalError as err:
                if not db.is_transient(err) or attempt == _WRITE_ATTEMPTS:
                    raise ModelError(f"registry write failed: {first_line(err)}") from err
            time.sleep(0.01 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _lock_model(self, session: Session, name: str, *, create: bool) -> ModelRow:
        """The model's row, locked for this transaction; created first if asked (race-free:
        a concurrent creator makes ON CONFLICT DO NOTHING wait, then we lock the winner's row)."""
        locked = select(ModelRow).where(ModelRow.name == name).with_for_update()
        model = session.scalar(locked)
        if model is None and create:
            insert = db.upsert_insert(self.dialect)
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
