"""Maintenance of the lake's table (`incremental maintain-lake`): compaction, a checkpoint, vacuum.

Every change is a commit that adds files and removes others from the table's state; the removed
files stay on the store (time travel reads them) until a vacuum deletes them, and the log grows by
one JSON file per commit. Three steps, in this order:

1. **Compaction** (`DeltaTable.optimize.compact`) of each hour's small files, one (hour, status)
   at a time under the hour's lock, as a commit of its own (event ``optimize``, the hour): the rows
   are unchanged. Validated files are left alone: validation already writes an hour's validated
   rows as one file, and their identity (paths, sizes) is what a model version's lineage names
   (`lake.identity`): compacting them would make an hour trained on look changed. So it is the
   pending (extracted) rows of late appends and the quarantined rows of several events.
2. **A checkpoint** of the latest version (`create_checkpoint`): a reader replays the log from it.
   The log is never cleaned up here nor by a commit (`table.HOOKS`): a model version's rows are
   rebuilt by time travel, which needs its version's log.
3. **Vacuum** (`DeltaTable.vacuum(full=True)`): data files no kept version lists, older than the
   retention (files a writer put but never committed, once older than it, too). The kept
   versions are every version from `keep_from` (the oldest table version a live model version's
   lineage records: the caller finds it in the registry) to the latest, so `training-rows` of
   each still rebuilds byte for byte. The retention (hours, default a week: Delta's own default)
   protects a writer between putting a file and committing it, and a reader of an older version
   in flight: below the longest of those, a vacuum can delete a file about to be committed.

`dry_run`: nothing is written; what each step would do is listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from deltalake import CommitProperties

from incremental.data import lake, table
from incremental.data.storage import LakePath
from incremental.hours import iso_hour, parse_hour

DEFAULT_RETENTION_HOURS = 168  # Delta's default `delta.deletedFileRetentionDuration`


@dataclass(frozen=True)
class Maintenance:
    """What a maintenance did (or, `dry_run`, would do)."""

    version: int | None  # the table's latest version afterwards (None: no table)
    keep_from: int | None  # the oldest version kept readable by time travel (None: the latest only)
    compacted: tuple[str, ...] = ()  # "hour status: n files" compacted into fewer
    checkpoint: int | None = None  # the version checkpointed
    vacuumed: tuple[str, ...] = ()  # data files deleted, relative to the table
    dry_run: bool = False


def small_partitions(dt: table.DeltaTable | None, min_files: int = 2) -> list[tuple[str, str, int]]:
    """(hour, status, files) of each non-validated status of an hour held in `min_files` files or more."""
    found: dict[tuple[str, str], int] = {}
    for f in table.files_of(dt):
        if f.status != table.VALIDATED:
            found[(f.hour, f.status)] = found.get((f.hour, f.status), 0) + 1
    return sorted((h, s, n) for (h, s), n in found.items() if n >= min_files)


def _compact(root: LakePath, hour: str, status: str) -> None:
    """One (hour, status) compacted in one commit, under the hour's lock (no change of the hour between)."""
    start = parse_hour(hour)
    with lake.hour_lock(root, start):
        dt = table.open_table(root)
        if dt is None:
            return
        filters = [(table.HOUR_COLUMN, "=", hour), (table.STATUS_COLUMN, "=", status)]
        with table.reading(dt.table_uri):
            dt.optimize.compact(partition_filters=filters, commit_properties=_props(start, status),
                                post_commithook_properties=table.HOOKS)


def _props(start: datetime, status: str) -> CommitProperties:
    return CommitProperties(custom_metadata={"event": "optimize", "hour": iso_hour(start), "status": status})


def maintain(root: LakePath, keep_from: int | None, *, retention_hours: int = DEFAULT_RETENTION_HOURS,
             dry_run: bool = False) -> Maintenance:
    """Compact, checkpoint and vacuum the lake's table (see the module docstring)."""
    if retention_hours < 0:
        raise ValueError("retention_hours must be 0 or more")
    dt = table.open_table(root)
    if dt is None:
        return Maintenance(None, keep_from, dry_run=dry_run)
    if keep_from is not None and keep_from > dt.version():
        raise ValueError(f"the version to keep from, {keep_from}, is past the table's latest, {dt.version()}: "
                         "is this the lake the model versions trained on?")
    small = small_partitions(dt)
    checkpoint = None
    if not dry_run:
        for hour, status, _ in small:
            _compact(root, hour, status)
        dt = table.open_table(root)
        assert dt is not None
        with table.reading(dt.table_uri):
            dt.create_checkpoint()
        checkpoint = dt.version()
    first = keep_from if keep_from is not None else dt.version()
    with table.reading(dt.table_uri):
        gone = dt.vacuum(retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=False,
                         full=True, keep_versions=list(range(first, dt.version() + 1)),
                         post_commithook_properties=table.HOOKS)
    latest = table.open_table(root)
    return Maintenance(latest.version() if latest is not None else None, keep_from,
                       tuple(f"{h} {s}: {n} files" for h, s, n in small), checkpoint, tuple(sorted(gone)), dry_run)

