"""The model repository: TF Serving's layout `<base>/<model_name>/<version>/`.

Versions are integer directory names and are never overwritten. Like TF Serving, everything
here ignores non-numeric entries (`.tmp-*` staging directories, the publish lock), so a
half-written version is invisible. Each published version carries `MANIFEST.sha256`
(sha256sum format, `sha256sum -c MANIFEST.sha256` works inside the version directory).

Files, URLs and hashes go through `ingot.storage`, the one storage layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from typing import Any

from ingot.errors import ModelError, NotFoundError, PublishError
from ingot.storage import atomic_write, exists, isdir, join, listdir, open_file, walk_files
from ingot.storage import sha256_file as file_sha256

ASSETS_EXTRA = "assets.extra"
MODEL_CARD_PATH = f"{ASSETS_EXTRA}/model_card.json"
WARMUP_PATH = f"{ASSETS_EXTRA}/tf_serving_warmup_requests"
MANIFEST_FILE = "MANIFEST.sha256"
TFLITE_PATH = "model.tflite"  # the int8 model, where TF Serving's --prefer_tflite_model looks
_VERSION_DIR = re.compile(r"[0-9]+")


# --- layout -----------------------------------------------------------------------------------


def list_models(base: str | os.PathLike[str]) -> list[str]:
    """Model names under `base` (directories not starting with a dot)."""
    base = os.fspath(base)
    if not isdir(base):
        return []
    return sorted(e for e in listdir(base) if not e.startswith(".") and isdir(join(base, e)))


def list_versions(base: str | os.PathLike[str], name: str) -> list[int]:
    """Published versions of `name`, ascending; non-numeric entries are ignored, as TF Serving does."""
    model_dir = join(base, name)
    if not isdir(model_dir):
        return []
    return sorted(
        int(entry)
        for entry in listdir(model_dir)
        if _VERSION_DIR.fullmatch(entry) and isdir(join(model_dir, entry))
    )


def latest_version(base: str | os.PathLike[str], name: str) -> int | None:
    versions = list_versions(base, name)
    return versions[-1] if versions else None


def version_path(base: str | os.PathLike[str], name: str, version: int) -> str:
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise NotFoundError(f"model version {version!r} is not valid; versions are non-negative integers")
    return join(base, name, str(version))


def read_model_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The model card of a SavedModel directory (an export or a published version)."""
    card_path = join(path, MODEL_CARD_PATH)
    if not exists(card_path):
        raise NotFoundError(f"no model card at {card_path}; expected a SavedModel exported by Ingot")
    with open_file(card_path, "rb") as handle:
        try:
            card = json.loads(handle.read())
        except ValueError as err:
            raise ModelError(f"model card {card_path} is not valid JSON: {err}") from None
    if not isinstance(card, dict):
        raise ModelError(f"model card {card_path} must hold a JSON object")
    return card


def write_model_card(path: str | os.PathLike[str], card: dict[str, Any]) -> None:
    atomic_write(join(path, MODEL_CARD_PATH), json.dumps(card, indent=2, sort_keys=True) + "\n")


# --- digests and manifests -------------------------------------------------------------------


def _counts_for_model_digest(rel: str) -> bool:
    return rel != MANIFEST_FILE and not rel.startswith(f"{ASSETS_EXTRA}/")


def _digest_of(file_digests: dict[str, str]) -> str:
    combined = hashlib.sha256()
    for rel in sorted(file_digests):
        if _counts_for_model_digest(rel):
            combined.update(f"{file_digests[rel]}  {rel}\n".encode())
    return combined.hexdigest()


def model_sha256(path: str | os.PathLike[str]) -> str:
    """Identity of the model itself: sha256 over the sorted (file digest, relative path) lines of
    the SavedModel's files, excluding assets.extra/ (model card, warm-up) and the manifest, so
    the same model published with another version number or card has the same digest."""
    path = os.fspath(path)
    files = [rel for rel in walk_files(path) if _counts_for_model_digest(rel)]
    if not files:
        raise NotFoundError(f"{path} holds no SavedModel files")
    return _digest_of({rel: file_sha256(join(path, rel)) for rel in files})


def write_manifest(path: str | os.PathLike[str]) -> str:
    """Write MANIFEST.sha256 (sha256sum format) covering every file except itself."""
    path = os.fspath(path)
    lines = [
        f"{file_sha256(join(path, rel))}  {rel}\n" for rel in walk_files(path) if rel != MANIFEST_FILE
    ]
    manifest = join(path, MANIFEST_FILE)
    atomic_write(manifest, "".join(lines))
    return manifest


def read_manifest(path: str | os.PathLike[str]) -> dict[str, str]:
    """{relative path: sha256} from a version's MANIFEST.sha256."""
    manifest = join(os.fspath(path), MANIFEST_FILE)
    if not exists(manifest):
        raise PublishError(f"{manifest} is missing; every published version carries one")
    entries: dict[str, str] = {}
    with open_file(manifest, "rb") as handle:
        for number, raw in enumerate(handle.read().decode().splitlines(), start=1):
            match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", raw)
            if not match:
                raise PublishError(f"{manifest} line {number} is not '<sha256>  <path>': {raw!r}")
            entries[match.group(2)] = match.group(1)
    return entries


def verify_manifest(path: str | os.PathLike[str]) -> bool:
    """True when every file matches MANIFEST.sha256 and no file is unlisted; otherwise raise
    PublishError naming the first file (in path order) that differs."""
    path = os.fspath(path)
    expected = read_manifest(path)
    present = {rel for rel in walk_files(path) if rel != MANIFEST_FILE}
    for rel in sorted(present | set(expected)):
        if rel not in expected:
            raise PublishError(f"{join(path, rel)} is not listed in {MANIFEST_FILE}")
        if rel not in present:
            raise PublishError(f"{join(path, rel)} is listed in {MANIFEST_FILE} but missing")
        if file_sha256(join(path, rel)) != expected[rel]:
            raise PublishError(f"{join(path, rel)} does not match its {MANIFEST_FILE} digest (modified or corrupt)")
    return True


def version_model_sha256(path: str | os.PathLike[str]) -> str:
    """model_sha256 of a published version, from its manifest when it has one (no re-hashing)."""
    try:
        return _digest_of(read_manifest(path))
    except PublishError:
        return model_sha256(path)


def iter_versions(base: str | os.PathLike[str], name: str) -> Iterator[tuple[int, str]]:
    for version in list_versions(base, name):
        yield version, version_path(base, name, version)
