"""Validate one extracted hour in the lake: its pending rows checked, then validated or quarantined.

The checks themselves (a Great Expectations suite plus hour-over-hour drift) are the pure core,
`incremental.validation.frame`. This module is the lake side: `validate_hour(lake, start,
settings)` validates the hour's pending rows (status *extracted* in the table: the first
extraction, or late rows) and then, by what failed, commits the outcome as **one overwrite of the
hour** (`incremental.data.table.overwrite_hour`):

* nothing: the rows become *validated* (the hour's record, `_validation.json` beside the table,
  keeps the checks and statistics, and the table version);
* only **row-level** rules, on at most `max_bad_row_fraction` of the rows: the failing rows become
  *quarantined* with a `quarantine_reason` naming every rule each broke, the others *validated*;
  the GX result and data docs go to a quarantine folder of the hour;
* more bad rows than that, or any **table-level** rule: all the pending rows become quarantined
  (the hour's validated rows, if any, stay as they are, their files untouched), with the GX
  result (`gx_result.json`) and data docs (`data_docs/`) in the quarantine folder.

An extraction the table cannot hold (an empty hour, columns off the contract) is staged beside it;
validating it quarantines its file whole. Every row of the hour is in the table or in such a file
(`incremental.data.quarantine.row_counts`). `readmit_hour` validates the quarantined rows again
(after a fix: a reviewed settings change, a repaired source) in the same kind of commit.
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
from deltalake import DeltaTable

from incremental.config import ValidationSettings
from incremental.data import files, storage, table
from incremental.data import lake as lk
from incremental.data import quarantine as lq
from incremental.data.storage import LakePath
from incremental.errors import require_reason
from incremental.hours import HOUR, Hour, now_iso
from incremental.validation.frame import Outcome, check_frame
from incremental.validation.gx_suite import GxSummary, gx_summary
from incremental.validation.hour_drift import HourStats, statistics_of
from incremental.validation.report import (
    CRITICAL,
    FIRST,
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
    """A validation's record: the hour's `_validation.json` once it is validated (the identity and
    table version of its validated rows, the hour's statistics), or the report beside quarantined data."""

    status: str  # "validated" | "quarantined"
    interval_start: str
    interval_end: str
    part: str  # what was validated: the first extraction, rows extracted since, re-admitted rows
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
    sha256: str  # the identity of the hour's validated files (`lake.identity`)
    version: int  # the table version the outcome was committed as
    live_rows: int



SINCE = "rows extracted since"
READMITTED = "re-admitted rows"


def to_frame(rows: pa.Table) -> pd.DataFrame:
    """A pandas frame of rows (integers as nullable dtypes, so a null stays a null)."""
    return rows.to_pandas(types_mapper=_INT_TYPES.get)


def validate_hour(lake: LakePath, start: Hour, settings: ValidationSettings) -> ValidationReport:
    """Validate the hour's pending rows: validate them, quarantine the bad ones, or quarantine them all."""
    with lk.hour_lock(lake, start):
        lq.repair(lake, start)  # what a killed run of this hour left half-done, finished or undone first
        found = lk.to_validate(lake, start, settings.drift_lookback_hours, settings.drift_window_hours)
        return _validate(lake, found, settings)


def _validate(lake: LakePath, found: lk.ToValidate, settings: ValidationSettings) -> ValidationReport:
    """The hour as read (`lake.to_validate`): its pending rows checked and the outcome committed, or,
    with nothing pending, its last verdict as recorded (validating again changes nothing)."""
    part, record = found.part, found.record
    if found.rows is None and part.status == "missing":
        raise ValidationError(f"hour {part.start} has no partition in {table.uri(lake)}: extract it first")
    if found.rows is None and part.status == "quarantined" and part.path is not None:
        # all in quarantine and nothing new: "quarantined" again, as the first run said, rather than
        # failing (a backfill reprocessing the hour); `incremental readmit` is the way back
        index = part.path / "data_docs" / "index.html"
        return ValidationReport(part.start, "quarantined", int(record.get("rows", 0)), _checks(record), part.path,
                                index if storage.is_file(index) else None, part=None)
    if found.rows is None:
        assert part.path is not None  # a validated or extracted hour has its records folder
        live = part.manifest["rows"] if part.manifest is not None else 0
        return ValidationReport(part.start, "validated", int(record.get("rows", live)), _checks(record), part.path,
                                None, part=None, live_rows=live)
    metadata: dict[str, object] = {lk.STAGED_KEY: files.sha256_file(found.staged)} if found.staged is not None else {}
    batch = _Batch(found.rows, SINCE if found.earlier.num_rows else FIRST, found.earlier, found.kept, "validate",
                   metadata, found.read, found.history)
    return _validate_batch(lake, part.start, settings, batch, staged_file=found.staged is not None)


def _checks(record: ValidationRecord) -> tuple[Check, ...]:
    return tuple(Check(**c) for c in record.get("checks", []))


@dataclass
class _Batch:
    """Rows to validate (`rows`: pending or re-admitted) and the hour's rows that stay as they are."""

    rows: pa.Table
    label: str  # what the report calls them
    earlier: pa.Table  # the hour's validated rows (untouched)
    kept: pa.Table  # the hour's quarantined rows that stay quarantined (table columns)
    event: str  # the commit's event: validate | readmit
    metadata: dict[str, object]  # more for the commit's custom_metadata
    read: DeltaTable | None  # the table version all of it was read at (what the commit replaces)
    history: list[HourStats]  # the statistics of the latest validated hours before it (`lake.validated_statistics`)


def _validate_batch(lake: LakePath, start: Hour, settings: ValidationSettings, b: _Batch,
                    staged_file: bool = False) -> ValidationReport:
    """Check the batch's rows, commit the outcome (one overwrite of the hour), record it."""
    end = start + HOUR
    frame = to_frame(b.rows)
    earlier = to_frame(b.earlier) if b.earlier.num_rows else None
    table_stats = earlier is None or len(frame) >= settings.min_rows
    staging = Path(tempfile.mkdtemp(prefix=f"{start:%Y%m%d%H}-", dir=lk.scratch_dir(lake)))
    try:
        out = check_frame(frame, start, end, settings, b.history, schema_checks_arrow(b.rows.schema),
                          staging / "data_docs", table_stats=table_stats, earlier=earlier)
        critical = [c for c in out.checks if not c.success and c.severity == CRITICAL]
        n_bad = int(out.bad.sum())
        if not critical and earlier is not None and len(frame) and n_bad == len(frame):
            # nothing of these rows is good: all quarantined (the hour keeps its validated rows)
            whole = Check("expect_part_to_have_valid_rows", None, CRITICAL, False, n_bad,
                          f"expect_part_to_have_valid_rows: all {n_bad} {b.label} failed row-level rules: they are "
                          "quarantined, the hour keeps its validated rows")
            out.checks.append(whole)
            critical = [whole]
        record = _record(start, end, settings, b, out, critical)
        if critical:
            return _quarantine(lake, start, b, out, record, staging, staged_file)
        report = _accept(lake, start, b, out, record, staging, frame[~out.bad] if earlier is None else
                         pd.concat([earlier, frame[~out.bad]], ignore_index=True))
        if staged_file:  # its rows fit the table and are in it: the file goes (its commit names it: `lq.repair`)
            lq.drop_staged(lake, start)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _record(start: Hour, end: Hour, settings: ValidationSettings, b: _Batch, out: Outcome,
            critical: list[Check]) -> ValidationRecord:
    """The validation record of a batch (`_validation.json`, or the quarantine's report)."""
    return {
        "status": "validated" if not critical else "quarantined",
        "interval_start": start.isoformat(),
        "interval_end": end.isoformat(),
        "part": b.label,
        "rows": b.rows.num_rows,
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
    """The full GX result and GX's data docs (the checkpoint built them), staged to go with a quarantine record."""
    docs_tmp = staging / "data_docs"
    gx_json = out.gx.result.to_json_dict() if out.gx else {}
    files.atomic_write_json(staging / "gx_result.json", {"gx": gx_json, "checks": record["checks"], "statistics": out.stats,
                                                       "category_codes": out.codes})
    if out.gx is None or out.gx.docs is None:  # the checkpoint built none
        shutil.rmtree(docs_tmp, ignore_errors=True)


def _commit_metadata(b: _Batch, record: ValidationRecord, **more: object) -> dict[str, object]:
    return {"rows": str(record["rows"]), "bad_rows": str(record["bad_rows"]),
            "status": record["status"], **b.metadata, **more}


def _quarantine(lake: LakePath, start: Hour, b: _Batch, out: Outcome, record: ValidationRecord,
                staging: Path, staged_file: bool) -> ValidationReport:
    """A critical failure: all the batch's rows are quarantined; the hour keeps its validated rows."""
    rules = ";".join(sorted({c.rule for c in out.checks if not c.success and c.severity == CRITICAL}))
    _stage_gx_result(out, record, staging)
    if staged_file:  # rows the table cannot hold: their file goes to quarantine whole
        target = lq.quarantine_staged(lake, start, record, staging)
    else:  # the report first, so that no commit is without its report; it holds once the commit names it
        # (a failed commit takes it back, a killed one leaves it unlisted until `lq.repair` removes it)
        target = lq.record_event(lq.new_event_dir(lake, start, "hour" if not b.earlier.num_rows else "part"),
                                 record, staging, awaits=lk.AWAITS_COMMIT)
        reasons = pa.array([r or rules for r in out.reasons.tolist()], pa.string())  # a row's own rules, else the hour's
        rows = table.with_status(b.rows, start, table.QUARANTINED, reasons)
        with lq.taken_back_on_failure(target):
            table.overwrite_hour(lake, start, pa.concat_tables([b.kept, rows]), b.event,
                                 _commit_metadata(b, record, rules=rules, **lq.commit_name(lake, target)),
                                 keep_validated=True, read=b.read)
    index = target / "data_docs" / "index.html"
    return ValidationReport(start, "quarantined", b.rows.num_rows, tuple(out.checks), target,
                            index if storage.is_file(index) else None, part=b.label,
                            hour_validated=bool(b.earlier.num_rows))


def _accept(lake: LakePath, start: Hour, b: _Batch, out: Outcome, record: ValidationRecord,
            staging: Path, view: pd.DataFrame) -> ValidationReport:
    """The batch is validated, its bad rows (if any) quarantined with their reasons: one commit.
    `view`: the hour's validated rows afterwards, as a frame (their statistics go in the record)."""
    mask = pa.array(out.bad)
    if out.bad.any():
        clean, bad = b.rows.filter(pc.invert(mask)), b.rows.filter(mask)
    else:  # the usual hour: nothing to filter (a copy of every column)
        clean, bad = b.rows, b.rows.slice(0, 0)
    reasons = pa.array(out.reasons[out.bad].tolist(), pa.string())
    quarantined = table.with_status(bad, start, table.QUARANTINED, reasons)
    rules: dict[str, int] = {}
    for reason in reasons.to_pylist():
        for name in reason.split(";"):
            rules[name] = rules.get(name, 0) + 1
    keep_validated = clean.num_rows == 0
    held = pa.concat_tables([b.kept, quarantined])  # one file per status: no table to split again
    hour = [held] if keep_validated else [pa.concat_tables([table.with_status(b.earlier, start, table.VALIDATED),
                                                            table.with_status(clean, start, table.VALIDATED)]), held]
    rows_path, docs = None, None
    if bad.num_rows:  # the report first (with the GX result and data docs), holding once the commit names it
        _stage_gx_result(out, record, staging)
        report = {**record, "status": "rows_quarantined", "rows": bad.num_rows, "of_rows": b.rows.num_rows,
                  "rules": rules}
        rows_path = lq.record_event(lq.new_event_dir(lake, start, "rows"), report, staging, awaits=lk.AWAITS_COMMIT)
        index = rows_path / "data_docs" / "index.html"
        docs = index if storage.is_file(index) else None
    typed = {c.column for c in out.checks
             if c.rule == "expect_column_values_to_be_of_type" and c.success and c.column is not None}
    record.update({"part_statistics": out.stats, "statistics": statistics_of(view, typed) if len(view) else out.stats})
    # the hour's record too before the commit, pending until it is made (a kill in between: `lq.repair`)
    named = lq.write_record(lake, start, record)
    here = lk.partition_dir(lake, start)
    with lq.taken_back_on_failure(rows_path, here / files.PENDING_VALIDATION_FILE):
        table.overwrite_hour(lake, start, hour, b.event,
                             _commit_metadata(b, record, rules=rules or None, **lq.commit_name(lake, rows_path), **named),
                             keep_validated=keep_validated, read=b.read)
    final = lq.finish_record(lake, start, record, lk.partition(lake, start))
    return ValidationReport(start, "validated", b.rows.num_rows, tuple(out.checks), here, docs,
                            quarantined_rows=bad.num_rows, rows_path=rows_path, part=b.label,
                            live_rows=final["live_rows"])


def readmit_hour(lake: LakePath, start: Hour, settings: ValidationSettings, reason: str) -> ValidationReport:
    """Validate an hour's quarantined rows again and commit the outcome: one overwrite of the hour.

    For after a fix: a reviewed change of the rules (incremental.yaml), or a source repaired. Rows
    that pass become validated, rows that still fail stay quarantined (with the reasons found now);
    the commit's metadata records the reason and the quarantine folders the rows came from, and
    those folders are marked re-admitted (`readmitted.json`), never deleted.
    """
    reason = require_reason(reason, "readmit (--reason: what was fixed)", ValidationError)
    with lk.hour_lock(lake, start):
        return _readmit_hour(lake, start, settings, reason.strip())


def _readmit_hour(lake: LakePath, start: Hour, settings: ValidationSettings, reason: str) -> ValidationReport:
    if lq.repair(lake, start).marked:  # a re-admission killed after its commit: it is done now, not done twice
        return _validate(lake, lk.to_validate(lake, start, settings.drift_lookback_hours, settings.drift_window_hours),
                         settings)
    part = lk.partition(lake, start)
    if part.pending_parts and part.status in ("validated", "extracted"):
        validate_hour(lake, start, settings)  # pending rows first: re-admission must not pass them by
    dt = table.open_table(lake)
    in_table = table.read_rows(dt, start, [table.QUARANTINED])
    whole = lk.quarantined_files(lake, start)
    if not in_table.num_rows and not whole:
        raise ValidationError(f"hour {start} has nothing in quarantine to re-admit")
    rows = pa.concat_tables([in_table, *(_as_contract(p) for p in whole)])
    attempts = lk.quarantine_attempts(lake, start)
    sources = [str(storage.relative_to(a, lake)) for a in attempts]
    earlier = table.read_rows(dt, start, [table.VALIDATED])
    history = lk.validated_statistics(lake, start, settings.drift_lookback_hours, settings.drift_window_hours, dt)
    batch = _Batch(rows, READMITTED, earlier, table.TABLE_SCHEMA.empty_table(), "readmit",
                   {"reason": reason, "sources": sources}, dt, history)
    report = _validate_batch(lake, start, settings, batch)
    for folder in attempts:
        lq.mark_readmitted(folder, {"reason": reason, "at": now_iso(), "into": table.uri(lake)})
    return report


def _as_contract(path: LakePath) -> pa.Table:
    """A quarantined extraction file's rows as the contract's columns, or a clear error saying why not."""
    rows = lk.read_parquet(path)
    missing = [n for n in lk.SEARCH_LOG_SCHEMA.names if n not in rows.column_names]
    if missing:
        raise ValidationError(f"{path} cannot be re-admitted: it lacks column(s) {', '.join(missing)} (fix the "
                              "source and extract the hour again)")
    try:
        return rows.select(lk.SEARCH_LOG_SCHEMA.names).cast(lk.SEARCH_LOG_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValidationError(f"{path} cannot be re-admitted: its columns do not convert to the contract ({exc})") \
            from None
