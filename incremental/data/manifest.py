"""What extraction says it did to an hour (`extract_hour`'s result, handed to the next task).

The lake keeps no manifests of its own any more: the Delta table's log is the record (each
commit's ``custom_metadata`` carries the event, the hour, the SQL's hash and the rows' sha256).
"""

from __future__ import annotations

from typing import TypedDict


class ExtractDetails(TypedDict, total=False):
    """What extraction records about the rows it read: their event_ts range, columns, the SQL."""

    min_event_ts: str | None
    max_event_ts: str | None
    columns: dict[str, str]  # column -> Arrow type, as extracted
    sql_sha256: str
    sql: str  # the query's file, relative to the repository
    source: str  # the warehouse backend
    extracted_by: str
    extracted_at: str


class Manifest(ExtractDetails, total=False):
    """An extraction of an hour: what the warehouse gave and what went into the lake."""

    interval_start: str  # ISO times of the hour [start, end)
    interval_end: str
    rows: int  # the warehouse's rows of the hour, as extracted
    sha256: str  # their content hash (`table.rows_sha256`): the same rows give the same one
    delta_rows: int  # a re-extraction: the rows new to the lake (0: nothing new, nothing committed)
    version: int | None  # the table version holding them (None: staged, or nothing in the table)
    staged: str  # rows the table cannot hold, staged beside it for validation
    quarantined: str | None  # nothing new, and the hour sits in quarantine: where
