"""Migrate a lake in the format before Delta Lake (schema 2) into the `search_logs` table: `incremental migrate-lake`.

The old format kept each hour in ``search_logs/dt=…/hour=…/``: Parquet parts, ``_manifest.json``
(the parts, their sha256) and ``_validation.json`` (which parts are validated); quarantined hours
and parts in ``quarantine/search_logs/dt=…/hour=…/<sha12>/`` (parts, manifest, `quarantine.json`),
a part's bad rows in ``…/rows/<part>-<sha12>/rows.parquet`` (with `quarantine_reason`). Re-admitted
folders were marked ``readmitted.json`` (their rows are a live part since).

Migration moves the old ``search_logs/`` aside to ``search_logs.v2/`` (kept: nothing is deleted), then
appends each hour to the table in one commit (event ``migrate``): validated parts as *validated*,
the others as *extracted*, row sets and quarantined hours as *quarantined* with their reasons. A
quarantined hour whose columns the table cannot hold stays a file (`rows.parquet` in its quarantine
folder, as the new format keeps such rows). The hour's validation record is copied beside the table (pending until its commit is made, so that a
migration killed in between is finished by the next run).
Each hour's rows are counted against the old format's before its commit; an interrupted migration
is run again and skips the hours the table holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypedDict

import pyarrow as pa

from incremental.data import files, lake, storage, table
from incremental.data import quarantine as lake_quarantine
from incremental.data.storage import LakePath
from incremental.errors import IncrementalError, InputError
from incremental.hours import Hour, parse_hour

OLD = "search_logs.v2"  # where the old hours are kept after the move
MANIFEST, VALIDATION = files.MANIFEST_FILE, files.VALIDATION_FILE  # checked when read (`files.read_json`)


class MigrationError(IncrementalError, RuntimeError):
    """An hour of the old lake does not add up (its files against its manifest): nothing of it committed."""


@dataclass(frozen=True)
class MigratedHour:
    start: Hour
    validated: int
    extracted: int
    quarantined: int
    kept_as_file: int  # quarantined rows the table cannot hold (their file stays)
    version: int | None  # the commit; None: already in the table, or nothing to commit


def old_hours(lake_root: LakePath) -> Iterator[Hour]:
    """The hours the old format holds (live or only in quarantine), oldest first."""
    found = set()
    for base in (lake_root / OLD, lake_root / "quarantine" / table.TABLE):
        for day in storage.children(base):
            for hour in storage.children(day):
                if day.name.startswith("dt=") and hour.name.startswith("hour="):
                    found.add(parse_hour(f"{day.name[3:]}T{hour.name[5:]}:00+00:00"))
    return iter(sorted(found))


class OldPart(TypedDict):
    """A Parquet part of an old hour, as its ``_manifest.json`` lists it (a single-part manifest: itself)."""

    file: str  # in the hour's folder
    rows: int | None
    sha256: str


def _parts(folder: LakePath) -> list[OldPart]:
    manifest = files.read_json(folder / MANIFEST)
    parts: list[OldPart] = manifest.get("parts") or [
        {"file": manifest.get("file", "part-0.parquet"), "rows": manifest.get("rows"), "sha256": manifest["sha256"]}]
    return list(parts)


def _validated_names(folder: LakePath, parts: list[OldPart]) -> set[str]:
    if not storage.is_file(folder / VALIDATION):
        return set()
    record = files.read_json(folder / VALIDATION)
    if "parts" in record:
        return set(record["parts"])
    manifest = files.read_json(folder / MANIFEST)
    return {p["file"] for p in parts} if record.get("sha256") == manifest.get("sha256") else set()


def _read(path: LakePath, expected_rows: int | None = None) -> pa.Table:
    rows = lake.read_parquet(path)
    if expected_rows is not None and rows.num_rows != int(expected_rows):
        raise MigrationError(f"{path} holds {rows.num_rows} rows, its manifest says {expected_rows}: fix the old "
                             "lake first; nothing of this hour was migrated")
    return rows


def _fits(rows: pa.Table) -> bool:
    try:
        rows.select(lake.SEARCH_LOG_SCHEMA.names).cast(lake.SEARCH_LOG_SCHEMA)
        return True
    except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def _quarantined(lake_root: LakePath, start: Hour) -> tuple[list[pa.Table], int]:
    """The hour's quarantined rows as table rows, and how many stay files (columns off the contract)."""
    out, kept = [], 0
    root = lake.quarantine_root(lake_root, start)
    for attempt in storage.children(root):
        if not storage.is_file(attempt / MANIFEST) or lake.readmitted(attempt):
            continue
        report = files.read_json(attempt / lake.QUARANTINE_FILE) if storage.is_file(attempt / lake.QUARANTINE_FILE) else {}
        reason = ";".join(sorted({f.get("rule", "") for f in report.get("failures", []) if f.get("rule")})) or "quarantined"
        for part in _parts(attempt):
            rows = _read(attempt / part["file"], part.get("rows"))
            if _fits(rows) and rows.num_rows:
                out.append(table.with_status(rows, start, table.QUARANTINED, pa.array([reason] * rows.num_rows)))
            elif rows.num_rows or not storage.is_file(attempt / lake.QUARANTINED_ROWS_FILE):
                files.write_parquet_atomic(attempt / lake.QUARANTINED_ROWS_FILE, rows)  # as the new format keeps it
                kept += rows.num_rows
    for row_set in storage.children(root / "rows"):
        if storage.is_file(row_set / "rows.parquet") and not lake.readmitted(row_set):
            rows = _read(row_set / "rows.parquet")
            out.append(table.with_status(rows, start, table.QUARANTINED, rows.column(lake.REASON_COLUMN).combine_chunks()))
    return out, kept


def migrate_hour(lake_root: LakePath, start: Hour) -> MigratedHour:
    """One hour of the old format appended to the table in one commit (skipped when the table holds it).

    Its validation record is written pending before the commit, named by it, and published after
    (`quarantine.write_record`, `finish_record`): a migration killed in between leaves it for the next
    run's `quarantine.repair`, instead of an hour in the table without its record."""
    if table.files_of(table.open_table(lake_root), start):
        lake_quarantine.repair(lake_root, start)  # a record left pending by a killed run: finished now
        return MigratedHour(start, 0, 0, 0, 0, None)
    live = lake_root / OLD / lake.hour_key(start)
    rows: list[pa.Table] = []
    counts = {table.VALIDATED: 0, table.EXTRACTED: 0}
    if storage.is_file(live / MANIFEST):
        parts = _parts(live)
        validated = _validated_names(live, parts)
        for part in parts:
            status = table.VALIDATED if part["file"] in validated else table.EXTRACTED
            got = _read(live / part["file"], part.get("rows"))
            counts[status] += got.num_rows
            rows.append(table.with_status(got, start, status))
    quarantined, kept = _quarantined(lake_root, start)
    rows += quarantined
    n_quarantined = sum(t.num_rows for t in quarantined)
    record = _old_record(live, start) if storage.is_file(live / VALIDATION) else None
    version = None
    if any(t.num_rows for t in rows):
        named = lake_quarantine.write_record(lake_root, start, record) if record is not None else {}
        with lake_quarantine.taken_back_on_failure(lake.partition_dir(lake_root, start) / files.PENDING_VALIDATION_FILE
                                                   if named else None):
            version = table.append(lake_root, start, pa.concat_tables(rows), "migrate",
                                   {"from": f"{OLD}/{lake.hour_key(start)}", "schema_version": "2", **named})
        if record is not None:
            lake_quarantine.finish_record(lake_root, start, record, lake.partition(lake_root, start))
    elif record is not None:  # nothing for the table: the record as it was
        files.atomic_write_json(lake.partition_dir(lake_root, start) / files.VALIDATION_FILE,
                                {**record, "sha256": None, "version": None})
    return MigratedHour(start, counts[table.VALIDATED], counts[table.EXTRACTED], n_quarantined, kept, version)


def _old_record(live: LakePath, start: Hour) -> dict[str, Any]:
    record = {k: v for k, v in files.read_json(live / VALIDATION).items() if k not in ("parts", "sha256")}
    return {**record, "migrated_from": f"{OLD}/{lake.hour_key(start)}"}


def migrate(lake_root: LakePath) -> list[MigratedHour]:
    """The whole old lake into the table, hour by hour (see the module docstring)."""
    current, aside = lake_root / table.TABLE, lake_root / OLD
    if storage.is_dir(current) and not storage.exists(current / "_delta_log"):
        if storage.exists(aside):
            raise InputError(f"{aside} exists already and {current} is not a Delta table: move one of them aside first")
        storage.move(current, aside, last=MANIFEST)  # the old hours, kept
    elif not storage.exists(aside):
        raise InputError(f"{lake_root} holds no lake in the old format ({current}/dt=…/hour=…/{MANIFEST})")
    return [migrate_hour(lake_root, start) for start in old_hours(lake_root)]
