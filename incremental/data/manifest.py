"""The shape of an hour's manifest (`_manifest.json`), as `incremental.data.lake` writes and reads it.

A manifest lists the hour's parts (file, rows, sha256 each, and where each came from), the hour's
identity (`sha256`: the one part's, else that of the list of parts) and every identity it ever had,
the events that changed it (a delta, a re-admission, rows or a part moved to quarantine), and what
extraction recorded (the SQL, its hash, the event_ts range, the columns). `files.check_manifest`
checks a file against the parts of it every reader relies on; these types say what the pipeline
writes. Keys of older manifests are optional.
"""

from __future__ import annotations

from typing import TypedDict


class DeltaDetails(TypedDict, total=False):
    """What a delta part records about its rows."""

    min_event_ts: str | None
    max_event_ts: str | None
    columns: dict[str, str]  # column -> Arrow type, as extracted
    sql_sha256: str


class ExtractDetails(DeltaDetails, total=False):
    """What extraction records in the manifest of an hour it writes."""

    sql: str  # the query's file, relative to the repository
    source: str  # the warehouse backend
    extracted_by: str
    extracted_at: str


class PartDetails(ExtractDetails, total=False):
    """What a part's entry records besides its file, rows and sha256."""

    kind: str  # "initial" | "delta" | "readmitted"
    # validation moved the part's bad rows out: the file as extracted, and the row set (a lake key)
    extracted_file: str
    extracted_sha256: str
    extracted_rows: int
    quarantined_rows: int
    row_quarantine: str


class PartEntry(PartDetails):
    """One part of the hour: an immutable Parquet file in the hour's folder."""

    file: str
    rows: int
    sha256: str
    bytes: int | None


class PartIdentity(TypedDict):
    file: str
    sha256: str


class Identity(TypedDict):
    """An identity the hour had: what a model version's lineage may name."""

    sha256: str
    parts: list[PartIdentity]
    at: str


class ManifestEvent(TypedDict, total=False):
    """A change to the hour: a delta, a re-admission, a part or rows moved to quarantine."""

    event: str  # "delta" | "readmit" | "part_quarantined" | "rows_quarantined"
    why: str
    reason: str  # a re-admission: what was fixed
    sources: list[str]  # a re-admission: the quarantine folders its rows came from
    rules: dict[str, int]  # rows quarantined: rule -> failing rows
    part: str
    rows: int
    to: str
    at: str


class Manifest(ExtractDetails, total=False):
    """An hour's `_manifest.json`: its parts, its identity, its history."""

    interval_start: str  # ISO times of the hour [start, end)
    interval_end: str
    parts: list[PartEntry]
    sha256: str  # the hour's identity
    rows: int
    file: str  # the first part's file
    bytes: int
    schema_version: int
    identities: list[Identity]
    events: list[ManifestEvent]
    # what `extract_hour` adds to the manifest it returns (not stored)
    delta_rows: int
    quarantined: str | None
