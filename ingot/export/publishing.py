"""Publish an exported SavedModel as the next integer version of a model repository.

Steps: copy into `<base>/<name>/.tmp-<id>/` (invisible to TF Serving, which skips non-numeric
directories), reload it and run both signatures, then, holding `<base>/<name>/.publish.lock`,
pick the next version, stamp it into the model card, write MANIFEST.sha256 and rename the
staging directory to `<base>/<name>/<version>`. Any failure removes the staging directory and
raises PublishError, so no partial version ever appears. Publishing the same model again (same
`model_sha256`) returns the existing version instead of creating a duplicate.

A publisher killed mid-way (SIGKILL, OOM, a node lost) leaves its staging directory behind. Each
publisher therefore holds an exclusive flock on `.tmp-<id>.owner` for as long as `.tmp-<id>/`
exists, and every publish, under the publish lock, removes the staging directories whose owner
lock it can take (their publisher is gone), counting them in `stale_removed`. Live publishers
keep theirs; a staging directory with no owner file (an older Ingot) is removed once it is a day
old.

The lock and the rename give atomicity on POSIX filesystems (including shared volumes that
honour flock). On object stores (gs://, s3:// through tf.io.gfile) a directory rename is a
non-atomic copy and there is no lock: serialize publishers of one model there (one pipeline
run at a time), and rely on TF Serving retrying a version it could not load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from ingot import repository, storage
from ingot.errors import IngotError, PublishError
from ingot.protocol.names import check_model_name

LOCK_FILE = ".publish.lock"
STAGING_PREFIX = ".tmp-"
OWNER_SUFFIX = ".owner"
OWNERLESS_STALE_S = 24 * 3600  # a staging directory without an owner file (an older Ingot)
ORPHAN_OWNER_STALE_S = 60  # an owner file whose publisher died before creating its directory


@dataclass(frozen=True)
class PublishedVersion:
    model_name: str
    version: int
    path: str
    model_sha256: str
    created: bool
    stale_removed: int = 0  # staging directories of dead publishers removed by this publish

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate_model_name(name: str) -> str:
    """Model names become directory names, URL path segments and Kubernetes label values."""
    return check_model_name(name, error=PublishError)


@contextlib.contextmanager
def _publish_lock(model_dir: str) -> Iterator[None]:
    """Exclusive lock over version choice and rename; a no-op on object stores (see module doc)."""
    if storage.is_remote(model_dir):
        yield
        return
    with open(os.path.join(model_dir, LOCK_FILE), "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _staging_owner(staging: str) -> Iterator[None]:
    """Hold `<staging>.owner` locked while the staging directory may exist; removed after it."""
    if storage.is_remote(staging):
        yield
        return
    owner = staging + OWNER_SUFFIX
    fd = os.open(owner, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(owner)
        os.close(fd)


def _owner_is_gone(owner: str) -> bool:
    """True when no live process holds the owner lock (taken and released at once)."""
    try:
        fd = os.open(owner, os.O_RDONLY)
    except FileNotFoundError:
        return False  # its publisher finished (or another cleaner took it) just now
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        return True
    finally:
        os.close(fd)  # closing releases the lock


def remove_stale_staging(model_dir: str) -> int:
    """Remove the staging directories (and owner files) no live publisher owns; call under the
    publish lock. Returns how many staging directories were removed. Local filesystems only."""
    import logging
    import time

    if storage.is_remote(model_dir) or not os.path.isdir(model_dir):
        return 0
    now = time.time()
    removed = 0
    entries = set(os.listdir(model_dir))
    for entry in sorted(entries):
        if not entry.startswith(STAGING_PREFIX):
            continue
        path = os.path.join(model_dir, entry)
        if entry.endswith(OWNER_SUFFIX):
            if entry[: -len(OWNER_SUFFIX)] not in entries and _owner_is_gone(path):
                with contextlib.suppress(FileNotFoundError):
                    if now - os.path.getmtime(path) > ORPHAN_OWNER_STALE_S:
                        os.unlink(path)
            continue
        owner = path + OWNER_SUFFIX
        if entry + OWNER_SUFFIX in entries:
            stale = _owner_is_gone(owner)
        else:
            try:
                stale = now - os.path.getmtime(path) > OWNERLESS_STALE_S
            except FileNotFoundError:
                continue
        if not stale:
            continue
        storage.rmtree(path)  # the directory first: a cleaner killed here leaves the owner to retry
        with contextlib.suppress(FileNotFoundError):
            os.unlink(owner)
        removed += 1
    if removed:
        logging.getLogger(__name__).info("removed %d staging directories left by dead publishers in %s", removed, model_dir)
    return removed


def _find_by_digest(base: str, name: str, digest: str) -> PublishedVersion | None:
    for version, path in repository.iter_versions(base, name):
        try:
            existing = repository.version_model_sha256(path)
        except IngotError:
            continue  # an unreadable foreign directory is not our model
        if existing == digest:
            return PublishedVersion(name, version, path, digest, created=False)
    return None


def verify_saved_model(path: str) -> None:
    """Reload the SavedModel and run both signatures on a tiny batch, checking output keys,
    dtypes and shapes against the model card. Raises PublishError on any mismatch."""
    import numpy as np
    import tensorflow as tf

    from ingot.protocol.signatures import (
        BYTES_INPUT,
        CLASS_IDS,
        CLASS_NAMES,
        IMAGES_INPUT,
        OUTPUT_KEYS,
        PROBABILITIES,
        SERVING_BYTES,
        SERVING_DEFAULT,
    )

    card = repository.read_model_card(path)
    try:
        height, width = (int(v) for v in card["input_size"])
        class_names = [str(c) for c in card["class_names"]]
    except (KeyError, TypeError, ValueError):
        raise PublishError(f"model card in {path} lacks a valid input_size or class_names") from None
    loaded = tf.saved_model.load(path)
    missing = [s for s in (SERVING_DEFAULT, SERVING_BYTES) if s not in loaded.signatures]
    if missing:
        raise PublishError(f"SavedModel in {path} lacks signature(s) {', '.join(missing)}")
    zeros = tf.zeros([1, height, width, 3], tf.uint8)
    requests = {
        SERVING_DEFAULT: {IMAGES_INPUT: zeros},
        SERVING_BYTES: {BYTES_INPUT: tf.reshape(tf.io.encode_png(zeros[0]), [1])},
    }
    for signature, inputs in requests.items():
        outputs = loaded.signatures[signature](**inputs)
        if sorted(outputs) != sorted(OUTPUT_KEYS):
            raise PublishError(f"{signature} returns {sorted(outputs)}; expected {sorted(OUTPUT_KEYS)}")
        expected = {
            PROBABILITIES: (tf.float32, (1, len(class_names))),
            CLASS_IDS: (tf.int64, (1,)),
            CLASS_NAMES: (tf.string, (1,)),
        }
        for key, (dtype, shape) in expected.items():
            got = outputs[key]
            if got.dtype != dtype or tuple(got.shape) != shape:
                raise PublishError(
                    f"{signature} output {key} is {got.dtype.name}{list(got.shape)}; "
                    f"expected {dtype.name}{list(shape)}"
                )
        if not np.isclose(float(tf.reduce_sum(outputs[PROBABILITIES])), 1.0, atol=1e-3):
            raise PublishError(f"{signature} probabilities do not sum to 1")
        if outputs[CLASS_NAMES].numpy()[0].decode() not in class_names:
            raise PublishError(f"{signature} returned a class name outside the model card's classes")


def _rename_into_place(staging: str, target: str) -> None:
    if storage.exists(target):
        raise PublishError(f"{target} already exists; published versions are never overwritten")
    if storage.is_remote(target):
        # Object stores have no directory rename: copy with saved_model.pb last (a reader that
        # finds saved_model.pb finds everything else), then drop the staging copy.
        storage.copy_tree(staging, target, last="saved_model.pb")
        storage.rmtree(staging)
    else:
        os.rename(staging, target)  # fails on a non-empty target, so never overwrites


def publish(artifact_dir: str | os.PathLike[str], repository_base: str | os.PathLike[str], model_name: str) -> PublishedVersion:
    """Publish `artifact_dir` (from export_saved_model) as the next version of `model_name`."""
    name = validate_model_name(model_name)
    artifact = os.fspath(artifact_dir)
    base = os.fspath(repository_base)
    if not storage.exists(storage.join(artifact, "saved_model.pb")):
        raise PublishError(f"{artifact} is not a SavedModel directory (no saved_model.pb)")
    repository.read_model_card(artifact)  # NotFoundError/ModelError early, before any copy
    digest = repository.model_sha256(artifact)

    model_dir = storage.join(base, name)
    storage.makedirs(model_dir)
    with _publish_lock(model_dir):
        stale_removed = remove_stale_staging(model_dir)
    existing = _find_by_digest(base, name, digest)
    if existing is not None:
        return dataclasses.replace(existing, stale_removed=stale_removed)

    staging = storage.join(model_dir, f"{STAGING_PREFIX}{uuid.uuid4().hex}")
    with _staging_owner(staging):
        return _publish_staged(artifact, staging, base, name, digest, model_dir, stale_removed)


def _publish_staged(artifact: str, staging: str, base: str, name: str, digest: str, model_dir: str,
                    stale_removed: int) -> PublishedVersion:
    try:
        storage.copy_tree(artifact, staging)
        if repository.model_sha256(staging) != digest:
            raise PublishError(f"copy of {artifact} in {staging} differs from the original")
        verify_saved_model(staging)
        with _publish_lock(model_dir):
            existing = _find_by_digest(base, name, digest)  # a concurrent publisher got there first
            if existing is not None:
                storage.rmtree(staging)
                return dataclasses.replace(existing, stale_removed=stale_removed)
            versions = repository.list_versions(base, name)
            version = versions[-1] + 1 if versions else 1
            target = repository.version_path(base, name, version)
            card = repository.read_model_card(staging)
            card.update(version=version, model_sha256=digest)
            repository.write_model_card(staging, card)
            repository.write_manifest(staging)  # replaces any manifest the artifact carried
            repository.verify_manifest(staging)
            _rename_into_place(staging, target)
    except PublishError:
        storage.rmtree(staging)
        raise
    except Exception as err:
        storage.rmtree(staging)
        raise PublishError(f"publishing {artifact} as a new version of {name!r} failed: {err}") from err
    return PublishedVersion(name, version, target, digest, created=True, stale_removed=stale_removed)

