"""Quarantine beside the table: the records of what validation quarantined, and the extractions the
table cannot hold.

A quarantined *row* lives in the table (`status` quarantined, `quarantine_reason` naming the rules
it broke); what goes with it is a folder per quarantine event under
``quarantine/search_logs/dt=…/hour=HH/<id>/``: the report (`quarantine.json`), the full GX result
and GX's data docs. An extraction whose columns break the contract (or an empty hour) cannot be
rows of the table: it is staged (``staging/…/extracted.parquet``) for validation to judge, and
quarantined whole as ``rows.parquet`` in its event's folder. Re-admitted folders are marked
(`readmitted.json`), never deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from incremental.data import lake, storage, table
from incremental.data.files import atomic_write_json, write_parquet_atomic
from incremental.data.storage import LakePath
from incremental.hours import Hour


def new_event_dir(lake_root: LakePath, start: Hour, kind: str) -> LakePath:
    """A fresh folder for one quarantine event of the hour (`kind`: hour, rows, part, schema)."""
    return lake.quarantine_root(lake_root, start) / f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{kind}"


def record_event(target: LakePath, report: Mapping[str, Any], staged: Path | None = None) -> LakePath:
    """Write one quarantine event's folder: what validation staged (GX result, data docs), then its
    report last (a folder without a report is unfinished and not listed)."""
    storage.mkdir(target)
    if staged is not None:
        storage.put_tree(staged, target)
    atomic_write_json(target / lake.QUARANTINE_FILE, report)
    return target


@contextlib.contextmanager
def taken_back_on_failure(target: LakePath | None) -> Iterator[None]:
    """Remove a quarantine event's folder (written before its commit) when the commit fails."""
    try:
        yield
    except BaseException:
        if target is not None:
            storage.rmtree(target)
        raise


def stage_extraction(lake_root: LakePath, start: Hour, rows: pa.Table) -> LakePath:
    """Keep an extraction the table cannot hold (empty, or columns off the contract) for validation."""
    path = lake.staging_dir(lake_root, start) / lake.STAGED_FILE
    write_parquet_atomic(path, rows)
    return path


def quarantine_staged(lake_root: LakePath, start: Hour, report: Mapping[str, Any],
                      staged: Path | None = None) -> LakePath:
    """Move the hour's staged extraction to quarantine whole: its rows, report, GX result and docs."""
    source = lake.staged_file(lake_root, start)
    if source is None:
        raise lake.LakeError(f"hour {start} has no staged extraction to quarantine")
    target = new_event_dir(lake_root, start, "hour")
    storage.mkdir(target)
    storage.move(source, target / lake.QUARANTINED_ROWS_FILE)
    return record_event(target, report, staged)


def drop_staged(lake_root: LakePath, start: Hour) -> None:
    """Forget a staged extraction whose rows went into the table."""
    storage.rmtree(lake.staging_dir(lake_root, start))


def quarantined_file_tables(lake_root: LakePath, start: Hour) -> list[pa.Table]:
    return [lake.read_parquet(p) for p in lake.quarantined_files(lake_root, start)]


def row_counts(lake_root: LakePath, start: Hour) -> dict[str, int]:
    """Where the hour's rows are: live (validated + extracted), quarantined (in the table, and whole
    extractions the table cannot hold, staged ones counted as extracted)."""
    found = table.files_of(table.open_table(lake_root), start)
    count = {s: sum(f.rows for f in found if f.status == s) for s in (table.VALIDATED, table.EXTRACTED, table.QUARANTINED)}
    staged = lake.staged_file(lake_root, start)
    pending = count[table.EXTRACTED] + (lake.parquet_rows(staged) if staged is not None else 0)
    whole = sum(lake.parquet_rows(p) for p in lake.quarantined_files(lake_root, start))
    live = count[table.VALIDATED] + pending
    return {"live": live, "validated": count[table.VALIDATED], "extracted": pending,
            "quarantined_rows": count[table.QUARANTINED], "quarantined_whole": whole,
            "quarantined": count[table.QUARANTINED] + whole, "total": live + count[table.QUARANTINED] + whole}


def accounted_tables(lake_root: LakePath, start: Hour) -> list[pa.Table]:
    """Every row of the hour the lake holds (the table's rows of every status, quarantined
    extractions), as extracted: what re-extraction compares with. A staged extraction is not
    included: extracting again replaces it."""
    held = table.read_rows(table.open_table(lake_root), start, [table.VALIDATED, table.EXTRACTED, table.QUARANTINED])
    return [t for t in [held, *quarantined_file_tables(lake_root, start)] if t.num_rows]


def mark_readmitted(folder: LakePath, record: Mapping[str, object]) -> None:
    """Mark a quarantine folder re-admitted: it stays, and is no longer counted as quarantined."""
    atomic_write_json(folder / lake.READMITTED_FILE, record)
