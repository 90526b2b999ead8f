"""Reading the capture store back: the one place that knows which listed files are captured inputs
(`layout.parse`), for every reader (the dataset build, the drift monitor's embedding test), on a
directory or object storage alike (`ingot.storage`)."""

from __future__ import annotations

from dataclasses import dataclass

from ingot import storage
from ingot.capture import layout


@dataclass(frozen=True)
class StoredInput:
    sha256: str
    extension: str
    location: str       # full path or URL, for `read`
    size: int
    modified: float     # when it was stored (Unix seconds; the object's LastModified on S3)


def stored_inputs(base: str, model: str) -> list[StoredInput]:
    """The model's captured inputs under `base` (one listing of the store), oldest first; files
    that do not follow the layout (temp files, strays) are left out."""
    root = storage.join(base, model)
    found = []
    for relative, size, modified in storage.list_files_with_times(root):
        parsed = layout.parse(relative)
        if parsed is not None:
            found.append(StoredInput(parsed[0], parsed[1], storage.join(root, relative), size, modified))
    return sorted(found, key=lambda entry: (entry.modified, entry.sha256))


def read(entry: StoredInput) -> bytes:
    with storage.open_file(entry.location, "rb") as handle:
        return bytes(handle.read())
