"""The lake: one Parquet partition per hour, written atomically, described by a manifest.

Layout (all under the lake root):

    search_logs/dt=YYYY-MM-DD/hour=HH/part-0.parquet   the extracted rows
    search_logs/dt=YYYY-MM-DD/hour=HH/_manifest.json   rows, event_ts range, sha256, schema version, SQL hash
    search_logs/dt=YYYY-MM-DD/hour=HH/_validation.json written by validation when the hour passed
    quarantine/search_logs/dt=YYYY-MM-DD/hour=HH/<sha12>/  a failed hour, moved here whole, with the GX result

An hour is *validated* when its live folder holds a `_validation.json` for the same sha256 as
its manifest; *quarantined* when its latest attempt sits in quarantine; *extracted* when it was
written but not yet validated; *missing* otherwise. Nothing is ever deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
DATA_FILE = "part-0.parquet"
MANIFEST_FILE = "_manifest.json"
VALIDATION_FILE = "_validation.json"
HOUR = timedelta(hours=1)

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

Status = Literal["validated", "quarantined", "extracted", "missing"]


class LakeError(RuntimeError):
    """A partition is missing, unreadable or inconsistent with its manifest."""


def parse_hour(text: str | datetime) -> datetime:
    """An ISO time (naive means UTC) that must fall on the hour; returns an aware UTC datetime."""
    value = datetime.fromisoformat(text) if isinstance(text, str) else text
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if (value.minute, value.second, value.microsecond) != (0, 0, 0):
        raise ValueError(f"{text!r} is not on the hour: intervals are whole UTC hours")
    # a plain datetime, whatever came in (Airflow hands out pendulum DateTimes)
    return datetime(value.year, value.month, value.day, value.hour, tzinfo=UTC)


def iso_hour(hour: datetime) -> str:
    """The one way an hour is written in records and messages: ``2026-01-01T09:00Z``."""
    return f"{hour:%Y-%m-%dT%H:%MZ}"


def hours(start: datetime, end: datetime) -> list[datetime]:
    """The hour starts in [start, end)."""
    out, hour = [], start
    while hour < end:
        out.append(hour)
        hour += HOUR
    return out


def hour_key(start: datetime) -> str:
    return f"dt={start:%Y-%m-%d}/hour={start:%H}"


def partition_dir(lake: Path, start: datetime) -> Path:
    return lake / "search_logs" / hour_key(start)


def quarantine_root(lake: Path, start: datetime) -> Path:
    return lake / "quarantine" / "search_logs" / hour_key(start)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def write_parquet_atomic(path: Path, table: pa.Table) -> None:
    """Deterministic Parquet (same table -> same bytes), written via temp file + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(
            table.replace_schema_metadata(None),
            tmp,
            compression="zstd",
            row_group_size=256 * 1024,
            write_statistics=True,
            store_schema=True,
        )
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_partition(lake: Path, start: datetime, table: pa.Table, **details: Any) -> dict[str, Any]:
    """Write an hour's partition: the Parquet file (atomic, deterministic), then its manifest.

    The manifest holds the interval, rows, file, sha256 and schema version, plus `details`
    (the extractor adds the event_ts range, the SQL and its hash). It is written last: a folder
    without a manifest is an unfinished partition.
    """
    folder = partition_dir(lake, start)
    data_file = folder / DATA_FILE
    write_parquet_atomic(data_file, table)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "interval_start": start.isoformat(),
        "interval_end": (start + HOUR).isoformat(),
        "rows": table.num_rows,
        "file": DATA_FILE,
        "sha256": sha256_file(data_file),
        "bytes": data_file.stat().st_size,
        **details,
    }
    atomic_write_json(folder / MANIFEST_FILE, manifest)
    return manifest


@dataclass(frozen=True)
class Partition:
    """Where one hour's data lives now, and what state it is in."""

    start: datetime
    status: Status
    path: Path | None  # the folder holding part-0.parquet (live or quarantine), None when missing
    manifest: dict[str, Any] | None

    @property
    def end(self) -> datetime:
        return self.start + HOUR

    @property
    def data_file(self) -> Path:
        if self.path is None:
            raise LakeError(f"hour {self.start:%Y-%m-%dT%H:00Z} has no partition in the lake")
        return self.path / DATA_FILE


def latest_quarantine(lake: Path, start: datetime) -> Path | None:
    root = quarantine_root(lake, start)
    if not root.is_dir():
        return None
    attempts = [p for p in root.iterdir() if (p / MANIFEST_FILE).is_file()]
    return max(attempts, key=lambda p: p.stat().st_mtime_ns) if attempts else None


def partition(lake: Path, start: datetime) -> Partition:
    live = partition_dir(lake, start)
    if (live / MANIFEST_FILE).is_file():
        manifest = read_json(live / MANIFEST_FILE)
        check = live / VALIDATION_FILE
        if check.is_file() and read_json(check).get("sha256") == manifest["sha256"]:
            return Partition(start, "validated", live, manifest)
        return Partition(start, "extracted", live, manifest)
    quarantined = latest_quarantine(lake, start)
    if quarantined is not None:
        return Partition(start, "quarantined", quarantined, read_json(quarantined / MANIFEST_FILE))
    return Partition(start, "missing", None, None)


def validated_partitions(lake: Path, before: datetime, window_hours: int) -> list[Partition]:
    """Validated hours in [before - window, before), oldest first."""
    found = [partition(lake, before - HOUR * k) for k in range(window_hours, 0, -1)]
    return [p for p in found if p.status == "validated"]


def read_partition(part: Partition, verify: bool = True) -> pa.Table:
    """Read a partition's rows, checking the file against its manifest's sha256."""
    path = part.data_file
    if verify and part.manifest is not None and sha256_file(path) != part.manifest["sha256"]:
        raise LakeError(f"{path} does not match the sha256 in its manifest: the file changed after extraction")
    return pq.read_table(path)


def quarantine(lake: Path, start: datetime, report: dict[str, Any]) -> Path:
    """Move the hour's live folder to quarantine (nothing deleted) and leave the report beside it."""
    live = partition_dir(lake, start)
    manifest = read_json(live / MANIFEST_FILE)
    target = quarantine_root(lake, start) / manifest["sha256"][:12]
    if target.exists():  # the same bytes were quarantined before: keep the older copy, aside
        target.rename(target.with_name(f"{target.name}.{datetime.now(UTC):%Y%m%dT%H%M%S%f}"))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(live), str(target))
    atomic_write_json(target / "quarantine.json", report)
    return target
