"""Quarantine beside the table: the records of what validation quarantined, and the extractions the
table cannot hold.

A quarantined *row* lives in the table (`status` quarantined, `quarantine_reason` naming the rules
it broke); what goes with it is a folder per quarantine event under
``quarantine/search_logs/dt=…/hour=HH/<id>/``: the report (`quarantine.json`), the full GX result
and GX's data docs. An extraction whose columns break the contract (or an empty hour) cannot be
rows of the table: it is staged (``staging/…/extracted.parquet``) for validation to judge, and
quarantined whole as ``rows.parquet`` in its event's folder. Re-admitted folders are marked
(`readmitted.json`), never deleted.

Validation's record of the hour (`_validation.json`) follows the same rule as a quarantine report:
written before the commit it describes (`write_record`: pending, with an id the commit names),
published once the commit is made (`finish_record`), and finished or removed by `repair` for a
writer killed in between, as the table's log says.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa

from incremental.data import files, lake, storage, table
from incremental.data.files import atomic_write_json, write_parquet_atomic
from incremental.data.storage import LakePath
from incremental.hours import Hour

if TYPE_CHECKING:  # JSON shapes only
    from incremental.validation.validate import ValidationRecord


def new_event_dir(lake_root: LakePath, start: Hour, kind: str) -> LakePath:
    """A fresh folder for one quarantine event of the hour (`kind`: hour, rows, part, schema)."""
    return lake.quarantine_root(lake_root, start) / f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{kind}"


def record_event(target: LakePath, report: Mapping[str, Any], staged: Path | None = None, *,
                 awaits: str | None = None) -> LakePath:
    """Write one quarantine event's folder: what validation staged (GX result, data docs), then its
    report last (a folder without a report is unfinished and not listed). `awaits`: what must follow
    for the report to hold (`lake.AWAITS_COMMIT`: the commit of its rows, naming the folder;
    `lake.AWAITS_ROWS`: its rows file): until then it is not listed, and `repair` removes it."""
    storage.mkdir(target)
    if staged is not None:
        storage.put_tree(staged, target)
    atomic_write_json(target / lake.QUARANTINE_FILE, {**report, awaits: True} if awaits else report)
    return target


def commit_name(lake_root: LakePath, target: LakePath | None) -> dict[str, str]:
    """What a commit's metadata says of the quarantine folder whose report describes its rows."""
    return {lake.REPORT_KEY: lake.folder_name(lake_root, target)} if target is not None else {}


@dataclass(frozen=True)
class Repaired:
    """What `repair` found of a writer killed in the middle of a change of the hour."""

    removed: tuple[LakePath, ...] = ()  # quarantine folders whose change never committed
    marked: tuple[LakePath, ...] = ()  # folders a committed re-admission took rows from, marked now
    dropped_staged: bool = False  # a staged extraction already quarantined whole
    record: str | None = None  # a validation record written before its commit: "finished" (it came) or "removed"


def repair(lake_root: LakePath, start: Hour) -> Repaired:
    """Finish or undo what a killed writer left of the hour, by the table's log; idempotent. Call it
    with the hour's lock held (no other writer of the hour is then between its two steps).

    * a report written before its commit (validation's order, so that no commit is ever without
      its report) whose commit never came: the rows are still live, the folder goes;
    * a staged extraction moved to quarantine whole: an unfinished move is undone (the staged file
      is whole), a finished one whose staged file is still there (copy, then delete) drops it;
    * a re-admission committed before its folders were marked: they are marked now, from the commit;
    * a staged extraction whose rows a validation committed (`lake.STAGED_KEY`) before it deleted the file: deleted;
    * a validation record written before its commit (`write_record`): published with what the
      commit made known (`finish_record`, from the table as of that commit) if it came, else removed.
    """
    log = lake.hour_log(lake_root, start)
    removed, marked, dropped = [], [], False
    path = lake.staging_dir(lake_root, start) / lake.STAGED_FILE
    staged: LakePath | None = path if storage.is_file(path) else None
    if staged is not None and files.sha256_file(staged) in log.staged:  # its rows committed, the file left
        drop_staged(lake_root, start)
        staged, dropped = None, True
    for folder in storage.children(lake.quarantine_root(lake_root, start)):
        if not storage.is_file(folder / lake.QUARANTINE_FILE):
            continue
        name = lake.folder_name(lake_root, folder)
        if lake.unfinished(folder, log, lake_root):
            if staged is not None or not files.read_json(folder / lake.QUARANTINE_FILE).get(lake.AWAITS_ROWS):
                storage.rmtree(folder)
                removed.append(folder)
        elif name in log.readmits and not lake.readmitted(folder):
            commit = log.readmits[name]
            mark_readmitted(folder, {"reason": commit.get("reason"), "at": _commit_time(commit),
                                     "into": table.uri(lake_root), "version": int(commit["version"]), "repaired": True})
            marked.append(folder)
        elif staged is not None and storage.is_file(folder / lake.QUARANTINED_ROWS_FILE) \
                and files.read_json(folder / lake.QUARANTINE_FILE).get(lake.STAGED_KEY) == files.sha256_file(staged):
            drop_staged(lake_root, start)
            staged, dropped = None, True
    return Repaired(tuple(removed), tuple(marked), dropped, _repair_record(lake_root, start, log))


def _repair_record(lake_root: LakePath, start: Hour, log: lake.HourLog) -> str | None:
    pending = lake.partition_dir(lake_root, start) / files.PENDING_VALIDATION_FILE
    if not storage.is_file(pending):
        return None
    record = files.read_json(pending)
    commit = log.records.get(str(record.get(lake.AWAITS_COMMIT)))
    if commit is None and not log.older(pending):  # its commit never came: the rows are still pending
        storage.unlink(pending)
        return "removed"
    # its commit came (or the log no longer holds it: then the hour's latest version stands for it)
    dt = table.open_table(lake_root, int(commit["version"])) if commit is not None else None
    finish_record(lake_root, start, record, lake.partition(lake_root, start, dt))
    return "finished"


def write_record(lake_root: LakePath, start: Hour, record: Mapping[str, Any]) -> dict[str, str]:
    """Write the hour's validation record before the commit of the rows it validated: pending
    (`files.PENDING_VALIDATION_FILE`), awaiting the commit whose metadata names its id (what this
    returns, for the metadata). Its version and identity are known once the commit is made
    (`finish_record`); a writer killed before that leaves it for `repair`."""
    name = uuid.uuid4().hex
    atomic_write_json(lake.partition_dir(lake_root, start) / files.PENDING_VALIDATION_FILE,
                      {**record, "sha256": None, lake.AWAITS_COMMIT: name})
    return {lake.RECORD_KEY: name}


def finish_record(lake_root: LakePath, start: Hour, record: Mapping[str, Any], view: lake.Partition) -> ValidationRecord:
    """Publish the hour's validation record (`files.VALIDATION_FILE`) with what its commit made
    known, from `view` (the hour as of that commit): the table version, the identity and count of
    the validated rows; the pending one goes. The record as published."""
    manifest = view.manifest
    final = cast("ValidationRecord", {**{k: v for k, v in record.items() if k != lake.AWAITS_COMMIT},
                                      "version": view.version, "sha256": manifest["sha256"] if manifest else "",
                                      "live_rows": manifest["rows"] if manifest else 0})
    here = lake.partition_dir(lake_root, start)
    atomic_write_json(here / files.VALIDATION_FILE, final)
    storage.unlink(here / files.PENDING_VALIDATION_FILE)
    return final


def _commit_time(commit: Mapping[str, Any]) -> str | None:
    stamp = commit.get("timestamp")
    return datetime.fromtimestamp(int(stamp) / 1000, UTC).isoformat() if stamp is not None else None


@contextlib.contextmanager
def taken_back_on_failure(*written: LakePath | None) -> Iterator[None]:
    """Remove what was written before a commit (a quarantine event's folder, a pending validation
    record) when the commit fails."""
    try:
        yield
    except BaseException:
        for target in written:
            if target is not None and storage.is_file(target):
                storage.unlink(target)
            elif target is not None:
                storage.rmtree(target)
        raise


def stage_extraction(lake_root: LakePath, start: Hour, rows: pa.Table) -> LakePath:
    """Keep an extraction the table cannot hold (empty, or columns off the contract) for validation."""
    path = lake.staging_dir(lake_root, start) / lake.STAGED_FILE
    write_parquet_atomic(path, rows)
    return path


def quarantine_staged(lake_root: LakePath, start: Hour, report: Mapping[str, Any],
                      staged: Path | None = None) -> LakePath:
    """Move the hour's staged extraction to quarantine whole: its rows, report, GX result and docs."""
    source = lake.staged_file(lake_root, start)
    if source is None:
        raise lake.LakeError(f"hour {start} has no staged extraction to quarantine")
    # the report first, naming the file it awaits: a kill before the move leaves the rows staged
    # (the report is not listed, `repair` removes it), never a rows file without its report
    target = record_event(new_event_dir(lake_root, start, "hour"),
                          {**report, lake.STAGED_KEY: files.sha256_file(source)}, staged, awaits=lake.AWAITS_ROWS)
    storage.move(source, target / lake.QUARANTINED_ROWS_FILE)
    return target


def drop_staged(lake_root: LakePath, start: Hour) -> None:
    """Forget a staged extraction whose rows went into the table."""
    storage.rmtree(lake.staging_dir(lake_root, start))


def quarantined_file_tables(lake_root: LakePath, start: Hour) -> list[pa.Table]:
    return [lake.read_parquet(p) for p in lake.quarantined_files(lake_root, start)]


def row_counts(lake_root: LakePath, start: Hour) -> dict[str, int]:
    """Where the hour's rows are: live (validated + extracted), quarantined (in the table, and whole
    extractions the table cannot hold, staged ones counted as extracted)."""
    found = table.files_of(table.open_table(lake_root), start)
    count = {s: sum(f.rows for f in found if f.status == s) for s in (table.VALIDATED, table.EXTRACTED, table.QUARANTINED)}
    staged = lake.staged_file(lake_root, start)
    pending = count[table.EXTRACTED] + (lake.parquet_rows(staged) if staged is not None else 0)
    whole = sum(lake.parquet_rows(p) for p in lake.quarantined_files(lake_root, start))
    live = count[table.VALIDATED] + pending
    return {"live": live, "validated": count[table.VALIDATED], "extracted": pending,
            "quarantined_rows": count[table.QUARANTINED], "quarantined_whole": whole,
            "quarantined": count[table.QUARANTINED] + whole, "total": live + count[table.QUARANTINED] + whole}


def accounted_tables(lake_root: LakePath, start: Hour) -> list[pa.Table]:
    """Every row of the hour the lake holds (the table's rows of every status, quarantined
    extractions), as extracted: what re-extraction compares with. A staged extraction is not
    included: extracting again replaces it."""
    held = table.read_rows(table.open_table(lake_root), start, [table.VALIDATED, table.EXTRACTED, table.QUARANTINED])
    return [t for t in [held, *quarantined_file_tables(lake_root, start)] if t.num_rows]


def mark_readmitted(folder: LakePath, record: Mapping[str, object]) -> None:
    """Mark a quarantine folder re-admitted: it stays, and is no longer counted as quarantined."""
    atomic_write_json(folder / lake.READMITTED_FILE, record)
