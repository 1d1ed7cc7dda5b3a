"""The lake: the hours' rows in one Delta Lake table, and what each hour's state is.

Layout (all under the lake root, a local folder or ``s3://bucket/prefix``):

    search_logs/                                the Delta table (`incremental.data.table`): every row of
                                                every hour, with its status; ``_delta_log/`` is its history
    records/search_logs/dt=YYYY-MM-DD/hour=HH/  files beside the table: the hour's last validation record
                                                (`_validation.json`: checks, statistics, the table version;
                                                `_validation.pending.json` while its commit is to come)
    staging/search_logs/dt=YYYY-MM-DD/hour=HH/  an extraction the table cannot hold (an empty hour, or columns
                                                that break the contract), waiting for validation to judge it
    quarantine/search_logs/dt=YYYY-MM-DD/hour=HH/<id>/
                                                one quarantine event of the hour: its report (`quarantine.json`),
                                                the GX result and data docs; `rows.parquet` only for an
                                                extraction the table cannot hold (its rows are nowhere else)

**One commit per change.** Extraction appends the rows the hour does not hold yet (nothing new:
no commit); validation, quarantine and re-admission overwrite the hour in one commit, setting
each row's status (`quarantined` rows keep their `quarantine_reason`). **Validated rows are
immutable:** no commit changes a validated row, and a commit that adds no validated row leaves
their files alone. **Nothing is lost:** the hour's rows in the table (every status) plus those of
a staged or quarantined extraction file are the warehouse's rows of the hour.

`partition()` gives the hour's state: *validated* (the validated rows are its view; rows extracted
since and not validated yet are `pending_parts`), *extracted* (nothing validated yet), *quarantined*
(only quarantined rows), *missing*. The view's `sha256` identifies its validated files (what a
model version's lineage records, with the table `version` it read).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, NotRequired, TypedDict, cast
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from incremental.data import files, lake_lock, storage, table
from incremental.data.delta_log import Commit
from incremental.data.storage import LakePath
from incremental.data.table import DataFile
from incremental.errors import IncrementalError
from incremental.hours import HOUR, Hour

if TYPE_CHECKING:  # JSON shapes only: what validation writes beside the table, read back here
    from incremental.validation.hour_drift import HourStats
    from incremental.validation.validate import ValidationRecord

SCHEMA_VERSION = 3  # 3: the Delta table; 2: Parquet parts + manifests
QUARANTINE_FILE = "quarantine.json"
READMITTED_FILE = "readmitted.json"
STAGED_FILE = "extracted.parquet"
QUARANTINED_ROWS_FILE = "rows.parquet"  # an extraction the table cannot hold, quarantined whole
REPORT_KEY: Final = "report"  # a commit's metadata: the quarantine folder whose report describes its quarantined rows
AWAITS_COMMIT = "awaits_commit"  # a report's: it holds only once a commit names its folder (REPORT_KEY)
AWAITS_ROWS = "awaits_rows"  # a report's: it holds only once its folder's rows file is there
STAGED_KEY: Final = "staged_sha256"  # a commit's metadata (a report's): the staged extraction file whose rows it took
RECORD_KEY: Final = "validation_record"  # a commit's metadata: the id of the validation record written before it (AWAITS_COMMIT)
REASON_COLUMN = table.REASON_COLUMN
SEARCH_LOG_SCHEMA = table.SEARCH_LOG_SCHEMA
# What identifies an impression as it arrived (the catalogue columns come from a join and may be fixed later).
IMPRESSION_KEY = ("event_id", "event_ts", "ingested_at", "session_id", "user_id", "query", "product_id",
                  "position", "clicked")

Status = Literal["validated", "quarantined", "extracted", "missing"]


class LakeError(IncrementalError, RuntimeError):
    """A partition is missing, unreadable or inconsistent with the table's log."""


def hour_key(start: Hour) -> str:
    """The hour's folder under the records, staging and quarantine roots: ``dt=YYYY-MM-DD/hour=HH``."""
    return f"dt={start:%Y-%m-%d}/hour={start:%H}"


def partition_dir(lake: LakePath, start: Hour) -> LakePath:
    """The hour's records folder (its validation record): where the hour is named outside the table."""
    return lake / "records" / table.TABLE / hour_key(start)


def staging_dir(lake: LakePath, start: Hour) -> LakePath:
    return lake / "staging" / table.TABLE / hour_key(start)


def quarantine_root(lake: LakePath, start: Hour) -> LakePath:
    return lake / "quarantine" / table.TABLE / hour_key(start)


def scratch_dir(lake: LakePath) -> Path:
    """Where validation stages GX results and data docs before they are moved next to the data
    (a local folder: inside a local lake, a temporary folder for a lake on object storage)."""
    return storage.scratch_dir(lake)


def hour_lock(lake: LakePath, start: Hour) -> AbstractContextManager[None]:
    """The lock extraction, validation and re-admission take on an hour. Not what keeps the table
    whole (a losing commit fails on its own): it saves two workers doing the same hour's work twice."""
    return lake_lock.lock(lake, f"search_logs-{start:%Y%m%dT%H}")


def identity(found: Sequence[DataFile]) -> str:
    """The identity of a set of data files: the sha256 of their (path, rows, bytes), by path."""
    digest = hashlib.sha256()
    for f in sorted(found, key=lambda f: f.path):
        digest.update(f"{f.path}:{f.rows}:{f.size}\n".encode())
    return digest.hexdigest()


def readmitted(folder: LakePath) -> bool:
    """Whether a quarantine folder was re-admitted (it stays, marked)."""
    return storage.is_file(folder / READMITTED_FILE)


@dataclass(frozen=True)
class HourLog:
    """What the table's log says of the hour's quarantine folders (their names relative to the lake):
    those a commit quarantined rows for (`REPORT_KEY` in its metadata), and those a re-admission
    commit took its rows from (its ``sources``), with that commit; and of its validation records
    written before their commit (`RECORD_KEY`), with that commit."""

    reports: frozenset[str]
    readmits: dict[str, Commit]
    staged: frozenset[str] = frozenset()  # the sha256 of staged extraction files a commit took the rows of
    since_ms: int | None = None  # the log's oldest commit still held, when older ones were cleaned up
    records: dict[str, Commit] = field(default_factory=dict)  # validation record id -> its commit

    def committed(self, name: str, report: LakePath) -> bool:
        """Whether the folder `name`, whose report awaits its commit, was committed: a commit names
        it, or the report is older than the oldest commit the log holds (it may name it): taken as committed."""
        return name in self.reports or self.older(report)

    def older(self, path: LakePath) -> bool:
        """Whether a file written before its commit is older than the oldest commit the log holds."""
        return self.since_ms is not None and storage.mtime_ns(path) // 1_000_000 < self.since_ms


def hour_log(lake: LakePath, start: Hour, dt: DeltaTable | None = None) -> HourLog:
    """The hour's quarantine folders as the table's log (latest version, or `dt`) names them."""
    dt = dt if dt is not None else table.open_table(lake)
    commits = table.hour_versions(dt, start)
    oldest = table.oldest_commit(dt)
    since = int(oldest["timestamp"]) if oldest is not None and int(oldest["version"]) > 0 else None
    reports = frozenset(str(c[REPORT_KEY]) for c in commits if c.get(REPORT_KEY))
    readmits: dict[str, Commit] = {}
    for c in commits:
        if c.get("event") == "readmit" and c.get("sources"):
            for source in json.loads(str(c["sources"])):
                readmits.setdefault(str(source), c)
    staged = frozenset(str(c[STAGED_KEY]) for c in commits if c.get(STAGED_KEY))
    records = {str(c[RECORD_KEY]): c for c in commits if c.get(RECORD_KEY)}
    return HourLog(reports, readmits, staged, since, records)


def folder_name(lake: LakePath, folder: LakePath) -> str:
    """A quarantine folder's name as the log records it: its path relative to the lake."""
    return str(storage.relative_to(folder, lake))


def unfinished(folder: LakePath, log: HourLog, lake: LakePath) -> bool:
    """A quarantine folder whose report does not hold yet (its writer died, or is still at work, in
    between): its report awaits a commit that names it and the log has none, or its report says the
    rows file follows it (a staged extraction moved in) and the file is not there."""
    report = files.read_json(folder / QUARANTINE_FILE)
    if report.get(AWAITS_COMMIT) and not log.committed(folder_name(lake, folder), folder / QUARANTINE_FILE):
        return True
    return bool(report.get(AWAITS_ROWS)) and not storage.is_file(folder / QUARANTINED_ROWS_FILE)


def quarantine_attempts(lake: LakePath, start: Hour, *, include_readmitted: bool = False,
                        dt: DeltaTable | None = None) -> list[LakePath]:
    """The hour's quarantine folders (each with a report that holds: see `unfinished`), oldest first;
    re-admitted ones (marked, or named by a re-admission's commit) only with `include_readmitted`."""
    found = [p for p in storage.children(quarantine_root(lake, start)) if storage.is_file(p / QUARANTINE_FILE)]
    if not found:
        return []
    log = hour_log(lake, start, dt)
    found = [p for p in found if not unfinished(p, log, lake) and (
        include_readmitted or not (readmitted(p) or folder_name(lake, p) in log.readmits))]
    return sorted(found, key=lambda p: (storage.mtime_ns(p / QUARANTINE_FILE), str(p)))


def quarantined_files(lake: LakePath, start: Hour, dt: DeltaTable | None = None) -> list[LakePath]:
    """The hour's quarantined extraction files (rows the table cannot hold), not re-admitted."""
    return [a / QUARANTINED_ROWS_FILE for a in quarantine_attempts(lake, start, dt=dt)
            if storage.is_file(a / QUARANTINED_ROWS_FILE)]


def parquet_rows(path: LakePath) -> int:
    """The rows of a Parquet file beside the table, from its footer."""
    fs, where = storage.locate(path)
    with fs.open_input_file(where) as f:
        return int(pq.ParquetFile(f).metadata.num_rows)


def staged_file(lake: LakePath, start: Hour) -> LakePath | None:
    """The hour's staged extraction, unless a commit took its rows (a validation killed before it
    deleted the file: `quarantine.repair` does)."""
    path = staging_dir(lake, start) / STAGED_FILE
    if not storage.is_file(path):
        return None
    return None if files.sha256_file(path) in hour_log(lake, start).staged else path


class View(TypedDict):
    """What a `Partition`'s view is (its `manifest`): the hour, its rows, their identity, the table
    version read and the table's URI."""

    interval_start: str  # ISO times of the hour [start, end)
    interval_end: str
    rows: int
    sha256: str  # `identity` of the view's data files; a staged extraction: the file's sha256
    version: int | None  # the table version read (None: no table yet)
    table: str  # `table.uri`
    staged: NotRequired[str]  # an extraction staged beside the table: its file


@dataclass(frozen=True)
class Partition:
    """One hour of the lake, as of one table version, and what state it is in.

    `manifest` describes the hour's view (for a validated hour: its validated rows): ``rows``,
    ``sha256`` (the identity of its files), ``version`` (the table version read) and ``table``
    (its URI); `files` are the view's data files; `pending_parts` counts files of rows extracted
    since and not validated yet.
    """

    start: Hour
    status: Status
    path: LakePath | None  # the hour's records folder; a quarantined hour: its latest quarantine folder
    manifest: View | None
    pending_parts: int = 0
    files: tuple[DataFile, ...] = field(default=())
    lake: LakePath | None = None

    @property
    def end(self) -> Hour:
        return self.start + HOUR

    @property
    def version(self) -> int | None:
        return self.manifest["version"] if self.manifest is not None else None

    @property
    def parts(self) -> list[DataFile]:
        return list(self.files)


def _view(lake: LakePath, start: Hour, dt: DeltaTable | None, found: Sequence[DataFile]) -> View:
    return {"interval_start": start.isoformat(), "interval_end": (start + HOUR).isoformat(),
            "rows": sum(f.rows for f in found), "sha256": identity(found),
            "version": dt.version() if dt is not None else None, "table": table.uri(lake)}


def partition(lake: LakePath, start: Hour, dt: DeltaTable | None = None) -> Partition:
    """The hour's state in the table's latest version (or in `dt`, an opened version)."""
    dt = dt if dt is not None else table.open_table(lake)
    found = table.files_of(dt, start)
    by = {s: [f for f in found if f.status == s] for s in (table.VALIDATED, table.EXTRACTED, table.QUARANTINED)}
    here = partition_dir(lake, start)
    if by[table.VALIDATED]:
        view = by[table.VALIDATED]
        return Partition(start, "validated", here, _view(lake, start, dt, view), len(by[table.EXTRACTED]),
                         tuple(view), lake)
    if by[table.EXTRACTED]:
        view = by[table.EXTRACTED]
        return Partition(start, "extracted", here, _view(lake, start, dt, view), len(view), tuple(view), lake)
    staged = staged_file(lake, start)
    if staged is not None:
        manifest: View = {**_view(lake, start, dt, []), "rows": parquet_rows(staged), "sha256": files.sha256_file(staged), "staged": str(staged)}
        return Partition(start, "extracted", here, manifest, 1, (), lake)
    attempts = quarantine_attempts(lake, start, dt=dt)
    if by[table.QUARANTINED] or attempts:
        view = by[table.QUARANTINED]
        manifest = _view(lake, start, dt, view)
        manifest["rows"] += sum(parquet_rows(q) for q in quarantined_files(lake, start, dt))
        return Partition(start, "quarantined", attempts[-1] if attempts else here, manifest, 0, tuple(view), lake)
    return Partition(start, "missing", None, None)


def partitions(lake: LakePath, starts: Sequence[Hour]) -> list[Partition]:
    """The hours' states, all as of one table version (its latest)."""
    dt = table.open_table(lake)
    return [partition(lake, start, dt) for start in starts]


def validated_partitions(lake: LakePath, before: Hour, window_hours: int) -> list[Partition]:
    """Validated hours in [before - window, before), oldest first, all as of one table version."""
    found = partitions(lake, [before - HOUR * k for k in range(window_hours, 0, -1)])
    return [p for p in found if p.status == "validated"]


@dataclass(frozen=True)
class ToValidate:
    """An hour as validation reads it, once, under the hour's lock and as of one table version
    (`read`: what the outcome's commit replaces).

    `rows`: what there is to validate (rows extracted since the last validation, or a staged
    extraction when `staged`); None when nothing is (the hour is missing, quarantined, or
    validated with nothing new): then `record` is its last validation record or quarantine report.
    `history`: the statistics of the latest validated hours before it (the drift checks' reference)."""

    part: Partition
    read: DeltaTable | None
    rows: pa.Table | None
    staged: LakePath | None  # the staged extraction file `rows` came from
    earlier: pa.Table  # the hour's validated rows, which stay as they are
    kept: pa.Table  # its quarantined rows (table columns), which stay quarantined
    record: ValidationRecord
    history: list[HourStats]


def to_validate(lake: LakePath, start: Hour, lookback_hours: int, history_hours: int) -> ToValidate:
    """What validating the hour reads of the lake (`ToValidate`), all at once; rows only when some wait."""
    dt = table.open_table(lake)
    part = partition(lake, start, dt)
    staged = staged_file(lake, start)
    none = table.TABLE_SCHEMA.empty_table()
    if staged is None and not part.pending_parts:  # nothing to validate: the hour's last verdict
        record: ValidationRecord = {}
        if part.status == "quarantined" and part.path is not None:
            record = cast("ValidationRecord", files.read_json(part.path / QUARANTINE_FILE))
        elif part.path is not None and storage.is_file(part.path / files.VALIDATION_FILE):
            record = cast("ValidationRecord", files.read_json(part.path / files.VALIDATION_FILE))
        return ToValidate(part, dt, None, None, none, none, record, [])
    history = validated_statistics(lake, start, lookback_hours, history_hours, dt)
    earlier = table.read_rows(dt, start, [table.VALIDATED])
    if staged is not None:
        return ToValidate(part, dt, read_parquet(staged), staged, earlier, none, {}, history)
    return ToValidate(part, dt, table.read_rows(dt, start, [table.EXTRACTED]), None, earlier,
                      table.read_rows(dt, start, [table.QUARANTINED], columns=table.TABLE_SCHEMA.names), {}, history)


def validated_statistics(lake: LakePath, before: Hour, lookback_hours: int, count: int,
                         dt: DeltaTable | None) -> list[HourStats]:
    """The statistics in the validation records of the latest `count` validated hours within
    `lookback_hours` before `before` (as of `dt`), oldest first; an unreadable record is passed over.
    A validated hour whose run was killed between its commit and its record has only the pending
    record (`quarantine.write_record`) until the hour runs again: its statistics count meanwhile
    (they are of the rows that commit validated), instead of the hour missing from later hours' reference."""
    out: list[HourStats] = []
    for k in range(1, lookback_hours + 1):
        if len(out) >= count:
            break
        part = partition(lake, before - HOUR * k, dt)
        if part.status != "validated":
            continue
        assert part.path is not None  # a validated hour has its folder
        for name in (files.VALIDATION_FILE, files.PENDING_VALIDATION_FILE):
            try:
                record = files.read_json(part.path / name)
            except (OSError, ValueError):
                continue
            if record.get("statistics"):
                out.append(record["statistics"])
                break
    return out[::-1]


def read_parquet(path: LakePath) -> pa.Table:
    """A Parquet file of the lake beside the table (local or on object storage)."""
    return storage.read_parquet(path)


def missing_parts(part: Partition) -> list[str]:
    """The view's data files the log lists but the store lacks (the lake is damaged); [] when whole."""
    if part.lake is None:
        return []
    root = table.table_path(part.lake)
    return [f.path for f in part.files if not storage.is_file(root / unquote(f.path))]


def _status_of(part: Partition) -> list[str]:
    return [table.VALIDATED] if part.status == "validated" else [table.EXTRACTED] if part.status == "extracted" \
        else [table.QUARANTINED]


def read_partition(part: Partition, verify: bool = True) -> pa.Table:
    """The rows of the hour's view (for a validated hour: its validated rows), as of the partition's
    table version, with the contract's columns. `verify`: a data file gone is a `LakeError` naming it."""
    if part.lake is None or part.manifest is None:
        raise LakeError(f"hour {part.start} has no partition in the lake")
    if part.manifest.get("staged"):
        return read_parquet(storage.root(part.manifest["staged"]))
    gone = missing_parts(part) if verify else []
    if gone:
        raise LakeError(f"hour {part.start} is damaged: its {part.status} data file(s) {', '.join(gone)} "
                        f"missing from {table.table_path(part.lake)} (restore from a backup; `incremental partitions` "
                        "lists such hours)")
    dt = table.open_table(part.lake, part.version)
    return table.read_rows(dt, part.start, _status_of(part))
