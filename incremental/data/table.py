"""The lake's rows: one Delta Lake table, ``<lake>/search_logs``, read and written with `deltalake`.

Every row the warehouse gave for an hour is in it once, with the data contract's columns
(`SEARCH_LOG_SCHEMA`) plus three of the lake's own: ``hour`` (the hour it was extracted for, as
an `incremental.hours.Hour` writes itself), ``status`` (extracted / validated / quarantined) and
``quarantine_reason`` (the rules a quarantined row broke). The table is partitioned by ``hour`` and, within it, by
``status``, so an hour's state is known from the log alone (its files, their row counts), without
reading a row, and a commit that leaves the validated rows alone leaves their files alone.

Every change is one commit of the log: an `append` (extraction, late rows) or an `overwrite_hour`
(validation, quarantine, re-admission: the files of the hour as read removed, the new ones added).
Either encodes its rows once per status (`encode`: deterministic zstd Parquet, whose sha256 is
the rows' identity), puts the files in the hour's folder and commits them
(`create_write_transaction`): as fast as the plain Parquet file the lake wrote before, where
`write_deltalake` took twice as long. A commit is a create-only
conditional PUT of ``_delta_log/<n>.json`` on S3 (delta-rs 1.x's default) and a create-only file
locally, so two writers on one hour cannot both win: the loser's overwrite raises
`deltalake.exceptions.CommitFailedError` and writes nothing visible. Each commit's
``custom_metadata`` says what it was (`event`, the hour, the SQL's hash, the rows' sha256).

Outside readers need nothing of this project: ``DeltaTable("<lake>/search_logs")`` lists the files
(``file_uris``) and any Parquet reader reads them.
Always read through the log: a folder also holds files that later commits removed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties, Schema
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from incremental.data import delta_log, storage
from incremental.data.storage import LakePath, ObjectPath, StoreError
from incremental.errors import DamagedStateError, IncrementalError
from incremental.hours import Hour, iso_hour

TABLE = "search_logs"
HOUR_COLUMN, STATUS_COLUMN, REASON_COLUMN = "hour", "status", "quarantine_reason"
EXTRACTED, VALIDATED, QUARANTINED = "extracted", "validated", "quarantined"
PARTITION_BY = [HOUR_COLUMN, STATUS_COLUMN]

# The contract of an extracted hour. Validation checks an hour's rows against it exactly.
SEARCH_LOG_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("event_ts", pa.timestamp("us", tz="UTC")),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
        pa.field("session_id", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("query", pa.string()),
        pa.field("product_id", pa.string()),
        pa.field("position", pa.int32()),
        pa.field("clicked", pa.int32()),
        pa.field("title", pa.string()),
        pa.field("brand", pa.string()),
        pa.field("category", pa.string()),
        pa.field("price", pa.float64()),
    ]
)
TABLE_SCHEMA = SEARCH_LOG_SCHEMA.append(pa.field(HOUR_COLUMN, pa.string())).append(
    pa.field(STATUS_COLUMN, pa.string())).append(pa.field(REASON_COLUMN, pa.string()))
FILE_SCHEMA = SEARCH_LOG_SCHEMA.append(pa.field(REASON_COLUMN, pa.string()))  # a data file's columns
# After each commit: a checkpoint every `delta.checkpointInterval` commits, as delta-rs does, but the
# log is never cleaned up behind it (its default after 30 days): time travel to the version a model
# version trained at needs that version's log (`incremental maintain-lake` checkpoints and vacuums data files).
HOOKS = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


class CommitConflict(IncrementalError, RuntimeError):
    """Another writer committed a change to the same hour first: nothing of this change was committed
    (the table is as that writer left it). Running the step again reads the new state and redoes it."""

    retryable = True


def partition_value(start: Hour) -> str:
    """The hour's value in the table's `hour` column, ``2026-01-01T09:00Z``, whatever datetime it is
    given: a plain datetime's own str would be another value and miss every row of the hour."""
    return iso_hour(start)


def table_path(lake: LakePath, name: str = TABLE) -> LakePath:
    return lake / name


def uri(lake: LakePath, name: str = TABLE) -> str:
    """The table's URI (`name`: another table of the lake), as `deltalake` (and any outside reader) opens it."""
    path = table_path(lake, name)
    return str(path) if isinstance(path, ObjectPath) else str(Path(path).absolute())


def storage_options(lake: LakePath) -> dict[str, str] | None:
    """What delta-rs needs to reach an object store lake: the standard AWS variables, as every AWS
    client reads them (plain HTTP allowed only where the endpoint says http://, as MinIO or moto)."""
    if not isinstance(lake, ObjectPath):
        return None
    env = os.environ
    names = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
             "AWS_SESSION_TOKEN": "AWS_SESSION_TOKEN", "AWS_REGION": "AWS_REGION",
             "AWS_DEFAULT_REGION": "AWS_REGION", "AWS_ENDPOINT_URL_S3": "AWS_ENDPOINT_URL",
             "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL"}
    options = {target: env[name] for name, target in names.items() if env.get(name)}
    if options.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    return options


@contextlib.contextmanager
def reading(where: str) -> Iterator[None]:
    """A log or data file the reader cannot make sense of: `DamagedStateError` naming the table (on an
    object store `StoreError`, retryable: an unreachable endpoint or a missing bucket looks the same)."""
    try:
        yield
    except (DeltaError, OSError) as exc:
        if isinstance(exc, TableNotFoundError | FileNotFoundError | CommitFailedError):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "://" in where:
            raise StoreError(f"{where}: the table cannot be read or written ({first})") from None
        raise DamagedStateError(f"{where} is damaged (or its store unreachable): {first}") from None


def open_table(lake: LakePath, version: int | None = None, name: str = TABLE) -> DeltaTable | None:
    """The table at its latest version (or `version`); None while nothing was ever written."""
    where, options = uri(lake, name), storage_options(lake)
    with reading(where):
        if not DeltaTable.is_deltatable(where, storage_options=options):
            return None
        dt = DeltaTable(where, version=version, storage_options=options)
        dt.get_add_actions(flatten=False)  # the whole log replayed now: damage shows here, by name
        delta_log.check(table_path(lake, name), dt)  # a commit file emptied or gone, which the replay passes over
        return dt


@dataclass(frozen=True)
class DataFile:
    """One data file of the table's current version (what the log lists)."""

    path: str  # relative to the table, as the log writes it
    hour: str
    status: str
    rows: int
    size: int


_FILES: dict[tuple[str, int], dict[str, list[DataFile]]] = {}  # (table, version) -> hour -> files: versions never change


def _files_by_hour(dt: DeltaTable) -> dict[str, list[DataFile]]:
    key = (dt.table_uri, dt.version())
    if key not in _FILES:
        with reading(dt.table_uri):
            actions = pa.table(dt.get_add_actions(flatten=True))
        by_hour: dict[str, list[DataFile]] = {}
        for a in actions.select(["path", f"partition.{HOUR_COLUMN}", f"partition.{STATUS_COLUMN}", "num_records",
                                 "size_bytes"]).to_pylist():
            found = DataFile(a["path"], a[f"partition.{HOUR_COLUMN}"], a[f"partition.{STATUS_COLUMN}"],
                             int(a["num_records"] or 0), int(a["size_bytes"]))
            by_hour.setdefault(found.hour, []).append(found)
        while len(_FILES) >= 16:
            _FILES.pop(next(iter(_FILES)))
        _FILES[key] = {h: sorted(f, key=lambda f: f.path) for h, f in by_hour.items()}
    return _FILES[key]


def files_of(dt: DeltaTable | None, start: Hour | None = None) -> list[DataFile]:
    """The data files of the table's version (of one hour's partition when `start` is given), by path."""
    if dt is None:
        return []
    by_hour = _files_by_hour(dt)
    if start is not None:
        return list(by_hour.get(partition_value(start), []))
    return sorted((f for found in by_hour.values() for f in found), key=lambda f: f.path)


def file_uris(dt: DeltaTable, start: Hour, statuses: Sequence[str]) -> list[str]:
    """The absolute URIs of the hour's files with one of `statuses` (decoded, unlike the log's paths)."""
    filters: list[tuple[str, str, Any]] = [(HOUR_COLUMN, "=", partition_value(start)), (STATUS_COLUMN, "in", list(statuses))]
    return sorted(dt.file_uris(partition_filters=filters))


def read_rows(dt: DeltaTable | None, start: Hour, statuses: Sequence[str], *,
              columns: Sequence[str] | None = None) -> pa.Table:
    """The hour's rows with one of `statuses`, in a stable order (file path, then row), as the contract's
    columns (`columns` to choose others, e.g. `TABLE_SCHEMA.names`).

    The log says which files; pyarrow's own filesystem reads them. Not `dt.to_pyarrow_dataset()`: a
    process that read through it aborts at exit (SIGABRT) in about one run of thirty, its work done."""
    names = list(columns or SEARCH_LOG_SCHEMA.names)
    schema = pa.schema([TABLE_SCHEMA.field(n) for n in names])
    if dt is None:
        return schema.empty_table()
    found = []
    with reading(dt.table_uri):
        for status in statuses:
            for file_uri in file_uris(dt, start, [status]):
                fs, where = storage.locate(storage.root(file_uri))
                rows = ds.dataset(where, schema=FILE_SCHEMA, format="parquet", filesystem=fs).to_table()
                reasons = rows.column(REASON_COLUMN).combine_chunks()
                found.append((file_uri, with_status(rows, start, status, reasons).select(names)))  # + the partition
    found.sort(key=lambda f: f[0])
    return pa.concat_tables([t for _, t in found]).cast(schema) if found else schema.empty_table()


def rows_sha256(table: pa.Table) -> str:
    """A content hash of rows: the sha256 of their deterministic, uncompressed Parquet encoding
    (same rows in the same order -> same hash, whatever warehouse or chunking they came from)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(None).combine_chunks(), sink, compression="none",
                   write_statistics=False, store_schema=False)
    return hashlib.sha256(memoryview(sink.getvalue())).hexdigest()


def with_status(rows: pa.Table, start: Hour, status: str, reasons: pa.Array | None = None) -> pa.Table:
    """Contract rows as table rows: the hour, `status`, and the reason each quarantined row broke."""
    n = rows.num_rows
    contract = rows.select(SEARCH_LOG_SCHEMA.names).cast(SEARCH_LOG_SCHEMA)
    reason = reasons if reasons is not None else pa.nulls(n, pa.string())
    return pa.Table.from_arrays([*contract.columns, pa.repeat(pa.scalar(partition_value(start), pa.string()), n),
                                 pa.repeat(pa.scalar(status, pa.string()), n), reason.cast(pa.string())],
                                schema=TABLE_SCHEMA)


def _properties(start: Hour, event: str, metadata: Mapping[str, Any]) -> CommitProperties:
    custom = {"event": event, "hour": partition_value(start)}
    custom.update({k: v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
                   for k, v in metadata.items() if v is not None})
    return CommitProperties(custom_metadata=custom)


def encode(rows: pa.Table) -> bytes:
    """Table rows (`with_status`) as the bytes of one data file: the contract's columns and the
    reason (partition values live in the log), zstd Parquet, deterministic (same rows, same bytes)."""
    sink = pa.BufferOutputStream()
    pq.write_table(rows.select(FILE_SCHEMA.names).replace_schema_metadata(None), sink, compression="zstd",
                   row_group_size=256 * 1024, write_statistics=True)
    return bytes(sink.getvalue())


@dataclass(frozen=True)
class NewFile:
    """A data file to add to the hour: its status, rows and bytes (`encode`)."""

    status: str
    rows: int
    data: bytes

    @functools.cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def append(lake: LakePath, start: Hour, rows: pa.Table, event: str, metadata: Mapping[str, Any]) -> int:
    """Append table rows (`with_status`, any statuses) to the hour in one commit; the table's new version."""
    return append_files(lake, start, _encoded(rows), event, metadata)


def _publish(lake: LakePath, start: Hour, new: NewFile) -> AddAction:
    """Put a data file in the hour's folder (one PUT on S3; temp file and rename locally) and say how
    the log adds it. Its name holds its sha256; in the table only once the commit lists it."""
    folder = f"{HOUR_COLUMN}={quote(partition_value(start), safe='')}/{STATUS_COLUMN}={new.status}"
    name = f"part-{new.sha256[:16]}-{uuid.uuid4().hex[:12]}.parquet"
    storage.write_bytes(table_path(lake) / folder / name, new.data)
    return AddAction(f"{folder}/{name}", len(new.data), {HOUR_COLUMN: partition_value(start), STATUS_COLUMN: new.status},
                     int(time.time() * 1000), True, json.dumps({"numRecords": new.rows}))


def append_files(lake: LakePath, start: Hour, new: Sequence[NewFile], event: str, metadata: Mapping[str, Any]) -> int:
    """Add encoded data files to the hour in one commit (an append: concurrent appends both land); the new version.

    The files are written first, then the commit (`create_write_transaction`, or the table's first
    commit): a writer that dies in between leaves files no commit lists, which readers never see."""
    actions = [_publish(lake, start, f) for f in new]
    props, options = _properties(start, event, metadata), storage_options(lake)
    with reading(uri(lake)):
        dt = open_table(lake)
        if dt is None:
            try:
                create_table_with_add_actions(uri(lake), Schema.from_arrow(TABLE_SCHEMA), actions, mode="append",
                                              partition_by=PARTITION_BY, storage_options=options,
                                              commit_properties=props, post_commithook_properties=HOOKS)
            except DeltaError:  # another writer created the table first: append to it
                dt = open_table(lake)
                if dt is None:
                    raise
        if dt is not None:
            dt.create_write_transaction(list[AddAction | RemoveAction](actions), mode="append", schema=TABLE_SCHEMA, partition_by=PARTITION_BY,
                                        commit_properties=props, post_commithook_properties=HOOKS)
    dt = open_table(lake)
    assert dt is not None  # just written
    return dt.version()


def _encoded(tables: pa.Table | Sequence[pa.Table]) -> list[NewFile]:
    """Table rows as one data file per status (`encode`); a table of one status is not filtered (a
    copy of every column: half a second per million rows)."""
    out = []
    for rows in [tables] if isinstance(tables, pa.Table) else tables:
        statuses = sorted(pc.unique(rows[STATUS_COLUMN]).to_pylist()) if rows.num_rows else []
        for s in statuses:
            part = rows if len(statuses) == 1 else rows.filter(pc.equal(rows[STATUS_COLUMN], s))
            out.append(NewFile(s, part.num_rows, encode(part)))
    return out


def overwrite_hour(lake: LakePath, start: Hour, rows: pa.Table | Sequence[pa.Table], event: str,
                   metadata: Mapping[str, Any], *, keep_validated: bool, read: DeltaTable | None) -> int:
    """Replace the hour's rows, as of `read` (the version they were read at), with `rows` in one
    commit; the table's new version.

    `rows`: table rows (`with_status`), or several tables of them (one per status: none is filtered).
    `keep_validated`: the validated rows are not part of it (their files stay as they are; `rows`
    may hold no validated row). Otherwise `rows` is the whole hour, validated rows included. The
    commit removes the files `read` lists and adds the new ones: a concurrent commit that removed
    any of them makes it fail (`CommitConflict`, nothing committed), and rows appended since `read`
    (late rows) stay as they are, never lost.
    """
    new = _encoded(rows)
    if keep_validated and any(f.status == VALIDATED for f in new):
        raise ValueError("overwrite_hour(keep_validated=True) was given validated rows")
    filters: list[tuple[str, str, Any]] = [(HOUR_COLUMN, "=", partition_value(start))]
    if keep_validated:
        filters.append((STATUS_COLUMN, "!=", VALIDATED))
    actions = [_publish(lake, start, f) for f in new]
    props = _properties(start, event, metadata)
    with reading(uri(lake)):
        try:
            if read is None:  # no table yet: this is its first commit (losing that race is a conflict too)
                create_table_with_add_actions(uri(lake), Schema.from_arrow(TABLE_SCHEMA), actions, mode="error",
                                              partition_by=PARTITION_BY, storage_options=storage_options(lake),
                                              commit_properties=props, post_commithook_properties=HOOKS)
            else:
                _overwrite(lake, start, read, actions, filters, props)
        except DeltaError as exc:  # CommitFailedError is one; a first commit that lost is another
            if read is not None and not isinstance(exc, CommitFailedError):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "commit refused"
            raise CommitConflict(f"hour {partition_value(start)}: another writer changed it first ({first}); nothing of "
                                 f"this {event} was committed: run it again") from None
    dt = open_table(lake)
    assert dt is not None  # just written
    return dt.version()


def _overwrite(lake: LakePath, start: Hour, read: DeltaTable, actions: list[AddAction],
               filters: list[tuple[str, str, Any]], props: CommitProperties, attempts: int = 5) -> None:
    """The overwrite's commit as of `read`. delta-rs judges a conflict on the whole table: a commit
    of another hour in between fails it too, though this hour's files are the same. Then it is
    made again as of the newer version, unless a commit since `read` changed this hour (a real
    conflict: `CommitFailedError` goes up)."""
    for attempt in range(attempts):
        try:
            read.create_write_transaction(list[AddAction | RemoveAction](actions), mode="overwrite",
                                          schema=TABLE_SCHEMA, partition_by=PARTITION_BY, partition_filters=filters,
                                          commit_properties=props, post_commithook_properties=HOOKS)
            return
        except CommitFailedError:
            newer = open_table(lake)
            if newer is None or attempt == attempts - 1 \
                    or any(int(c["version"]) > read.version() for c in hour_versions(newer, start)):
                raise
            read = newer


def hour_versions(dt: DeltaTable | None, start: Hour) -> list[delta_log.Commit]:
    """The commits that changed the hour, oldest first (their version, event and metadata)."""
    if dt is None:
        return []
    hour = partition_value(start)
    with reading(dt.table_uri):
        commits = delta_log.history(storage.root(dt.table_uri), dt)
    return [c for c in commits if c.get("hour") == hour]


def oldest_commit(dt: DeltaTable | None) -> delta_log.Commit | None:
    """The oldest commit the log still holds (older ones are cleaned up behind a checkpoint)."""
    if dt is None:
        return None
    with reading(dt.table_uri):
        commits = delta_log.history(storage.root(dt.table_uri), dt)
    return commits[0] if commits else None
