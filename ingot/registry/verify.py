"""Artifact verification for `Registry.mark_ready`: a version is READY only once this passes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlparse

from ingot.errors import ConfigError, ModelError
from ingot.storage import sha256_file

# (artifact_uri, model_sha256) -> True/None on success; False or an exception on failure.
Verifier = Callable[[str, str], "bool | None"]


def local_path(artifact_uri: str) -> Path:
    """A local directory for `artifact_uri` (plain path or file://); remote schemes are refused."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else artifact_uri)
    raise ConfigError(
        f"cannot check files of {artifact_uri!r} here: checksum mappings need a local path; "
        "pass a verifier callable for remote stores"
    )


def checksum_verifier(expected: Mapping[str, str]) -> Verifier:
    """A verifier that recomputes the sha256 of each listed file under the artifact directory."""
    if not expected:
        raise ConfigError("checksum mapping is empty; list at least one file and its sha256")
    wanted = {str(rel): str(sha).lower() for rel, sha in expected.items()}

    def verify(artifact_uri: str, _model_sha256: str) -> bool:
        root = local_path(artifact_uri).resolve()
        problems: list[str] = []
        for rel, sha in sorted(wanted.items()):
            path = (root / rel).resolve()
            if root not in path.parents:
                problems.append(f"{rel}: outside the artifact directory")
            elif not path.is_file():
                problems.append(f"{rel}: missing")
            elif (actual := sha256_file(path)) != sha:
                problems.append(f"{rel}: sha256 {actual[:12]}... expected {sha[:12]}...")
        if problems:
            raise ModelError(f"{len(problems)} of {len(wanted)} files do not match: " + "; ".join(problems[:5]))
        return True

    return verify


def repository_verifier(artifact_uri: str, model_sha256: str) -> bool:
    """Verify a version published into the model repository (local or gs://, s3:// through gfile):
    every file matches its MANIFEST.sha256 and the model digest equals the one being registered,
    so a registry entry can never point at a different or damaged artifact."""
    from ingot import repository

    repository.verify_manifest(artifact_uri)
    actual = repository.version_model_sha256(artifact_uri)
    if actual != model_sha256:
        raise ModelError(f"{artifact_uri} holds model_sha256 {actual}, not the registered {model_sha256}")
    return True
