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
never deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Unpack, cast

import pyarrow as pa

from incremental.data import lake_lock, storage
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
from incremental.errors import DamagedStateError, IncrementalError
from incremental.hours import HOUR, iso_hour

SCHEMA_VERSION = 2
DATA_FILE = "part-0.parquet"  # the first part of an hour
MANIFEST_FILE = "_manifest.json"
VALIDATION_FILE = "_validation.json"
QUARANTINE_FILE = "quarantine.json"
READMITTED_FILE = "readmitted.json"
ROWS_DIR = "rows"  # row-level quarantine sets, under the hour's quarantine root
REASON_COLUMN = "quarantine_reason"
log = logging.getLogger(__name__)

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


def sha256_file(path: LakePath) -> str:
    return storage.sha256(path)


def check_sha256(path: LakePath, expected: str | None) -> str:
    """The file's sha256, after checking it is the one its manifest recorded (LakeError if not)."""
    actual = sha256_file(path)
    if actual != expected:
        raise LakeError(f"{path} does not match the sha256 in its manifest: the file changed after extraction")
    return actual


def atomic_write_bytes(path: LakePath, data: bytes) -> None:
    """Publish `data` at `path` atomically (temp file + fsync + rename locally; one PUT on S3)."""
    storage.write_bytes(path, data)


def atomic_write_json(path: LakePath, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: LakePath) -> dict[str, Any]:
    """A JSON object the pipeline keeps, checked against the schema of its kind (by file name: a
    manifest, a validation record; any other: an object). `DamagedStateError` naming the file and
    what is wrong when it is truncated, not JSON, or not its schema."""
    payload = _parse_json(path, storage.read_bytes(path))
    if not isinstance(payload, dict):
        raise DamagedStateError(f"{path} is damaged: a JSON object expected, found {_json_type(payload)}")
    problem = _SCHEMAS.get(path.name, lambda _: None)(payload)
    if problem:
        raise DamagedStateError(f"{path} is damaged: {problem}")
    return payload


def read_jsonl(path: LakePath, check: Callable[[Any], str | None] | None = None) -> list[dict[str, Any]]:
    """The records of a JSON-lines file ([] when there is none), each an object passing `check`
    (which returns what is wrong, or None).

    A torn *last* line (a crash in the middle of an append) is recovered by design: it is left out
    with a warning (`append_jsonl` moves it aside before the next line). A bad line anywhere else
    is damage: `DamagedStateError` naming the file, the line and what is wrong."""
    return _jsonl(path, check)[0]


def append_jsonl(path: LakePath, entry: Mapping[str, Any], check: Callable[[Any], str | None] | None = None) -> None:
    """Publish `path` with one line more (read, add, write: an object store has no append; the
    caller holds the lock). A torn last line is moved to `<name>.torn` (nothing is lost) so the
    new line starts on a line of its own; a bad line in the middle is refused (`read_jsonl`)."""
    _, lines, torn = _jsonl(path, check)
    if torn is not None:
        aside = path.parent / f"{path.name}.torn"
        before = storage.read_bytes(aside).decode(errors="replace") if storage.is_file(aside) else ""
        storage.write_bytes(aside, f"{before}{torn}\n".encode())
        log.warning("%s: its torn last line (a crash in the middle of an append) was moved to %s", path, aside)
    storage.write_bytes(path, "".join(f"{line}\n" for line in [*lines, json.dumps(entry, sort_keys=True, default=str)]).encode())


def _jsonl(path: LakePath, check: Callable[[Any], str | None] | None = None) -> tuple[
        list[dict[str, Any]], list[str], str | None]:
    """(records, their lines, the torn last line or None)."""
    if not storage.is_file(path):
        return [], [], None
    try:
        text = storage.read_bytes(path).decode()
    except UnicodeDecodeError as exc:
        raise DamagedStateError(f"{path} is damaged: not UTF-8 text (byte {exc.start})") from None
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    records: list[dict[str, Any]] = []
    lines: list[str] = []
    torn = None
    for i, (n, line) in enumerate(numbered):
        cut = False
        try:
            record = json.loads(line)
            problem = (f"a JSON object expected, found {_json_type(record)}" if not isinstance(record, dict)
                       else check(record) if check else None)
        except json.JSONDecodeError as exc:
            problem, cut = f"not valid JSON ({exc.msg}: column {exc.colno})", True
        if problem is None:
            records.append(record)
            lines.append(line)
        elif cut and i == len(numbered) - 1 and not text.endswith("\n"):
            torn = line  # the last append was cut short: recovered, not damage
            log.warning("%s: line %d is torn (a crash in the middle of an append); left out", path, n)
        else:
            raise DamagedStateError(f"{path} is damaged: line {n}: {problem}")
    return records, lines, torn


def _parse_json(path: LakePath, data: bytes) -> Any:
    if not data.strip():
        raise DamagedStateError(f"{path} is damaged: the file is empty")
    try:
        return json.loads(data)
    except UnicodeDecodeError as exc:
        raise DamagedStateError(f"{path} is damaged: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DamagedStateError(f"{path} is damaged: not valid JSON ({exc.msg}: line {exc.lineno} column "
                                f"{exc.colno}; truncated?)") from None


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _is_part_file(value: Any) -> bool:
    return isinstance(value, str) and value.endswith(".parquet") and "/" not in value and "\\" not in value \
        and not value.startswith(".")


def check_manifest(manifest: dict[str, Any]) -> str | None:
    """What is wrong with a manifest (None: nothing): its parts (file, rows, sha256 each), its identity."""
    if "parts" not in manifest:  # written before parts existed: one file
        if not _is_sha256(manifest.get("sha256")):
            return "no 'parts' and no 'sha256' of its file"
        return None
    parts = manifest["parts"]
    if not isinstance(parts, list):
        return f"'parts' must be a list, found {_json_type(parts)}"
    for i, part in enumerate(parts):
        if not isinstance(part, dict):
            return f"parts[{i}] must be an object, found {_json_type(part)}"
        if not _is_part_file(part.get("file")):
            return f"parts[{i}].file must be a Parquet file name in the hour's folder, found {part.get('file')!r}"
        if not _is_count(part.get("rows")):
            return f"parts[{i}].rows must be a count, found {part.get('rows')!r}"
        if not _is_sha256(part.get("sha256")):
            return f"parts[{i}].sha256 must be a sha256 (64 hex digits), found {part.get('sha256')!r}"
    if parts and not _is_sha256(manifest.get("sha256")):
        return f"'sha256' (the hour's identity) must be a sha256, found {manifest.get('sha256')!r}"
    for key in ("events", "identities"):
        if key in manifest and not (isinstance(manifest[key], list) and all(isinstance(e, dict) for e in manifest[key])):
            return f"'{key}' must be a list of objects"
    return None


def check_validation(record: dict[str, Any]) -> str | None:
    """What is wrong with a validation record (None: nothing): the parts it validated, its identity, its checks."""
    if "parts" in record and not (isinstance(record["parts"], list) and all(_is_part_file(p) for p in record["parts"])):
        return f"'parts' must be a list of Parquet file names, found {record['parts']!r:.200}"
    if "sha256" not in record or not (record["sha256"] is None or _is_sha256(record["sha256"])):
        return f"'sha256' must be the validated parts' sha256, found {record.get('sha256')!r}"
    checks = record.get("checks", [])
    fields = {"rule", "column", "severity", "success", "unexpected", "message"}
    if not isinstance(checks, list):
        return f"'checks' must be a list, found {_json_type(checks)}"
    for i, c in enumerate(checks):
        if not isinstance(c, dict) or set(c) != fields:
            return f"checks[{i}] must be an object with exactly {', '.join(sorted(fields))}"
    for key in ("rows", "live_rows", "bad_rows"):
        if record.get(key) is not None and not _is_count(record[key]):
            return f"'{key}' must be a count, found {record[key]!r}"
    return None


_SCHEMAS: dict[str, Callable[[dict[str, Any]], str | None]] = {MANIFEST_FILE: check_manifest,
                                                               VALIDATION_FILE: check_validation}


def write_parquet_atomic(path: LakePath, table: pa.Table) -> None:
    """Deterministic Parquet (same table -> same bytes), published atomically (see `storage.write_parquet`)."""
    storage.write_parquet(
        path,
        table.replace_schema_metadata(None),
        compression="zstd",
        row_group_size=256 * 1024,
        write_statistics=True,
        store_schema=True,
    )


def now_iso() -> str:
    """The current UTC time to the second, for `at` and `extracted_at` fields (a moment, not an hour)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- manifests -------------------------------------------------------------------------------------
def read_manifest(folder: LakePath) -> Manifest:
    """The manifest of an hour's folder (live or in quarantine), checked (`check_manifest`)."""
    return cast(Manifest, read_json(folder / MANIFEST_FILE))


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
    write_parquet_atomic(path, table)
    return {"file": name, "rows": table.num_rows, "sha256": sha256_file(path), "bytes": storage.size(path),
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
    atomic_write_json(folder / MANIFEST_FILE, manifest)
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
    manifest: Manifest = read_manifest(folder) if storage.is_file(folder / MANIFEST_FILE) else {
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
    atomic_write_json(folder / MANIFEST_FILE, manifest)
    return manifest


def validated_files(folder: LakePath) -> list[str]:
    """The files of the hour's validated parts, in manifest order ([] when none)."""
    manifest_path, check = folder / MANIFEST_FILE, folder / VALIDATION_FILE
    if not storage.is_file(manifest_path) or not storage.is_file(check):
        return []
    manifest, record = read_json(manifest_path), read_json(check)
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
    found = [p for p in storage.children(quarantine_root(lake, start)) if storage.is_file(p / MANIFEST_FILE)
             and (include_readmitted or not readmitted(p))]
    return sorted(found, key=storage.mtime_ns)


def latest_quarantine(lake: LakePath, start: datetime) -> LakePath | None:
    attempts = quarantine_attempts(lake, start)
    return attempts[-1] if attempts else None


def partition(lake: LakePath, start: datetime) -> Partition:
    live = partition_dir(lake, start)
    if storage.is_file(live / MANIFEST_FILE):
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
