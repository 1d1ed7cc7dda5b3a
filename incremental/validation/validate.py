"""Validate one extracted hour in the lake: its pending part checked, then validated or quarantined.

The checks themselves (a Great Expectations suite plus hour-over-hour drift) are the pure core,
`incremental.validation.frame`. This module is the lake side: `validate_hour(lake, start,
settings)` validates the hour's pending part (the first extraction, or a delta of late or
re-admitted rows) and then, by what failed:

* nothing: the part is validated (`_validation.json` lists the validated parts);
* only **row-level** rules, on at most `max_bad_row_fraction` of the part's rows: the failing
  *rows* move to `quarantine/.../rows/<part>-<sha12>/rows.parquet` with a `quarantine_reason`
  column naming every rule each row broke (plus the GX result and data docs), the other rows stay
  live (`part-N.valid.parquet`) and are validated: the hour goes on;
* more bad rows than that, or any **table-level** rule: the whole hour (or, when earlier parts of
  the hour are validated already, the whole delta part) moves to quarantine with the full GX
  result (`gx_result.json`) and GX's own data docs (`data_docs/`).

Live rows plus quarantined rows always equal the warehouse rows of the hour (`incremental.data.quarantine.row_counts`).
`readmit_hour` puts quarantined rows back (after a fix: a reviewed settings change, a repaired
source), as a new part that is validated like any other; the manifest records it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from incremental.config import ValidationSettings
from incremental.data import files, storage
from incremental.data import lake as lk
from incremental.data import quarantine as lq
from incremental.data.manifest import PartEntry
from incremental.data.storage import LakePath
from incremental.errors import require_reason
from incremental.hours import HOUR, Hour, now_iso
from incremental.validation.frame import Outcome, check_frame
from incremental.validation.gx_suite import GxSummary, gx_summary
from incremental.validation.hour_drift import HourStats, statistics_of, validated_history
from incremental.validation.report import (
    CRITICAL,
    ROWS,
    WARNING,
    Check,
    CheckRecord,
    ValidationError,
    ValidationReport,
)
from incremental.validation.rows import schema_checks_arrow

_INT_TYPES = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
}


class ValidationRecord(TypedDict, total=False):
    """A part's validation record: the hour's `_validation.json` once it is validated (with the
    parts it covers, their identity and the hour's statistics), or the record beside quarantined data."""

    status: str  # "validated" | "quarantined"
    interval_start: str
    interval_end: str
    part: str
    part_sha256: str
    rows: int
    bad_rows: int
    max_bad_row_fraction: float
    statistics: HourStats  # a validated hour's: of its validated view
    part_statistics: HourStats
    warnings: list[CheckRecord]
    row_failures: list[CheckRecord]
    failures: list[CheckRecord]
    checks: list[CheckRecord]
    gx: GxSummary | None
    validated_at: str
    parts: list[str]  # the validated parts it covers, and their identity
    sha256: str
    live_rows: int


def read_frame(path: LakePath) -> tuple[pa.Schema, pd.DataFrame]:
    """The partition's Arrow schema and a pandas frame (integers as nullable dtypes, so a null stays a null)."""
    table = lk.read_parquet(path)
    return table.schema, table.to_pandas(types_mapper=_INT_TYPES.get)


def _stored_report(start: datetime, live: LakePath) -> ValidationReport:
    """Nothing pending: the hour's last validation, as recorded (validating again changes nothing)."""
    record = files.read_json(live / files.VALIDATION_FILE)
    checks = tuple(Check(**c) for c in record.get("checks", []))
    return ValidationReport(start, "validated", int(record.get("rows", 0)), checks, live, None,
                            part=None, live_rows=record.get("live_rows"))


def _stored_quarantine(start: datetime, folder: LakePath) -> ValidationReport:
    """The whole hour is in quarantine and nothing new was extracted: its verdict, as recorded. A
    re-run (a backfill reprocessing the hour) says "quarantined" again, as the first run did, rather
    than failing; `incremental readmit` is the way back."""
    record = files.read_json(folder / lk.QUARANTINE_FILE)
    checks = tuple(Check(**c) for c in record.get("checks", []))
    index = folder / "data_docs" / "index.html"
    return ValidationReport(start, "quarantined", int(record.get("rows", 0)), checks, folder,
                            index if storage.is_file(index) else None, part=None)


def validate_hour(lake: LakePath, start: Hour, settings: ValidationSettings) -> ValidationReport:
    """Validate the hour's pending part (first extraction or delta): validate, quarantine its bad rows, or quarantine it."""
    with lk.hour_lock(lake, start):
        return _validate_hour(lake, start, settings)


def _validate_hour(lake: LakePath, start: Hour, settings: ValidationSettings) -> ValidationReport:
    live = lk.partition_dir(lake, start)
    if not storage.is_file(live / files.MANIFEST_FILE):
        found = lk.partition(lake, start)
        if found.status == "quarantined" and found.path is not None:
            return _stored_quarantine(start, found.path)
        raise ValidationError(f"hour {start} has no partition in {lake / 'search_logs'}: extract it first")
    good = set(lk.validated_files(live))
    pending = [p for p in lk.parts_of(files.read_json(live / files.MANIFEST_FILE)) if p["file"] not in good]
    if not pending:
        return _stored_report(start, live)
    report = None
    for part in pending:
        report = _validate_part(lake, start, settings, part)
        if not storage.is_file(live / files.MANIFEST_FILE):
            break  # the whole hour went to quarantine
    assert report is not None
    return report


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame | None:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else None


@dataclass
class _Part:
    """A pending part of the hour, read and checked against its manifest, and the hour's validated parts."""

    entry: PartEntry  # the part's manifest entry
    path: LakePath
    sha256: str
    schema: pa.Schema
    frame: pd.DataFrame
    earlier_parts: list[PartEntry]  # the hour's parts validated already
    earlier: pd.DataFrame | None  # their rows


def _load_part(lake: LakePath, start: datetime, part: PartEntry) -> _Part:
    live = lk.partition_dir(lake, start)
    data_file = live / part["file"]
    sha = lk.check_sha256(data_file, part.get("sha256"))
    schema, frame = read_frame(data_file)
    manifest = files.read_json(live / files.MANIFEST_FILE)
    good = set(lk.validated_files(live))
    earlier_parts = [p for p in lk.parts_of(manifest) if p["file"] in good]
    earlier = _concat([read_frame(live / p["file"])[1] for p in earlier_parts])
    return _Part(part, data_file, sha, schema, frame, earlier_parts, earlier)


def _validate_part(lake: LakePath, start: datetime, settings: ValidationSettings, part: PartEntry) -> ValidationReport:
    end = start + HOUR
    p = _load_part(lake, start, part)
    table_stats = not p.earlier_parts or len(p.frame) >= settings.min_rows
    history = validated_history(lake, start, settings)
    staging = Path(tempfile.mkdtemp(prefix=f"{start:%Y%m%d%H}-", dir=lk.scratch_dir(lake)))
    try:
        out = check_frame(p.frame, start, end, settings, history, schema_checks_arrow(p.schema), staging / "data_docs",
                        table_stats=table_stats, earlier=p.earlier)
        critical = [c for c in out.checks if not c.success and c.severity == CRITICAL]
        n_bad = int(out.bad.sum())
        if not critical and p.earlier_parts and len(p.frame) and n_bad == len(p.frame):
            # nothing of this delta is good: it goes to quarantine as a part (the hour's identity stays)
            whole = Check("expect_part_to_have_valid_rows", None, CRITICAL, False, n_bad,
                          f"expect_part_to_have_valid_rows: all {n_bad} rows of {part['file']} failed row-level "
                          f"rules: the part is quarantined whole, the hour keeps its validated parts")
            out.checks.append(whole)
            critical = [whole]
        record = _record(start, end, settings, p, out, critical)
        if critical or n_bad:  # the full GX result and GX's data docs go with the data
            _stage_gx_result(out, record, staging)
        if critical:
            return _quarantine(lake, start, p, out, record, staging)
        return _accept(lake, start, settings, p, out, record, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _record(start: datetime, end: datetime, settings: ValidationSettings, p: _Part, out: Outcome,
            critical: list[Check]) -> ValidationRecord:
    """The validation record of a part (`_validation.json`, or the quarantine's record)."""
    return {
        "status": "validated" if not critical else "quarantined",
        "interval_start": start.isoformat(),
        "interval_end": end.isoformat(),
        "part": p.entry["file"],
        "part_sha256": p.sha256,
        "rows": len(p.frame),
        "bad_rows": int(out.bad.sum()),
        "max_bad_row_fraction": settings.max_bad_row_fraction,
        "statistics": out.stats,
        "warnings": [c.as_dict() for c in out.checks if not c.success and c.severity == WARNING],
        "row_failures": [c.as_dict() for c in out.checks if not c.success and c.severity == ROWS],
        "failures": [c.as_dict() for c in critical],
        "checks": [c.as_dict() for c in out.checks],
        "gx": gx_summary(out.gx.result) if out.gx else None,
        "validated_at": datetime.now(UTC).isoformat(),
    }


def _stage_gx_result(out: Outcome, record: ValidationRecord, staging: Path) -> None:
    """The full GX result and GX's data docs (the checkpoint built them), staged to go with the quarantined data."""
    docs_tmp = staging / "data_docs"
    gx_json = out.gx.result.to_json_dict() if out.gx else {}
    files.atomic_write_json(staging / "gx_result.json", {"gx": gx_json, "checks": record["checks"], "statistics": out.stats,
                                                       "category_codes": out.codes})
    if out.gx is None or out.gx.docs is None:  # the checkpoint built none
        shutil.rmtree(docs_tmp, ignore_errors=True)


def _quarantine(lake: LakePath, start: datetime, p: _Part, out: Outcome, record: ValidationRecord,
                staging: Path) -> ValidationReport:
    """A critical failure: the hour goes to quarantine, or only this delta when the hour has validated parts."""
    if p.earlier_parts:
        target = lq.quarantine_part(lake, start, p.entry, record, staging)
    else:
        live = lk.partition_dir(lake, start)
        stale = live / files.VALIDATION_FILE
        if storage.exists(stale):  # a record for other bytes: keep it, under another name
            storage.move(stale, live / f"_validation.superseded.{datetime.now(UTC):%Y%m%dT%H%M%S%f}.json")
        target = lq.quarantine(lake, start, record, staging)
    index = target / "data_docs" / "index.html"
    return ValidationReport(start, "quarantined", len(p.frame), tuple(out.checks), target,
                            index if storage.is_file(index) else None, part=p.entry["file"],
                            hour_validated=bool(p.earlier_parts))


def _quarantine_rows(lake: LakePath, start: datetime, settings: ValidationSettings, p: _Part, out: Outcome,
                     record: ValidationRecord, staging: Path) -> PartEntry:
    """Move the part's bad rows to quarantine (with the rules each broke); the part's new manifest entry."""
    table = lk.read_parquet(p.path)
    mask = pa.array(out.bad)
    bad_rows = table.filter(mask).append_column(
        lk.REASON_COLUMN, pa.array(out.reasons[out.bad].tolist(), pa.string()))
    rules: dict[str, int] = {}
    for reason in out.reasons[out.bad]:
        for name in reason.split(";"):
            rules[name] = rules.get(name, 0) + 1
    report = {"status": "rows_quarantined", "interval_start": start.isoformat(), "part": p.entry["file"],
              "extracted_sha256": p.sha256, "rows": int(out.bad.sum()), "of_rows": len(p.frame), "rules": rules,
              "max_bad_row_fraction": settings.max_bad_row_fraction,
              "row_failures": record["row_failures"], "at": record["validated_at"]}
    return lq.quarantine_rows(lake, start, p.entry, table.filter(pc.invert(mask)), bad_rows, report, staging)


def _accept(lake: LakePath, start: datetime, settings: ValidationSettings, p: _Part, out: Outcome,
            record: ValidationRecord, staging: Path) -> ValidationReport:
    """The part is validated (its bad rows, if any, quarantined): record the hour's validated view."""
    entry, rows_path, docs, clean = p.entry, None, None, p.frame
    n_bad = int(out.bad.sum())
    if n_bad:
        entry = _quarantine_rows(lake, start, settings, p, out, record, staging)
        rows_path = lake / entry["row_quarantine"]
        index = rows_path / "data_docs" / "index.html"
        docs = index if storage.is_file(index) else None
        clean = p.frame[~out.bad]
    validated = [*p.earlier_parts, entry]
    view = _concat([p.earlier, clean]) if p.earlier is not None else clean
    typed = {c.column for c in out.checks
             if c.rule == "expect_column_values_to_be_of_type" and c.success and c.column is not None}
    record.update({
        "parts": [q["file"] for q in validated],
        "sha256": lk.identity(validated),
        "live_rows": int(sum(int(q["rows"]) for q in validated)),
        "part_statistics": out.stats,
        "statistics": statistics_of(view, typed) if view is not None else out.stats,
    })
    live = lk.partition_dir(lake, start)
    files.atomic_write_json(live / files.VALIDATION_FILE, record)
    return ValidationReport(start, "validated", len(p.frame), tuple(out.checks), live, docs,
                            quarantined_rows=n_bad, rows_path=rows_path, part=p.entry["file"],
                            live_rows=record["live_rows"])


def readmit_hour(lake: LakePath, start: Hour, settings: ValidationSettings, reason: str) -> ValidationReport:
    """Put an hour's quarantined rows (row sets and quarantined hours/parts) back, and validate them again.

    For after a fix: a reviewed change of the rules (incremental.yaml), or a source repaired. The
    rows become a new part of the hour (kind "readmitted"); the manifest's events record when, why
    and from where; the quarantine folders are marked re-admitted (`readmitted.json`), never
    deleted. Rows that still fail are quarantined again, like any part's.
    """
    reason = require_reason(reason, "readmit (--reason: what was fixed)", ValidationError)
    with lk.hour_lock(lake, start):
        return _readmit_hour(lake, start, settings, reason)


def _readmit_hour(lake: LakePath, start: Hour, settings: ValidationSettings, reason: str) -> ValidationReport:
    live = lk.partition_dir(lake, start)
    if storage.is_file(live / files.MANIFEST_FILE):
        good = set(lk.validated_files(live))
        if any(p["file"] not in good for p in lk.parts_of(files.read_json(live / files.MANIFEST_FILE))):
            validate_hour(lake, start, settings)  # a pending part first: readmission must not replace it
    sets, attempts = lq.row_sets(lake, start), lk.quarantine_attempts(lake, start)
    if not sets and not attempts:
        raise ValidationError(f"hour {start} has nothing in quarantine to re-admit")
    tables = [lk.read_parquet(s / "rows.parquet").drop_columns([lk.REASON_COLUMN]) for s in sets]
    for attempt in attempts:
        tables += [lk.read_parquet(attempt / p["file"]) for p in lk.parts_of(files.read_json(attempt / files.MANIFEST_FILE))]
    table = pa.concat_tables(tables, promote_options="permissive")
    sources = [str(storage.relative_to(p, lake)) for p in [*sets, *attempts]]
    manifest = lk.add_part(lake, start, table, kind="readmitted",
                           event={"event": "readmit", "reason": reason.strip(), "sources": sources})
    into = manifest["parts"][-1]["file"]
    for folder in [*sets, *attempts]:
        lq.mark_readmitted(folder, {"reason": reason.strip(), "into": f"{lk.hour_key(start)}/{into}",
                                    "at": now_iso(), "rows": None})
    return validate_hour(lake, start, settings)
