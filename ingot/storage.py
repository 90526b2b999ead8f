"""The one storage layer: paths that are local files or object-store URLs, atomic writes and
content hashes. Every module that writes a file a reader may see half-written, hashes content, or
joins a path that may be a URL goes through here.

Local paths use the standard library. `s3://` goes through fsspec + s3fs (TensorFlow 2.21's
`tf.io.gfile` has no S3 filesystem); the endpoint and credentials come from the usual AWS settings
(`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...). Other URLs (`gs://`, `ram://`, ...) go through
`tf.io.gfile`, so TensorFlow is imported only for them.
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


def is_s3(path: PathLike) -> bool:
    return os.fspath(path).startswith("s3://")


def _s3() -> Any:
    """The S3 filesystem (fsspec caches the instance); listings are not cached, so a reader sees
    objects another process just wrote."""
    import s3fs

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    return s3fs.S3FileSystem(endpoint_url=endpoint, use_listings_cache=False, skip_instance_cache=False)


class _S3Files:
    """The slice of `tf.io.gfile`'s interface this module uses, over s3fs."""

    def __init__(self) -> None:
        self.fs = _s3()

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(path))

    def isdir(self, path: str) -> bool:
        return bool(self.fs.isdir(path))

    def listdir(self, path: str) -> list[str]:
        prefix = path.rstrip("/")[len("s3://"):] + "/"
        return [entry[len(prefix):] if entry.startswith(prefix) else entry.rsplit("/", 1)[-1]
                for entry in self.fs.ls(path, detail=False)]

    def makedirs(self, path: str) -> None:
        """Object stores have no directories; a bucket must exist already."""

    def rmtree(self, path: str) -> None:
        self.fs.rm(path, recursive=True)

    def remove(self, path: str) -> None:
        self.fs.rm_file(path)

    def GFile(self, path: str, mode: str = "rb") -> Any:  # noqa: N802 - gfile's spelling
        return self.fs.open(path, mode)

    def walk(self, root: str) -> Any:
        for directory, _dirs, files in self.fs.walk(root):
            yield "s3://" + directory, _dirs, files

    def copy(self, src: str, dst: str, overwrite: bool = False) -> None:
        if not overwrite and self.exists(dst):
            raise FileExistsError(dst)
        with open_file(src, "rb") as reader, open_file(dst, "wb") as writer:
            shutil.copyfileobj(reader, writer, _CHUNK)

    def rename(self, src: str, dst: str, overwrite: bool = True) -> None:
        if not overwrite and self.exists(dst):
            raise FileExistsError(dst)
        self.fs.mv(src, dst)


def _files(path: str) -> Any:
    """The filesystem for a URL: s3fs for s3://, tf.io.gfile for the rest."""
    return _S3Files() if is_s3(path) else _gfile()


def join(base: PathLike, *parts: str) -> str:
    """Join path parts; a URL keeps `/` separators whatever the platform."""
    base = os.fspath(base)
    if is_remote(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base, *parts)


def isdir(path: PathLike) -> bool:
    path = os.fspath(path)
    return bool(_files(path).isdir(path)) if is_remote(path) else os.path.isdir(path)


def exists(path: PathLike) -> bool:
    path = os.fspath(path)
    return bool(_files(path).exists(path)) if is_remote(path) else os.path.exists(path)


def listdir(path: PathLike) -> list[str]:
    path = os.fspath(path)
    if is_remote(path):
        return [entry.rstrip("/") for entry in _files(path).listdir(path)]
    return os.listdir(path)


def makedirs(path: PathLike) -> None:
    path = os.fspath(path)
    if is_remote(path):
        _files(path).makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def rmtree(path: PathLike) -> None:
    """Remove a directory tree if present; never raises (used on failure paths)."""
    path = os.fspath(path)
    try:
        if is_remote(path):
            files = _files(path)
            if files.exists(path):
                files.rmtree(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    except Exception:  # noqa: BLE001 - cleanup must not mask the original error
        pass


def open_file(path: PathLike, mode: str = "rb") -> Any:
    path = os.fspath(path)
    return _files(path).GFile(path, mode) if is_remote(path) else open(path, mode)


def walk_files(root: PathLike) -> list[str]:
    """Every file under `root` as a sorted relative POSIX path."""
    root = os.fspath(root)
    found: list[str] = []
    if is_remote(root):
        prefix = root.rstrip("/") + "/"
        for directory, _, files in _files(root).walk(root):
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
    gfile = _files(dst) if is_remote(dst) else _files(src)
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
        gfile = _files(path)
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
        _files(dst if is_remote(dst) else src).rename(src, dst, overwrite=overwrite)
    elif overwrite:
        os.replace(src, dst)
    else:
        if os.path.exists(dst):
            raise FileExistsError(dst)
        os.rename(src, dst)


def write_once(path: PathLike, data: bytes) -> bool:
    """Write `data` at `path` unless something is there already (content-addressed stores: the
    first writer wins and an object is never overwritten); True when this call wrote it.

    Locally a temp file is linked into place (`os.link` fails if the name exists, so two writers
    cannot both win and a reader never sees half a file); on object storage the check and the put
    are two calls, which is safe for content-addressed names (a racing writer puts the same bytes)."""
    path = os.fspath(path)
    if is_remote(path):
        files = _files(path)
        if files.exists(path):
            return False
        with files.GFile(path, "wb") as handle:
            handle.write(data)
        return True
    target = Path(path)
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def remove(path: PathLike) -> None:
    """Delete one file or object (missing is fine)."""
    path = os.fspath(path)
    if is_remote(path):
        files = _files(path)
        if files.exists(path):
            files.remove(path)
    else:
        Path(path).unlink(missing_ok=True)


def list_files_with_times(root: PathLike) -> list[tuple[str, int, float]]:
    """(relative POSIX path, size in bytes, modification time as a Unix timestamp) for every file
    under `root`; [] when `root` does not exist. One listing call per prefix on object storage."""
    root = os.fspath(root)
    found: list[tuple[str, int, float]] = []
    if is_s3(root):
        fs = _s3()
        prefix = root.rstrip("/")[len("s3://"):] + "/"
        if not fs.exists(root):
            return []
        for key, info in fs.find(root, detail=True).items():
            modified = info.get("LastModified") or info.get("mtime")
            stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified or 0)
            found.append((key[len(prefix):], int(info.get("size") or 0), stamp))
    elif is_remote(root):
        gfile = _gfile()
        if not gfile.exists(root):
            return []
        for rel in walk_files(root):
            stat = gfile.stat(join(root, rel))
            found.append((rel, int(stat.length), stat.mtime_nsec / 1e9))
    else:
        if not os.path.isdir(root):
            return []
        for directory, _, files in os.walk(root):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # a writer's temp file, not an entry
                full = os.path.join(directory, name)
                try:
                    stat = os.stat(full)
                except FileNotFoundError:
                    continue  # removed while listing
                found.append((os.path.relpath(full, root).replace(os.sep, "/"), stat.st_size, stat.st_mtime))
    return sorted(found)


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
