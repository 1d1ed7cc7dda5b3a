"""Where the lake's bytes live: a local folder (the default) or an S3 prefix, behind one small layer.

`INCREMENTAL_LAKE` is a path (``/srv/lake``, ``./var/lake``) or a URI (``s3://bucket/prefix``).
The lake's rows are a Delta table that `deltalake` reads and writes itself (`incremental.data.table`,
which also puts an append's data files here). Everything beside it (`incremental.data.lake`,
`incremental.data.quarantine`, extraction, validation) works on *lake paths*: a `pathlib.Path` for a local lake, an `ObjectPath` (bucket + key, the same pure path
operations: ``/``, ``name``, ``parent``, ``with_name``, ``relative_to``) for an object store, and
does every read, listing and write through the functions here, which go through
`pyarrow.fs` (`LocalFileSystem` or `S3FileSystem`, from `pyarrow.fs.FileSystem.from_uri`). S3
endpoint and credentials come from the standard AWS variables (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``), as every AWS client reads them.

Where the two stores differ by nature, and what the lake relies on:

* **Publishing an object.** Locally: a temporary file in the same folder, fsync, rename over the
  target. On S3 a single PUT (or a completed multipart upload) is atomic: readers see the whole
  object or none, so it is written in place.
* **Moving a file or folder** (a staged extraction to quarantine, the old format's hours aside).
  Locally one rename. S3 has no rename: the objects are copied (the one named `last` last), then
  deleted (that one first).
* **The lock** (`lake_lock.lock`): locally an exclusive file lock (`incremental.locks`) under
  ``<lake>/_locks``; on S3 a create-only conditional PUT (``If-None-Match: *``) of ``<lake>/_locks/<name>.lock`` holding the
  owner and an expiry (a lease), released by a delete conditional on its ETag (``If-Match``). A
  lease older than its expiry (a worker that died holding it) is broken the same way. No
  shared disk is assumed: every worker that reaches the bucket takes turns.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from incremental.errors import IncrementalError

OBJECT_SCHEMES = ("s3",)
LOCKS_DIR = "_locks"


class StoreError(IncrementalError, RuntimeError):
    """A request to the object store failed (unreachable endpoint, no such bucket, access denied);
    the message names the object."""


def _named(func: Any) -> Any:
    """Object store failures as a `StoreError` naming the object (pyarrow's OSErrors name no file)."""

    @functools.wraps(func)
    def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(path, *args, **kwargs)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if isinstance(path, ObjectPath) and exc.filename is None:
                raise StoreError(f"{path}: {exc}") from exc
            raise

    return wrapper


class ObjectPath:
    """A key in a bucket of an object store (``s3://bucket/key``): pure path operations, no I/O.

    Not `os.PathLike` on purpose: code that would open it as a local file fails loudly instead of
    writing next to the working directory.
    """

    __slots__ = ("key", "scheme", "bucket")

    def __init__(self, scheme: str, bucket: str, key: str | PurePosixPath = ""):
        self.scheme, self.bucket = scheme, bucket
        self.key = PurePosixPath("/", str(key))  # absolute under the bucket: "/" is the bucket root

    @classmethod
    def from_uri(cls, uri: str) -> ObjectPath:
        scheme, _, rest = uri.partition("://")
        bucket, _, key = rest.partition("/")
        if scheme not in OBJECT_SCHEMES or not bucket:
            raise ValueError(f"{uri!r} is not an object store URI (s3://bucket/prefix)")
        return cls(scheme, bucket, key.strip("/"))

    # --- pure path operations (what the lake code uses of pathlib.Path) ---
    def __truediv__(self, other: str | PurePosixPath) -> ObjectPath:
        return ObjectPath(self.scheme, self.bucket, self.key / str(other))

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def stem(self) -> str:
        return self.key.stem

    @property
    def suffix(self) -> str:
        return self.key.suffix

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.scheme, self.bucket, self.key.parent)

    def with_name(self, name: str) -> ObjectPath:
        return ObjectPath(self.scheme, self.bucket, self.key.with_name(name))

    def relative_to(self, other: ObjectPath | Path) -> PurePosixPath:
        if not isinstance(other, ObjectPath) or (other.scheme, other.bucket) != (self.scheme, self.bucket):
            raise ValueError(f"{self} is not under {other}")
        return self.key.relative_to(other.key)

    @property
    def fs_path(self) -> str:
        """The path pyarrow's S3FileSystem takes: ``bucket/key``."""
        return f"{self.bucket}{self.key}".rstrip("/")

    def __str__(self) -> str:
        return f"{self.scheme}://{self.fs_path}"

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and str(self) == str(other)

    def __lt__(self, other: ObjectPath) -> bool:
        return str(self) < str(other)

    def __hash__(self) -> int:
        return hash(str(self))


LakePath = Path | ObjectPath


def root(location: str | os.PathLike[str] | ObjectPath) -> LakePath:
    """The lake root named by `INCREMENTAL_LAKE`: an absolute local Path, or an ObjectPath for s3://."""
    if isinstance(location, ObjectPath):
        return location
    text = os.fspath(location)
    if "://" in text:
        if text.startswith("file://"):
            return Path(text.removeprefix("file://")).absolute()
        return ObjectPath.from_uri(text)
    return Path(text).absolute()


@functools.lru_cache(maxsize=8)
def _object_fs(scheme: str, bucket: str, endpoint: str | None, region: str | None) -> pafs.FileSystem:
    # from_uri reads the AWS_* variables (endpoint, credentials, region) as any AWS client does;
    # the cache key holds the endpoint and region so a changed environment gets a new client
    fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{bucket}")
    return fs


_LOCAL = pafs.LocalFileSystem()


def locate(path: LakePath) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem holding `path`, and the path as that filesystem names it."""
    if isinstance(path, ObjectPath):
        env = os.environ
        return (_object_fs(path.scheme, path.bucket, env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3"),
                           env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")), path.fs_path)
    return _LOCAL, str(Path(path).absolute())


# --- reading -------------------------------------------------------------------------------------
@_named
def _info(path: LakePath) -> pafs.FileInfo:
    fs, where = locate(path)
    return fs.get_file_info(where)


def is_file(path: LakePath) -> bool:
    return _info(path).type == pafs.FileType.File


def is_dir(path: LakePath) -> bool:
    return _info(path).type == pafs.FileType.Directory


def exists(path: LakePath) -> bool:
    return _info(path).type != pafs.FileType.NotFound


def size(path: LakePath) -> int:
    return int(_info(path).size)


@_named
def children(path: LakePath) -> list[LakePath]:
    """The direct children of a folder (files and folders), by name; [] when there is no such folder."""
    fs, where = locate(path)
    try:
        found = fs.get_file_info(pafs.FileSelector(where, allow_not_found=True))
    except OSError:  # not a folder
        return []
    return sorted(path / PurePosixPath(i.path).name for i in found)


@_named
def mtime_ns(path: LakePath) -> int:
    """A file's modification time; a folder's (an object store has no folder times: its newest direct child's)."""
    info = _info(path)
    if info.mtime_ns is not None:
        return int(info.mtime_ns)
    fs, where = locate(path)
    times = [i.mtime_ns for i in fs.get_file_info(pafs.FileSelector(where, allow_not_found=True))
             if i.mtime_ns is not None]
    return int(max(times, default=0))


@_named
def read_bytes(path: LakePath) -> bytes:
    fs, where = locate(path)
    with fs.open_input_stream(where) as f:
        return f.read()


@_named
def read_parquet(path: LakePath) -> pa.Table:
    fs, where = locate(path)
    return pq.read_table(where, filesystem=fs)


@_named
def sha256(path: LakePath) -> str:
    import hashlib

    digest = hashlib.sha256()
    fs, where = locate(path)
    with fs.open_input_stream(where) as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# --- writing -------------------------------------------------------------------------------------
def mkdir(path: LakePath) -> None:
    """Make a folder and its parents (an object store has no folders: nothing to do)."""
    if not isinstance(path, ObjectPath):
        path.mkdir(parents=True, exist_ok=True)


def _local_atomic(path: Path, write: Any) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@_named
def write_bytes(path: LakePath, data: bytes) -> None:
    """Publish `data` at `path` atomically: readers see the old object (or none) or the whole new one."""
    if isinstance(path, ObjectPath):
        fs, where = locate(path)
        with fs.open_output_stream(where) as f:  # one PUT: atomic on S3
            f.write(data)
        return
    _local_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


@_named
def write_parquet(path: LakePath, table: pa.Table, **options: Any) -> None:
    """Publish a Parquet file atomically (one object on S3; temp file + fsync + rename locally)."""
    if isinstance(path, ObjectPath):
        fs, where = locate(path)
        pq.write_table(table, where, filesystem=fs, **options)  # visible only once the upload completes
        return
    _local_atomic(path, lambda tmp: pq.write_table(table, tmp, **options))


@_named
def unlink(path: LakePath) -> None:
    fs, where = locate(path)
    with contextlib.suppress(FileNotFoundError):
        fs.delete_file(where)


@_named
def rmtree(path: LakePath) -> None:
    if not isinstance(path, ObjectPath):
        shutil.rmtree(path, ignore_errors=True)
        return
    fs, where = locate(path)
    with contextlib.suppress(FileNotFoundError):
        fs.delete_dir(where)


def _files_under(path: ObjectPath) -> list[ObjectPath]:
    fs, where = locate(path)
    found = fs.get_file_info(pafs.FileSelector(where, recursive=True, allow_not_found=True))
    return [path / PurePosixPath(i.path).relative_to(where) for i in found if i.type == pafs.FileType.File]


@_named
def move(src: LakePath, dst: LakePath, *, last: str | None = None) -> None:
    """Move a file or a folder. Locally one rename (atomic). On an object store, copy then delete:
    the file named `last` (the manifest) is copied last and deleted first, so the folder is whole
    at its destination before it stops being whole at its source."""
    if not isinstance(src, ObjectPath) or not isinstance(dst, ObjectPath):
        if isinstance(src, ObjectPath) or isinstance(dst, ObjectPath):
            raise ValueError(f"cannot move {src} to {dst}: not on the same store")
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        return
    fs, where = locate(src)
    if _info(src).type == pafs.FileType.File:
        fs.copy_file(where, locate(dst)[1])
        fs.delete_file(where)
        return
    files = sorted(_files_under(src), key=lambda p: p.name == last)  # `last` sorts to the end
    for f in files:
        fs.copy_file(locate(f)[1], locate(dst / f.relative_to(src))[1])
    for f in reversed(files):  # `last` first
        fs.delete_file(locate(f)[1])


def put_tree(local: Path, dst: LakePath) -> None:
    """Move the contents of a local folder (what validation staged: GX result, data docs) into a
    lake folder, replacing older copies of the same names; the local folder is removed."""
    if not local.is_dir():
        return
    for item in sorted(local.iterdir()):
        target = dst / item.name
        if is_dir(target):
            rmtree(target)  # derived output (data docs) of an earlier attempt: rebuilt just now
        elif exists(target):
            unlink(target)
        if isinstance(dst, ObjectPath):
            fs, where = locate(target)
            if item.is_dir():
                pafs.copy_files(str(item), where, source_filesystem=_LOCAL, destination_filesystem=fs)
            else:
                write_bytes(target, item.read_bytes())
        else:
            dst.mkdir(parents=True, exist_ok=True)
            os.replace(item, dst / item.name)
    shutil.rmtree(local, ignore_errors=True)


def scratch_dir(lake: LakePath) -> Path:
    """A local folder where validation stages files before they go into the lake: inside the lake
    when it is local (so staged files move in with a rename), a local temporary folder otherwise."""
    if isinstance(lake, ObjectPath):
        path = Path(tempfile.gettempdir()) / "incremental-lake-staging"
    else:
        path = lake / "quarantine" / ".staging"
    path.mkdir(parents=True, exist_ok=True)
    return path


def key(lake: LakePath, path: LakePath | str) -> str:
    """`path` as a key relative to the lake root (what travels between tasks)."""
    if isinstance(lake, ObjectPath):
        return relative_to(path if isinstance(path, ObjectPath) else root(path), lake).as_posix()
    if isinstance(path, ObjectPath):
        raise ValueError(f"{path} is not under {lake}")
    return Path(path).absolute().relative_to(Path(lake).absolute()).as_posix()


def relative_to(path: LakePath, base: LakePath) -> PurePath:
    """`path.relative_to(base)` for either kind of lake path; ValueError when `path` is not under
    `base` (a local path is never under an object store prefix, nor the other way round)."""
    if isinstance(path, ObjectPath):
        return path.relative_to(base)
    if isinstance(base, ObjectPath):
        raise ValueError(f"{path} is not under {base}")
    return path.relative_to(base)
