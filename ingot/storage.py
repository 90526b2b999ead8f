"""The one storage layer: paths that are local files or object-store URLs, atomic writes and
content hashes. Every module that writes a file a reader may see half-written, hashes content, or
joins a path that may be a URL goes through here.

Local paths use the standard library; URLs (`gs://`, `s3://`, `ram://`, ...) go through
`tf.io.gfile` where TensorFlow has the filesystem plugin, so TensorFlow is imported only for them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

_CHUNK = 1 << 20
MIN_TOKEN_BYTES = 32  # a bearer token shorter than this (or empty) is a configuration error

PathLike = str | os.PathLike[str]


def is_remote(path: PathLike) -> bool:
    return "://" in os.fspath(path)


def _gfile() -> Any:
    import tensorflow as tf

    return tf.io.gfile


def join(base: PathLike, *parts: str) -> str:
    """Join path parts; a URL keeps `/` separators whatever the platform."""
    base = os.fspath(base)
    if is_remote(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base, *parts)


def isdir(path: PathLike) -> bool:
    path = os.fspath(path)
    return bool(_gfile().isdir(path)) if is_remote(path) else os.path.isdir(path)


def exists(path: PathLike) -> bool:
    path = os.fspath(path)
    return bool(_gfile().exists(path)) if is_remote(path) else os.path.exists(path)


def listdir(path: PathLike) -> list[str]:
    path = os.fspath(path)
    if is_remote(path):
        return [entry.rstrip("/") for entry in _gfile().listdir(path)]
    return os.listdir(path)


def makedirs(path: PathLike) -> None:
    path = os.fspath(path)
    if is_remote(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def rmtree(path: PathLike) -> None:
    """Remove a directory tree if present; never raises (used on failure paths)."""
    path = os.fspath(path)
    try:
        if is_remote(path):
            if _gfile().exists(path):
                _gfile().rmtree(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    except Exception:  # noqa: BLE001 - cleanup must not mask the original error
        pass


def open_file(path: PathLike, mode: str = "rb") -> Any:
    path = os.fspath(path)
    return _gfile().GFile(path, mode) if is_remote(path) else open(path, mode)


def walk_files(root: PathLike) -> list[str]:
    """Every file under `root` as a sorted relative POSIX path."""
    root = os.fspath(root)
    found: list[str] = []
    if is_remote(root):
        prefix = root.rstrip("/") + "/"
        for directory, _, files in _gfile().walk(root):
            rel_dir = directory.rstrip("/")[len(prefix) :] if directory.rstrip("/") != root.rstrip("/") else ""
            found.extend(f"{rel_dir}/{name}" if rel_dir else name for name in files)
    else:
        for directory, _, files in os.walk(root):
            rel_dir = os.path.relpath(directory, root)
            for name in files:
                rel = name if rel_dir == "." else os.path.join(rel_dir, name)
                found.append(rel.replace(os.sep, "/"))
    return sorted(found)


def copy_tree(src: PathLike, dst: PathLike, *, last: str | None = None) -> None:
    """Copy a directory tree to a new `dst` (which must not exist); `last` names a relative
    path to copy after everything else (saved_model.pb, so its presence means completeness)."""
    src, dst = os.fspath(src), os.fspath(dst)
    if not is_remote(src) and not is_remote(dst):
        shutil.copytree(src, dst)
        return
    gfile = _gfile()
    files = walk_files(src)
    if last in files:
        files = [rel for rel in files if rel != last] + [last]
    for rel in files:
        target = join(dst, rel)
        parent = target.rsplit("/", 1)[0] if is_remote(target) else os.path.dirname(target)
        makedirs(parent)
        gfile.copy(join(src, rel), target, overwrite=False)


def atomic_write(path: PathLike, data: bytes | str, *, durable: bool = True) -> None:
    """Replace `path`'s content so a reader sees the old file or the new one, never half of it.

    Locally: a temp file in the same directory, fsync (unless `durable=False`), rename over
    `path`; the temp file is removed if anything fails. Object stores publish an object whole on
    close, so a URL is written directly (deleted first: some gfile filesystems, ram://, do not
    truncate on overwrite).
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path = os.fspath(path)
    if is_remote(path):
        gfile = _gfile()
        if gfile.exists(path):
            gfile.remove(path)
        with gfile.GFile(path, "wb") as handle:
            handle.write(payload)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_rename(src: PathLike, dst: PathLike, *, overwrite: bool = True) -> None:
    """Move a finished file into place in one step (a gfile rename for URLs)."""
    src, dst = os.fspath(src), os.fspath(dst)
    if is_remote(src) or is_remote(dst):
        _gfile().rename(src, dst, overwrite=overwrite)
    elif overwrite:
        os.replace(src, dst)
    else:
        if os.path.exists(dst):
            raise FileExistsError(dst)
        os.rename(src, dst)


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_stream(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (local path or URL)."""
    with open_file(path, "rb") as handle:
        return sha256_stream(handle)


def read_token_file(path: PathLike, *, what: str = "token file") -> str:
    """The bearer token a file holds (surrounding whitespace removed). A file that cannot be read,
    or holds an empty or short (< MIN_TOKEN_BYTES) token, is a ConfigError naming the file: a
    token check must never fail open."""
    from ingot.errors import ConfigError

    try:
        with open_file(path, "rb") as handle:
            data = handle.read(1 << 16)
    except OSError as err:
        raise ConfigError(f"cannot read {what} {os.fspath(path)}: {err.strerror or err}") from None
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {os.fspath(path)} is not UTF-8 text") from None
    size = len(token.encode("utf-8"))
    if size < MIN_TOKEN_BYTES:
        held = "is empty" if size == 0 else f"holds a {size}-byte token"
        raise ConfigError(f"{what} {os.fspath(path)} {held}; a token needs at least {MIN_TOKEN_BYTES} bytes "
                          "(e.g. `openssl rand -hex 32 > FILE`)")
    return token
