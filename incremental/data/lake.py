"""The lake: hourly Parquet partitions made of immutable parts, written atomically, described by a manifest.

Layout (all under the lake root):

    search_logs/dt=YYYY-MM-DD/hour=HH/part-0.parquet      the rows extracted first
    search_logs/dt=YYYY-MM-DD/hour=HH/part-1.parquet      a *delta*: rows that reached the warehouse for this
                                                          hour after it was extracted (late rows), or rows
                                                          re-admitted from quarantine
    search_logs/dt=YYYY-MM-DD/hour=HH/part-N.valid.parquet  a part after validation moved its bad rows out
    search_logs/dt=YYYY-MM-DD/hour=HH/_manifest.json      the parts (file, rows, sha256 each), the hour's
                                                          identity sha256, SQL hash, events (deltas, re-admissions)
    search_logs/dt=YYYY-MM-DD/hour=HH/_validation.json    written by validation: which parts are validated
    quarantine/search_logs/dt=YYYY-MM-DD/hour=HH/<sha12>/  a failed hour (or a failed delta part), moved here
                                                          whole, with the GX result and data docs
    quarantine/search_logs/dt=YYYY-MM-DD/hour=HH/rows/<part>-<sha12>/
                                                          rows.parquet: the bad rows of a part that was
                                                          validated, with a `quarantine_reason` column naming
                                                          the rule(s); extracted.parquet: the part as extracted

**Validated data is immutable.** A part is written once by extraction; validation may move its bad
rows out (before it is validated: the clean rows go to `part-N.valid.parquet`, the bad ones to
quarantine, the extracted file beside them), and from then on the part is never rewritten. Rows that
reach the warehouse for an hour after it was extracted become a new part (a delta) with its own
manifest entry, validated on its own; the hour's identity sha256 (`manifest["sha256"]`: the part's
sha256 when there is one part, else the sha256 of the list of parts) changes with it, so downstream
sees new data, and `manifest["identities"]` keeps every identity the hour ever had with its parts,
so a model version's lineage always resolves to bytes that still exist.

**Nothing is lost.** Every row of the warehouse for an hour is in exactly one place: a live part,
a row-quarantine set, or a quarantined hour/part (`lake_quarantine.row_counts()`; re-admitted sets
are marked, not counted twice). Extraction adds only the rows not yet accounted for (a multiset difference on the
impression columns), so re-extracting never duplicates.

`partition()` gives the hour's validated view (status *validated*: the validated parts only, a
pending delta is not part of it until it validates); *extracted* when nothing of it is validated
yet; *quarantined* when its latest attempt sits in quarantine; *missing* otherwise. Data files are
never deleted. Each file is published, and read back checked, through `incremental.data.files`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Unpack, cast

import pyarrow as pa

from incremental.data import files, lake_lock, storage
from incremental.data.manifest import (
    DeltaDetails,
    ExtractDetails,
    Manifest,
    ManifestEvent,
    PartDetails,
    PartEntry,
    PartIdentity,
)
from incremental.data.storage import LakePath
from incremental.errors import IncrementalError
from incremental.hours import HOUR, iso_hour, now_iso

SCHEMA_VERSION = 2
DATA_FILE = "part-0.parquet"  # the first part of an hour
QUARANTINE_FILE = "quarantine.json"
READMITTED_FILE = "readmitted.json"
ROWS_DIR = "rows"  # row-level quarantine sets, under the hour's quarantine root
REASON_COLUMN = "quarantine_reason"

# The contract of an extracted partition. Validation checks a partition against it exactly.
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
# What identifies an impression as it arrived (the catalogue columns come from a join and may be fixed later).
IMPRESSION_KEY = ("event_id", "event_ts", "ingested_at", "session_id", "user_id", "query", "product_id",
                  "position", "clicked")

Status = Literal["validated", "quarantined", "extracted", "missing"]


class LakeError(IncrementalError, RuntimeError):
    """A partition is missing, unreadable or inconsistent with its manifest."""


def hour_key(start: datetime) -> str:
    """The hour's folder under a lake root: ``dt=YYYY-MM-DD/hour=HH``."""
    return f"dt={start:%Y-%m-%d}/hour={start:%H}"


def partition_dir(lake: LakePath, start: datetime) -> LakePath:
    return lake / "search_logs" / hour_key(start)


def quarantine_root(lake: LakePath, start: datetime) -> LakePath:
    return lake / "quarantine" / "search_logs" / hour_key(start)


def rows_quarantine_root(lake: LakePath, start: datetime) -> LakePath:
    return quarantine_root(lake, start) / ROWS_DIR


def scratch_dir(lake: LakePath) -> Path:
    """Where validation stages GX results and data docs before they are moved next to the data
    (a local folder: inside a local lake, a temporary folder for a lake on object storage)."""
    return storage.scratch_dir(lake)


def hour_lock(lake: LakePath, start: datetime) -> AbstractContextManager[None]:
    """The lock every change to an hour takes (extraction, validation, re-admission): its manifest
    is read, changed and written again, so two workers on the same hour take turns. Shared by
    every worker that reaches the lake, local or on object storage (`lake_lock.lock`)."""
    return lake_lock.lock(lake, f"search_logs-{start:%Y%m%dT%H}")


def part_file(index: int) -> str:
    return f"part-{index}.parquet"


def check_sha256(path: LakePath, expected: str | None) -> str:
    """The file's sha256, after checking it is the one its manifest recorded (LakeError if not)."""
    actual = files.sha256_file(path)
    if actual != expected:
        raise LakeError(f"{path} does not match the sha256 in its manifest: the file changed after extraction")
    return actual


# --- manifests -------------------------------------------------------------------------------------
def read_manifest(folder: LakePath) -> Manifest:
    """The manifest of an hour's folder (live or in quarantine), checked (`files.check_manifest`)."""
    return cast(Manifest, files.read_json(folder / files.MANIFEST_FILE))


def identity(parts: Sequence[PartEntry | PartIdentity]) -> str:
    """The identity of a set of parts: the sha256 of the only part, else of the list of (file, sha256)."""
    if len(parts) == 1:
        return parts[0]["sha256"]
    digest = hashlib.sha256()
    for p in parts:
        digest.update(f"{p['file']}:{p['sha256']}\n".encode())
    return digest.hexdigest()


def parts_of(manifest: Mapping[str, Any]) -> list[PartEntry]:
    """The parts a manifest lists (a manifest written before parts existed has one: its file)."""
    if "parts" in manifest:
        return list(manifest["parts"])
    return [{"file": manifest.get("file", DATA_FILE), "rows": manifest.get("rows", 0), "sha256": manifest["sha256"],
             "bytes": manifest.get("bytes"), "kind": "initial"}]


def _remember_identity(manifest: Manifest) -> None:
    ids = manifest.setdefault("identities", [])
    sha = manifest["sha256"]
    if not any(i["sha256"] == sha for i in ids):
        ids.append({"sha256": sha, "parts": [{"file": p["file"], "sha256": p["sha256"]} for p in manifest["parts"]],
                    "at": now_iso()})


def finish_manifest(manifest: Manifest) -> Manifest:
    """Recompute what the parts determine: rows, identity, first file, bytes; remember the identity."""
    parts = manifest["parts"]
    manifest["schema_version"] = SCHEMA_VERSION
    manifest["rows"] = sum(int(p["rows"]) for p in parts)
    manifest["file"] = parts[0]["file"] if parts else DATA_FILE
    manifest["bytes"] = sum(int(p.get("bytes") or 0) for p in parts)
    manifest["sha256"] = identity(parts) if parts else hashlib.sha256(b"").hexdigest()
    _remember_identity(manifest)
    return manifest


def write_part(folder: LakePath, name: str, table: pa.Table, **details: Unpack[PartDetails]) -> PartEntry:
    """Write one part file (atomic, deterministic) and return its manifest entry."""
    path = folder / name
    files.write_parquet_atomic(path, table)
    return {"file": name, "rows": table.num_rows, "sha256": files.sha256_file(path), "bytes": storage.size(path),
            **details}


def write_partition(lake: LakePath, start: datetime, table: pa.Table, **details: Unpack[ExtractDetails]) -> Manifest:
    """Write an hour's first part and its manifest (a new hour, or one nothing of which is validated yet).

    The manifest holds the interval, the parts (file, rows, sha256), the hour's identity sha256 and
    schema version, plus `details` (the extractor adds the event_ts range, the SQL and its hash). It
    is written last: a folder without a manifest is an unfinished partition. Refuses to replace an
    hour that has validated parts: validated data is immutable (add a delta with `add_part`).
    """
    folder = partition_dir(lake, start)
    if validated_files(folder):
        raise LakeError(f"hour {iso_hour(start)} has validated data: it is never overwritten (add a delta part)")
    part = write_part(folder, DATA_FILE, table, kind="initial", extracted_at=details.get("extracted_at") or now_iso())
    manifest = cast(Manifest, {"interval_start": start.isoformat(), "interval_end": (start + HOUR).isoformat(),
                               "parts": [part], **details})  # the identity and totals: `finish_manifest`
    finish_manifest(manifest)
    files.atomic_write_json(folder / files.MANIFEST_FILE, manifest)
    return manifest


def add_part(lake: LakePath, start: datetime, table: pa.Table, *, kind: str, event: ManifestEvent,
             **details: Unpack[DeltaDetails]) -> Manifest:
    """Add a part to an hour (a delta of late rows, or re-admitted rows); pending parts are replaced.

    Validated parts are kept as they are; a part not validated yet is dropped from the manifest
    first (its rows are in `table` again: the caller computed what is not accounted for). Creates
    the hour's live folder when its earlier data sits in quarantine.
    """
    folder = partition_dir(lake, start)
    keep = validated_files(folder)
    manifest: Manifest = read_manifest(folder) if storage.is_file(folder / files.MANIFEST_FILE) else {
        "interval_start": start.isoformat(), "interval_end": (start + HOUR).isoformat(), "parts": []}
    parts = [p for p in parts_of(manifest) if p["file"] in keep]
    used = {p["file"] for p in parts_of(manifest)} | {p.name for p in storage.children(folder)
                                                      if p.name.startswith("part-") and p.name.endswith(".parquet")}
    index = 0
    while part_file(index) in used or part_file(index).replace(".parquet", ".valid.parquet") in used:
        index += 1
    part = write_part(folder, part_file(index), table, kind=kind, extracted_at=now_iso(), **details)
    manifest["parts"] = [*parts, part]
    manifest.setdefault("events", []).append({**event, "part": part["file"], "rows": table.num_rows, "at": now_iso()})
    finish_manifest(manifest)
    files.atomic_write_json(folder / files.MANIFEST_FILE, manifest)
    return manifest


def validated_files(folder: LakePath) -> list[str]:
    """The files of the hour's validated parts, in manifest order ([] when none)."""
    manifest_path, check = folder / files.MANIFEST_FILE, folder / files.VALIDATION_FILE
    if not storage.is_file(manifest_path) or not storage.is_file(check):
        return []
    manifest, record = files.read_json(manifest_path), files.read_json(check)
    parts = parts_of(manifest)
    if "parts" in record:
        names = set(record["parts"])
        chosen = [p for p in parts if p["file"] in names]
    else:  # a record naming only a sha256: it covers the whole manifest it was written for
        chosen = parts if record.get("sha256") == manifest.get("sha256") else []
    if not chosen or identity(chosen) != record.get("sha256"):
        return []
    return [p["file"] for p in chosen]


@dataclass(frozen=True)
class Partition:
    """Where one hour's data lives now, and what state it is in.

    For a validated hour, `manifest` is the validated view: `parts` lists only the validated parts
    and `sha256` is their identity (what training records as lineage); `pending_parts` counts
    parts extracted since and not validated yet.
    """

    start: datetime
    status: Status
    path: LakePath | None  # the folder holding the part files (live or quarantine), None when missing
    manifest: Manifest | None
    pending_parts: int = 0

    @property
    def end(self) -> datetime:
        return self.start + HOUR

    @property
    def data_file(self) -> LakePath:
        """The first part's file."""
        if self.path is None:
            raise LakeError(f"hour {iso_hour(self.start)} has no partition in the lake")
        return self.path / (self.manifest or {}).get("file", DATA_FILE)

    @property
    def parts(self) -> list[PartEntry]:
        return parts_of(self.manifest) if self.manifest else []

    @property
    def data_files(self) -> list[LakePath]:
        if self.path is None:
            raise LakeError(f"hour {iso_hour(self.start)} has no partition in the lake")
        return [self.path / p["file"] for p in self.parts]


def readmitted(folder: LakePath) -> bool:
    """Whether a quarantine folder (an attempt or a row set) was re-admitted (it stays, marked)."""
    return storage.is_file(folder / READMITTED_FILE)


def quarantine_attempts(lake: LakePath, start: datetime, *, include_readmitted: bool = False) -> list[LakePath]:
    """The hour's (or its parts') quarantine folders, oldest first."""
    found = [p for p in storage.children(quarantine_root(lake, start)) if storage.is_file(p / files.MANIFEST_FILE)
             and (include_readmitted or not readmitted(p))]
    return sorted(found, key=storage.mtime_ns)


def latest_quarantine(lake: LakePath, start: datetime) -> LakePath | None:
    attempts = quarantine_attempts(lake, start)
    return attempts[-1] if attempts else None


def partition(lake: LakePath, start: datetime) -> Partition:
    live = partition_dir(lake, start)
    if storage.is_file(live / files.MANIFEST_FILE):
        manifest = read_manifest(live)
        good = validated_files(live)
        if good:
            parts = [p for p in parts_of(manifest) if p["file"] in good]
            view: Manifest = {**manifest, "parts": parts, "rows": sum(int(p["rows"]) for p in parts),
                              "sha256": identity(parts), "file": parts[0]["file"],
                              "bytes": sum(int(p.get("bytes") or 0) for p in parts)}
            return Partition(start, "validated", live, view, len(parts_of(manifest)) - len(parts))
        return Partition(start, "extracted", live, manifest, len(parts_of(manifest)))
    quarantined = latest_quarantine(lake, start)
    if quarantined is not None:
        return Partition(start, "quarantined", quarantined, read_manifest(quarantined))
    return Partition(start, "missing", None, None)


def validated_partitions(lake: LakePath, before: datetime, window_hours: int) -> list[Partition]:
    """Validated hours in [before - window, before), oldest first."""
    found = [partition(lake, before - HOUR * k) for k in range(window_hours, 0, -1)]
    return [p for p in found if p.status == "validated"]


def read_parquet(path: LakePath) -> pa.Table:
    """A Parquet file of the lake (local or on object storage)."""
    return storage.read_parquet(path)


def missing_parts(part: Partition) -> list[str]:
    """The files of the hour's parts (for a validated hour: its validated parts) that are not in
    its folder: the lake is damaged (a deleted or lost file); [] for an hour in order."""
    if part.path is None:
        return []
    return [p["file"] for p in part.parts if not storage.is_file(part.path / p["file"])]


def read_part(path: LakePath, sha256: str | None, verify: bool = True) -> pa.Table:
    if not storage.is_file(path):
        raise LakeError(f"{path} is missing: the part its manifest lists is gone (the lake is damaged; restore the "
                        "file from a backup)")
    if verify and sha256 is not None:
        check_sha256(path, sha256)
    return read_parquet(path)


def read_partition(part: Partition, verify: bool = True) -> pa.Table:
    """Read all of a partition's parts (for a validated hour: its validated parts), checking each sha256."""
    if part.path is None or part.manifest is None:
        raise LakeError(f"hour {iso_hour(part.start)} has no partition in the lake")
    gone = missing_parts(part)
    if gone:
        raise LakeError(f"hour {iso_hour(part.start)} is damaged: its {part.status} part(s) {', '.join(gone)} "
                        f"missing from {part.path} (restore from a backup; `incremental partitions` lists such hours)")
    tables = [read_part(part.path / p["file"], p.get("sha256"), verify) for p in part.parts]
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="none") if tables else SEARCH_LOG_SCHEMA.empty_table()
