"""Extract one hour of search logs from the warehouse into the lake.

`sql/extract_search_logs.sql` selects the rows *ingested* in [start, end) (late events land in
the hour they arrived; nothing falls between hours), joined with the catalogue. The result is
conformed to `lake.SEARCH_LOG_SCHEMA` where that is a lossless change of representation
(integer width, timestamp unit, string kind) and left as it is otherwise, so a schema change
in the warehouse reaches validation, which quarantines it, instead of being cast away here.
The Parquet file is written atomically and deterministically: re-extracting the same hour
gives the same bytes and the same sha256.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from incremental import __version__, lake
from incremental.warehouse import Warehouse, sql_text

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


def _details(table: pa.Table, backend: str) -> dict[str, Any]:
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
        "extracted_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def extract_hour(warehouse: Warehouse, lake_root: Path, start: datetime) -> dict[str, Any]:
    """Write the partition for the hour starting at `start` and return its manifest.

    An empty hour gives an empty partition (with the schema) and its manifest, not an error.
    """
    start = lake.parse_hour(start)
    end = start + lake.HOUR
    table = warehouse.query_arrow(EXTRACT_SQL, {"start": start, "end": end})
    if table.num_rows == 0 and any(pa.types.is_null(f.type) for f in table.schema):
        table = lake.SEARCH_LOG_SCHEMA.empty_table()  # a backend that cannot type an empty result
    table = conform(table)
    manifest = lake.write_partition(lake_root, start, table, **_details(table, warehouse.backend))
    log.info("extracted %s: %d rows, sha256 %s", lake.hour_key(start), table.num_rows, manifest["sha256"][:12])
    return manifest


def warehouse_count(warehouse: Warehouse, start: datetime) -> int:
    """Rows the warehouse holds for the hour (by ingested_at): what the partition must hold."""
    start = lake.parse_hour(start)
    return int(warehouse.scalar("count_search_logs", {"start": start, "end": start + lake.HOUR}))
