"""The live traffic's own images: a fixed share of each class of an image folder carved out
before anything is trained, so the pool is in no training, validation or test split and every
held-out figure (the base test split, a dataset version's production holdout) stays honest.

`carve(source, root, per_class)` copies the folder into `root/base` (what every training run
reads) and `root/live` (the pool the traffic draws from): per class, the `per_class` files with
the smallest sha256 of their name go to the pool, so the carve-out is the same on every machine.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from ingot.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


@dataclass(frozen=True)
class Carved:
    base: Path
    live: Path
    base_images: int
    live_images: int

    def describe(self) -> str:
        return (f"{self.live_images} images carved out of the dataset as the live pool ({self.live}); "
                f"training, validation and test use the other {self.base_images} ({self.base})")


def carve(source: Path, root: Path, per_class: int) -> Carved:
    """Split the image folder `source` (one subfolder per class) into `root/base` and `root/live`;
    an existing carve-out of the same size is reused."""
    if per_class < 1:
        raise DataError(f"the live pool needs at least one image per class, got {per_class}")
    base, live = root / "base", root / "live"
    stamp = root / f".carved-{per_class}"
    classes = sorted(p for p in Path(source).iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{source} has no class subfolders to carve a live pool from")
    if not stamp.exists():
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(live, ignore_errors=True)
        for folder in classes:
            files = sorted((f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES),
                           key=lambda f: hashlib.sha256(f.name.encode()).hexdigest())
            if len(files) <= per_class:
                raise DataError(f"class {folder.name!r} has {len(files)} images; carving {per_class} for the live "
                                "pool would leave none to train on")
            for index, file in enumerate(files):
                target = (live if index < per_class else base) / folder.name / file.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, target)
        stamp.touch()
    count = sum(1 for _ in live.rglob("*") if _.is_file())
    total = sum(1 for _ in base.rglob("*") if _.is_file())
    return Carved(base=base, live=live, base_images=total, live_images=count)
