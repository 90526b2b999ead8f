"""Shared builders for the registry tests."""

from __future__ import annotations

from ingot.registry import ModelVersion, Registry

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "c" * 64
BLESSED = {"blessed": True, "reasons": ["accuracy 0.95 >= 0.90", "every class f1 >= 0.70"], "checks": []}


def ok(_uri: str, _sha: str) -> bool:
    return True


def publish(registry: Registry, name: str, version: int, *, sha: str | None = None, gate=BLESSED,
            accuracy: float = 0.9, ready: bool = True, run: str | None = None) -> ModelVersion:
    """Register (and by default verify) a version the way the pipeline's register step does."""
    registry.register_version(
        name, version=version, artifact_uri=f"/repo/{name}/{version}",
        model_sha256=sha or f"{version:064x}", data_hash="d" * 64, config={"architecture": "cnn", "epochs": 2},
        metrics={"accuracy": accuracy, "macro_f1": accuracy - 0.01}, gate=gate,
        pipeline_run_id=run or f"run-{name}-{version}",
    )
    return registry.mark_ready(name, version, verify=ok) if ready else registry.get_version(name, version)
