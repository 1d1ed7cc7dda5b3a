"""Quarantine in the lake: moving a failed hour, a failed part or a part's bad rows out of the live
partition (nothing is ever deleted), marking what was re-admitted, and accounting for every row.

Layout and invariants: see `incremental.data.lake`. Every row of the warehouse for an hour is in exactly
one place: a live part, a row-quarantine set, or a quarantined hour/part (`row_counts`;
re-admitted sets are marked, not counted twice).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pyarrow as pa

from incremental.data import storage
from incremental.data.files import MANIFEST_FILE, atomic_write_json, read_json, write_parquet_atomic
from incremental.data.lake import (
    QUARANTINE_FILE,
    READMITTED_FILE,
    finish_manifest,
    partition_dir,
    parts_of,
    quarantine_attempts,
    quarantine_root,
    read_manifest,
    read_parquet,
    readmitted,
    rows_quarantine_root,
    validated_files,
    write_part,
)
from incremental.data.manifest import Manifest, PartDetails, PartEntry
from incremental.data.storage import LakePath
from incremental.hours import now_iso


# --- moving data to quarantine ------------------------------------------------------------------
def _move_into(staged: Path | None, target: LakePath) -> None:
    """Move what validation staged (GX result, data docs) into the target folder, replacing older copies."""
    if staged is None:
        return
    storage.put_tree(staged, target)


def _aside(target: LakePath) -> None:
    """The same identity was quarantined before (then re-admitted): keep the older copy, under another name."""
    if storage.exists(target):
        storage.move(target, target.with_name(f"{target.name}.{datetime.now(UTC):%Y%m%dT%H%M%S%f}"), last=MANIFEST_FILE)


def quarantine(lake: LakePath, start: datetime, report: Mapping[str, object], staged: Path | None = None) -> LakePath:
    """Move the hour's live folder to quarantine whole (nothing deleted); the report and staged files beside it.

    Idempotent and recoverable: the live folder moves with one rename, so a failure leaves it either
    live (validate again) or in quarantine; derived files (GX result, data docs) are staged outside
    the live folder and moved in afterwards, replacing those of an earlier, interrupted attempt.
    """
    live = partition_dir(lake, start)
    manifest = read_manifest(live)
    target = quarantine_root(lake, start) / manifest["sha256"][:12]
    _aside(target)
    storage.move(live, target, last=MANIFEST_FILE)
    _move_into(staged, target)
    atomic_write_json(target / QUARANTINE_FILE, report)
    return target


def quarantine_part(lake: LakePath, start: datetime, part: PartEntry, report: Mapping[str, object],
                    staged: Path | None = None) -> LakePath:
    """Move one pending part of an hour that has validated parts to quarantine; the hour keeps the others."""
    live = partition_dir(lake, start)
    manifest = read_manifest(live)
    target = quarantine_root(lake, start) / part["sha256"][:12]
    _aside(target)
    storage.mkdir(target)
    storage.move(live / part["file"], target / part["file"])
    part_manifest = cast(Manifest, {k: v for k, v in manifest.items() if k not in ("parts", "identities", "events")})
    part_manifest["parts"] = [part]
    atomic_write_json(target / MANIFEST_FILE, finish_manifest(part_manifest))
    manifest["parts"] = [p for p in parts_of(manifest) if p["file"] != part["file"]]
    manifest.setdefault("events", []).append({"event": "part_quarantined", "part": part["file"], "rows": part["rows"],
                                              "to": str(target), "at": now_iso()})
    atomic_write_json(live / MANIFEST_FILE, finish_manifest(manifest))
    _move_into(staged, target)
    atomic_write_json(target / QUARANTINE_FILE, report)
    return target


def quarantine_rows(lake: LakePath, start: datetime, part: PartEntry, clean: pa.Table, bad: pa.Table,
                    report: Mapping[str, Any], staged: Path | None = None) -> PartEntry:
    """Split a pending part: its bad rows (with their reason) to quarantine, the clean rows live.

    Order, so that a failure at any point leaves the hour consistent and validating again finishes
    the job: (1) the row set is written to quarantine (a folder named by the part's extracted sha256,
    replaced whole if an interrupted attempt left one); (2) the clean rows to `part-N.valid.parquet`;
    (3) the manifest entry points at the clean file and the row set: the commit; (4) the extracted
    file moves beside the row set. Returns the new manifest entry.
    """
    live = partition_dir(lake, start)
    stem = part["file"].removesuffix(".parquet")
    target = rows_quarantine_root(lake, start) / f"{stem}-{part['sha256'][:12]}"
    tmp = target.with_name(f".{target.name}.tmp")
    storage.rmtree(tmp)
    storage.mkdir(tmp)
    write_parquet_atomic(tmp / "rows.parquet", bad)
    _move_into(staged, tmp)
    atomic_write_json(tmp / QUARANTINE_FILE, report)
    storage.rmtree(target)  # an interrupted attempt on the same bytes: its files are rebuilt just now
    storage.move(tmp, target, last=QUARANTINE_FILE)
    clean_name = f"{stem}.valid.parquet"
    provenance = cast(PartDetails, {k: v for k, v in part.items() if k not in ("file", "rows", "sha256", "bytes")})
    entry = write_part(live, clean_name, clean, **provenance)
    entry.update({"extracted_file": part["file"], "extracted_sha256": part["sha256"], "extracted_rows": part["rows"],
                  "quarantined_rows": bad.num_rows, "row_quarantine": str(storage.relative_to(target, lake))})
    manifest = read_manifest(live)
    manifest["parts"] = [entry if p["file"] == part["file"] else p for p in parts_of(manifest)]
    manifest.setdefault("events", []).append({"event": "rows_quarantined", "part": part["file"], "rows": bad.num_rows,
                                              "rules": report.get("rules", {}), "to": str(target), "at": now_iso()})
    atomic_write_json(live / MANIFEST_FILE, finish_manifest(manifest))
    if storage.exists(live / part["file"]):
        storage.move(live / part["file"], target / "extracted.parquet")
    return entry


# --- where every row is -------------------------------------------------------------------------
def row_sets(lake: LakePath, start: datetime, *, include_readmitted: bool = False) -> list[LakePath]:
    """The hour's row-level quarantine sets that are committed (referenced by a manifest)."""
    referenced = set()
    folders = [partition_dir(lake, start)] + quarantine_attempts(lake, start, include_readmitted=True)
    for folder in folders:
        if storage.is_file(folder / MANIFEST_FILE):
            for p in parts_of(read_json(folder / MANIFEST_FILE)):
                if p.get("row_quarantine"):
                    referenced.add(lake / p["row_quarantine"])
    return sorted(p for p in referenced if storage.is_dir(p) and (include_readmitted or not readmitted(p)))


def row_counts(lake: LakePath, start: datetime) -> dict[str, int]:
    """Where the hour's rows are: live (validated + pending parts), quarantined (rows and whole attempts)."""
    live_dir = partition_dir(lake, start)
    live = 0
    if storage.is_file(live_dir / MANIFEST_FILE):
        live = sum(int(p["rows"]) for p in parts_of(read_json(live_dir / MANIFEST_FILE)))
    in_attempts = sum(int(p["rows"]) for a in quarantine_attempts(lake, start)
                      for p in parts_of(read_json(a / MANIFEST_FILE)))
    in_rows = sum(int(read_json(r / QUARANTINE_FILE).get("rows", 0)) for r in row_sets(lake, start))
    return {"live": live, "quarantined_rows": in_rows, "quarantined_whole": in_attempts,
            "quarantined": in_rows + in_attempts, "total": live + in_rows + in_attempts}


def accounted_tables(lake: LakePath, start: datetime) -> list[pa.Table]:
    """Every row of the hour the lake holds (validated parts, row sets, quarantined attempts), as extracted.

    Pending (not yet validated) parts are not included: extraction replaces them.
    """
    tables = []
    live = partition_dir(lake, start)
    good = set(validated_files(live))
    if good:
        for p in parts_of(read_json(live / MANIFEST_FILE)):
            if p["file"] in good:
                tables.append(read_parquet(live / p["file"]))
    for folder in row_sets(lake, start):
        tables.append(read_parquet(folder / "rows.parquet"))
    for attempt in quarantine_attempts(lake, start):
        for p in parts_of(read_json(attempt / MANIFEST_FILE)):
            tables.append(read_parquet(attempt / p["file"]))
    return tables


def mark_readmitted(folder: LakePath, record: Mapping[str, object]) -> None:
    """Mark a quarantine folder re-admitted: it stays, and is no longer counted as quarantined."""
    atomic_write_json(folder / READMITTED_FILE, record)
