"""The routing table's `capture` block: which share of predicted rows has its input stored, the
store's byte budget and how long an input is kept.

    capture: {sample: 0.2, max_bytes: 10GiB, retention_days: 30}

`sample` is 0..1 (0: off); `max_bytes` an integer or a size with a unit (KB, MB, GB, KiB, MiB,
GiB, TiB); `retention_days` a positive number. Absent: nothing is captured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ingot.errors import ConfigError

KEYS = ("sample", "max_bytes", "retention_days")
DEFAULT_MAX_BYTES = 10 << 30
DEFAULT_RETENTION_DAYS = 30.0
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")


@dataclass(frozen=True)
class CapturePolicy:
    sample: float = 0.0
    max_bytes: int = DEFAULT_MAX_BYTES
    retention_days: float = DEFAULT_RETENTION_DAYS

    @property
    def enabled(self) -> bool:
        return self.sample > 0

    def as_dict(self) -> dict[str, Any]:
        sample: int | float = int(self.sample) if float(self.sample).is_integer() else self.sample
        days: int | float = int(self.retention_days) if float(self.retention_days).is_integer() \
            else self.retention_days
        return {"sample": sample, "max_bytes": self.max_bytes, "retention_days": days}


def parse_size(value: Any, key: str) -> int:
    """Bytes from an integer or a size such as '10GiB'."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a size such as 10GiB or a number of bytes, got {value!r}")
    if isinstance(value, int) and value > 0:
        return value
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None or match[2].lower() not in _UNITS:
        raise ConfigError(f"{key}: expected a size such as 10GiB or a number of bytes, got {value!r}")
    size = int(float(match[1]) * _UNITS[match[2].lower()])
    if size < 1:
        raise ConfigError(f"{key}: must be at least one byte, got {value!r}")
    return size


def parse_policy(doc: Any, prefix: str = "routing table capture") -> CapturePolicy:
    """A CapturePolicy from the `capture` mapping, or ConfigError naming the key at fault."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{prefix}: expected a mapping {{sample, max_bytes, retention_days}}, got {doc!r}")
    unknown = sorted(str(key) for key in doc if key not in KEYS)
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown key; expected one of {', '.join(KEYS)}")
    sample = doc.get("sample", 0)
    if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not math.isfinite(sample) \
            or not 0 <= sample <= 1:
        raise ConfigError(f"{prefix}.sample: expected the share of predicted rows to store, 0..1, got {sample!r}")
    max_bytes = parse_size(doc.get("max_bytes", DEFAULT_MAX_BYTES), f"{prefix}.max_bytes")
    days = doc.get("retention_days", DEFAULT_RETENTION_DAYS)
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not math.isfinite(days) or days <= 0:
        raise ConfigError(f"{prefix}.retention_days: expected a positive number of days, got {days!r}")
    return CapturePolicy(sample=float(sample), max_bytes=max_bytes, retention_days=float(days))
