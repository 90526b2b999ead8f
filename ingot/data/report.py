"""The data report: what a dataset holds and what the loader had to fix or skip.

Printed before training and stored next to the split, so a surprising model can be traced back
to a surprising dataset (a tiny class, a pile of grayscale scans, files that never decoded).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# Pillow image modes, named for the conversion to RGB they need.
MODE_CONVERSIONS = {
    "1": "grayscale",
    "L": "grayscale",
    "I": "grayscale",
    "I;16": "grayscale",
    "I;16B": "grayscale",
    "I;16L": "grayscale",
    "F": "grayscale",
    "LA": "grayscale+alpha",
    "La": "grayscale+alpha",
    "RGBA": "rgba",
    "RGBa": "rgba",
    "P": "palette",
    "PA": "palette",
    "CMYK": "cmyk",
    "YCbCr": "ycbcr",
    "RGB": "",
}


def conversion_for_mode(mode: str | None) -> str:
    """'' when the file already is RGB, else the kind of conversion the decoder applies."""
    if mode is None:
        return "unknown"
    return MODE_CONVERSIONS.get(mode, mode.lower())


@dataclass
class SkippedFile:
    path: str
    reason: str


@dataclass
class SizeStats:
    min: int
    max: int
    mean: float

    @classmethod
    def of(cls, values: Sequence[int]) -> SizeStats:
        if not values:
            return cls(0, 0, 0.0)
        return cls(int(min(values)), int(max(values)), round(float(sum(values)) / len(values), 2))


@dataclass
class DataReport:
    """Counts, balance, sizes, conversions and skipped files of one loaded dataset."""

    source: str
    kind: str  # "image_folder" | "cifar10" | "keras_cifar10"
    class_counts: dict[str, int]
    height: SizeStats
    width: SizeStats
    converted_modes: dict[str, int] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)
    skipped: list[SkippedFile] = field(default_factory=list)
    ignored_files: int = 0

    @property
    def class_names(self) -> list[str]:
        return list(self.class_counts)

    @property
    def total(self) -> int:
        return int(sum(self.class_counts.values()))

    @property
    def imbalance_ratio(self) -> float | None:
        """Largest class over smallest; None when a class is empty (the loader refuses that)."""
        counts = [c for c in self.class_counts.values()]
        if not counts or min(counts) == 0:
            return None
        return round(max(counts) / min(counts), 4)

    @property
    def converted_total(self) -> int:
        return int(sum(self.converted_modes.values()))

    @classmethod
    def build(
        cls,
        *,
        source: str,
        kind: str,
        class_counts: dict[str, int],
        heights: Iterable[int],
        widths: Iterable[int],
        modes: Iterable[str | None] = (),
        formats: Iterable[str] = (),
        skipped: Iterable[SkippedFile] = (),
        ignored_files: int = 0,
    ) -> DataReport:
        converted: dict[str, int] = {}
        for mode in modes:
            conversion = conversion_for_mode(mode)
            if conversion:
                converted[conversion] = converted.get(conversion, 0) + 1
        format_counts: dict[str, int] = {}
        for fmt in formats:
            format_counts[fmt] = format_counts.get(fmt, 0) + 1
        return cls(
            source=source,
            kind=kind,
            class_counts=dict(class_counts),
            height=SizeStats.of(list(heights)),
            width=SizeStats.of(list(widths)),
            converted_modes=dict(sorted(converted.items())),
            formats=dict(sorted(format_counts.items())),
            skipped=list(skipped),
            ignored_files=int(ignored_files),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "total": self.total,
            "num_classes": len(self.class_counts),
            "class_counts": dict(self.class_counts),
            "imbalance_ratio": self.imbalance_ratio,
            "image_size": {"height": asdict(self.height), "width": asdict(self.width)},
            "converted_to_rgb": dict(self.converted_modes),
            "formats": dict(self.formats),
            "skipped": [asdict(s) for s in self.skipped],
            "skipped_count": len(self.skipped),
            "ignored_files": self.ignored_files,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def to_markdown(self) -> str:
        """A human-readable summary: one table of classes, then sizes, conversions, skips."""
        total = self.total or 1
        lines = [
            f"## Data report: `{self.source}`",
            "",
            f"{self.total} images in {len(self.class_counts)} classes ({self.kind}); "
            f"imbalance ratio (largest/smallest class): {_fmt_ratio(self.imbalance_ratio)}; "
            f"skipped {len(self.skipped)} undecodable file(s); ignored {self.ignored_files} "
            "non-image file(s).",
            "",
            "| class | images | share |",
            "|---|---:|---:|",
        ]
        for name, count in self.class_counts.items():
            lines.append(f"| {_cell(name)} | {count} | {100.0 * count / total:.1f}% |")
        lines += [
            "",
            "| image size | min | max | mean |",
            "|---|---:|---:|---:|",
            f"| height | {self.height.min} | {self.height.max} | {self.height.mean:.1f} |",
            f"| width | {self.width.min} | {self.width.max} | {self.width.mean:.1f} |",
        ]
        if self.formats:
            lines += ["", "Formats: " + ", ".join(f"{k} {v}" for k, v in self.formats.items())]
        if self.converted_modes:
            lines += [
                "",
                "Converted to RGB: "
                + ", ".join(f"{k} {v}" for k, v in self.converted_modes.items()),
            ]
        if self.skipped:
            lines += ["", "| skipped file | reason |", "|---|---|"]
            lines += [f"| {_cell(s.path)} | {_cell(s.reason)} |" for s in self.skipped]
        return "\n".join(lines) + "\n"


def _fmt_ratio(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
