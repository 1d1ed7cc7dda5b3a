"""Extract one hour of search logs from the warehouse into the lake.

`sql/extract_search_logs.sql` selects the rows *ingested* in [start, end) (late events land in
the hour they arrived; nothing falls between hours), joined with the catalogue. The result is
conformed to `lake.SEARCH_LOG_SCHEMA` where that is a lossless change of representation
(integer width, timestamp unit, string kind) and left as it is otherwise, so a schema change
in the warehouse reaches validation, which quarantines it, instead of being cast away here
(such rows are staged beside the table: the table holds only rows of the contract).

The rows go into the lake's Delta table (`incremental.data.table`) as one append, status
*extracted*. Validated data is never overwritten. Re-extracting an hour (a backfill, `run-hour`,
a sweep for late rows) appends only the rows the lake does not hold yet (validated on their own);
when there are none, nothing is committed. Which rows are new is a multiset difference on the impression columns
(`lake.IMPRESSION_KEY`), so an exact replay of a row is still caught by validation's duplicate
checks rather than hidden here, and a catalogue fix (title, brand) does not make a row "new".
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from incremental import __version__
from incremental.data import lake, table
from incremental.data import quarantine as lake_quarantine
from incremental.data.manifest import ExtractDetails, Manifest
from incremental.data.storage import LakePath
from incremental.data.warehouse import Warehouse, sql_text
from incremental.errors import InputError
from incremental.hours import HOUR, Hour, now_iso

log = logging.getLogger(__name__)
EXTRACT_SQL = "extract_search_logs"


def _same_family(have: pa.DataType, want: pa.DataType) -> bool:
    if pa.types.is_integer(have) and pa.types.is_integer(want):
        return True
    if pa.types.is_floating(have) and pa.types.is_floating(want):
        return True
    if pa.types.is_timestamp(have) and pa.types.is_timestamp(want):
        return True
    string = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
    if any(f(have) for f in string) and any(f(want) for f in string):
        return True
    return pa.types.is_null(have)  # an all-null column from a backend that could not type it


def conform(table: pa.Table) -> pa.Table:
    """Cast columns to the lake schema when only the representation differs; keep the rest as is."""
    wanted = {f.name: f.type for f in lake.SEARCH_LOG_SCHEMA}
    columns, fields = [], []
    for name in table.column_names:
        column = table.column(name)
        target = wanted.get(name)
        if target is not None and column.type != target and _same_family(column.type, target):
            column = column.cast(target)
        columns.append(column)
        fields.append(pa.field(name, column.type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _details(table: pa.Table, backend: str) -> ExtractDetails:
    """What the extractor adds to the manifest: the event_ts range, the SQL and where it ran."""
    event_ts = table.column("event_ts") if "event_ts" in table.column_names else None
    bounds = pc.min_max(event_ts) if event_ts is not None and table.num_rows else None
    return {
        "min_event_ts": bounds["min"].as_py().isoformat() if bounds and bounds["min"].is_valid else None,
        "max_event_ts": bounds["max"].as_py().isoformat() if bounds and bounds["max"].is_valid else None,
        "sql": f"sql/{EXTRACT_SQL}.sql",
        "sql_sha256": hashlib.sha256(sql_text(EXTRACT_SQL).encode()).hexdigest(),
        "columns": {f.name: str(f.type) for f in table.schema},
        "source": backend,
        "extracted_by": f"incremental {__version__}",
        "extracted_at": now_iso(),
    }


def fingerprints(table: pa.Table) -> np.ndarray:
    """A 64-bit hash per row of the impression columns (types normalised to text, so nulls and
    integer widths do not change it)."""
    columns = {}
    for name in lake.IMPRESSION_KEY:
        if name in table.column_names:
            column = table.column(name)
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                column = pc.cast(column, pa.string())
            columns[name] = column.to_pandas().astype(object)
    frame = pd.DataFrame(columns)
    if frame.empty:
        return np.zeros(table.num_rows, dtype=np.uint64)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def new_rows(table: pa.Table, accounted: list[pa.Table]) -> pa.Table:
    """The rows of `table` not in `accounted`, as a multiset (two identical rows, one accounted: one is new)."""
    if not accounted:
        return table
    held = pd.Series(np.concatenate([fingerprints(t) for t in accounted])).value_counts()
    fresh = pd.Series(fingerprints(table))
    rank = fresh.groupby(fresh).cumcount().to_numpy()
    keep = rank >= fresh.map(held).fillna(0).to_numpy()
    return table.filter(pa.array(keep))


def extract_hour(warehouse: Warehouse, lake_root: LakePath, start: Hour) -> Manifest:
    """Append the hour's rows the lake does not hold yet to the table (one commit, or none) and say what was done.

    The first extraction of an hour appends all its rows; a later one (a backfill, a sweep for late
    rows) appends only the new ones (`delta_rows`; 0: nothing new, nothing committed). `sha256` is
    the hour's rows as the warehouse gave them, so extracting unchanged data gives the same one. An
    empty hour, or rows whose columns break the contract, cannot be rows of the table: they are
    staged for validation to judge (`incremental.data.quarantine.stage_extraction`). `start` is an
    `incremental.hours.Hour`, as the CLI and the DAGs parse it.
    """
    end = start + HOUR
    now = datetime.now(UTC)
    if end > now:  # its rows are still arriving: a partition of it would be cut short, then "validated"
        raise InputError(f"hour {start} has not closed yet (it ends at {end}; now is "
                         f"{now:%Y-%m-%dT%H:%MZ}): an hour is extracted after it ends")
    rows = warehouse.query_arrow(EXTRACT_SQL, {"start": start, "end": end})
    if rows.num_rows == 0 and any(pa.types.is_null(f.type) for f in rows.schema):
        rows = lake.SEARCH_LOG_SCHEMA.empty_table()  # a backend that cannot type an empty result
    return write_rows(lake_root, start, conform(rows), warehouse.backend)


def fits_table(rows: pa.Table) -> bool:
    """Whether rows can be rows of the table: some, with exactly the contract's columns and types."""
    return rows.num_rows > 0 and rows.schema.remove_metadata().equals(lake.SEARCH_LOG_SCHEMA)


def write_rows(lake_root: LakePath, start: Hour, rows: pa.Table, source: str = "arrow") -> Manifest:
    """Put an hour's rows, as a warehouse gave them (`source`), into the lake (see `extract_hour`):
    the new ones appended, or staged, or nothing. Takes the hour's lock."""
    with lake.hour_lock(lake_root, start):
        return _write(lake_root, start, rows, source)


def _write(lake_root: LakePath, start: Hour, rows: pa.Table, source: str) -> Manifest:
    details = _details(rows, source)
    summary = cast(Manifest, dict(details))
    summary["interval_start"], summary["interval_end"] = start.isoformat(), (start + HOUR).isoformat()
    fits = fits_table(rows)
    whole = table.NewFile(table.EXTRACTED, rows.num_rows, table.encode(table.with_status(rows, start, table.EXTRACTED))) \
        if fits else None
    # the same rows give the same sha256: of the data file they make (of their plain encoding when they cannot be one)
    summary["rows"], summary["sha256"] = rows.num_rows, whole.sha256 if whole else table.rows_sha256(rows)
    accounted = lake_quarantine.accounted_tables(lake_root, start)
    history = bool(accounted) or bool(lake.quarantine_attempts(lake_root, start, include_readmitted=True))
    delta = new_rows(rows, accounted)
    if history and delta.num_rows == 0:
        part = lake.partition(lake_root, start)
        log.info("extracted %s: nothing new (%d rows already in the lake)", lake.hour_key(start), rows.num_rows)
        summary["delta_rows"], summary["version"] = 0, part.version
        summary["quarantined"] = str(part.path) if part.status == "quarantined" else None
        return summary
    if history:
        summary["delta_rows"] = delta.num_rows
    if not fits_table(delta):
        staged = lake_quarantine.stage_extraction(lake_root, start, delta)
        log.info("extracted %s: %d rows staged for validation (%s)", lake.hour_key(start), delta.num_rows, staged)
        summary["staged"] = str(staged)
        return summary
    lake_quarantine.drop_staged(lake_root, start)  # an earlier extraction of rows that did not fit
    event = "late_rows" if history else "extract"
    new = whole if not history and whole is not None else \
        table.NewFile(table.EXTRACTED, delta.num_rows, table.encode(table.with_status(delta, start, table.EXTRACTED)))
    version = table.append_files(lake_root, start, [new], event, {
        "sql_sha256": details["sql_sha256"], "rows_sha256": new.sha256, "rows": str(delta.num_rows),
        "source": details["source"], "extracted_by": details["extracted_by"],
        "min_event_ts": details["min_event_ts"], "max_event_ts": details["max_event_ts"]})
    log.info("extracted %s: %d rows (%s), table version %d", lake.hour_key(start), delta.num_rows,
             "new" if history else "extracted", version)
    summary["version"] = version
    return summary


def warehouse_count(warehouse: Warehouse, start: Hour) -> int:
    """Rows the warehouse holds for the hour (by ingested_at): what the partition must hold."""
    return int(warehouse.scalar("count_search_logs", {"start": start, "end": start + HOUR}))
