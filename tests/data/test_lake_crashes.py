"""A validation or a re-admission killed (SIGKILL: no handler, no `finally`) between its two steps
on the lake: the quarantine report it wrote and the table's commit, the commit and the hour's
validation record, or the commit and the marks on the quarantine folders its rows came from. The killed process is a real child, crashed by the
test-only `tests/faults/sitecustomize.py`; the rerun must end as one uninterrupted run would have:
nothing lost, nothing counted twice, no report for rows that are live, no stale quarantine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from test_validate import ROWS, START, good_frame, write_hour

from incremental.config import ValidationSettings
from incremental.data import files, table
from incremental.data import lake as lk
from incremental.data import quarantine as lq
from incremental.hours import HOUR
from incremental.validation.validate import READMITTED, readmit_hour, validate_hour

REPO = Path(__file__).resolve().parents[2]
FAULTS_DIR = REPO / "tests" / "faults"
TOLERANT = {"max_bad_row_fraction": 0.1}  # a few bad rows of 80 are quarantined row by row
FIXED = {**TOLERANT, "max_query_chars": 5000}  # the reviewed fix re-admission follows


def killed(lake: Path, step: str, at: str, settings: dict | None = None, fault: str = "KILL_AT_COMMIT") -> None:
    """Run `step` (validate | readmit) of the hour in a child that SIGKILLs itself at `at` (see sitecustomize)."""
    call = "validate_hour(lake, start, s)" if step == "validate" else "readmit_hour(lake, start, s, 'query length rule reviewed (#12)')"
    code = ("import sys; from pathlib import Path; from incremental.config import ValidationSettings;"
            "from incremental.hours import parse_hour; from incremental.validation.validate import readmit_hour, validate_hour;"
            f"lake, start, s = Path(sys.argv[1]), parse_hour(sys.argv[2]), ValidationSettings(**{settings or {}!r}); {call}")
    env = {**os.environ, "PYTHONPATH": f"{FAULTS_DIR}{os.pathsep}{REPO}", f"INCREMENTAL_TEST_FAULT_{fault}": at}
    done = subprocess.run([sys.executable, "-c", code, str(lake), START.isoformat()], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, f"rc={done.returncode}\n{done.stderr[-3000:]}"


def folders(lake: Path) -> list[Path]:
    root = lk.quarantine_root(lake, START)
    return sorted(root.iterdir()) if root.is_dir() else []


def long_queries(bad: int) -> pd.DataFrame:
    frame = good_frame()
    frame.loc[list(range(bad)), "query"] = "drill " * 100  # longer than max_query_chars (200)
    return frame


@pytest.mark.parametrize(("bad", "status"), [(ROWS, "quarantined"), (3, "validated")], ids=["whole-hour", "some-rows"])
def test_a_quarantine_killed_before_its_commit_is_redone_once(tmp_path: Path, bad: int, status: str) -> None:
    lake = tmp_path / "lake"
    write_hour(lake, long_queries(bad))
    version = table.open_table(lake).version()
    killed(lake, "validate", "before:validate", TOLERANT)
    # the window: a report on disk for rows still live (extracted); it is no quarantine
    (orphan,) = folders(lake)
    assert (orphan / lk.QUARANTINE_FILE).is_file() and table.open_table(lake).version() == version
    assert lk.partition(lake, START).status == "extracted" and lk.quarantine_attempts(lake, START) == []
    assert lq.row_counts(lake, START)["quarantined"] == 0
    records = lk.partition_dir(lake, START)  # the hour's record, written before its commit too: pending, not its record
    assert (records / files.PENDING_VALIDATION_FILE).is_file() == (status == "validated")
    assert not (records / files.VALIDATION_FILE).exists()

    report = validate_hour(lake, START, ValidationSettings(**TOLERANT))  # the rerun: the orphan goes, the quarantine is done once
    assert report.status == status, report.summary()
    assert sorted(p.name for p in records.glob("*")) == ([files.VALIDATION_FILE] if status == "validated" else [])
    (folder,) = folders(lake)
    assert folder != orphan and lk.quarantine_attempts(lake, START) == [folder]
    counts = lq.row_counts(lake, START)
    assert (counts["quarantined"], counts["total"]) == (bad, ROWS)
    assert table.hour_versions(table.open_table(lake), START)[-1][lk.REPORT_KEY] == lk.folder_name(lake, folder)


def test_a_readmission_killed_after_its_commit_is_finished_not_repeated(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write_hour(lake, long_queries(3))
    assert validate_hour(lake, START, ValidationSettings(**TOLERANT)).quarantined_rows == 3
    (source,) = lk.quarantine_attempts(lake, START)
    killed(lake, "readmit", "after:readmit", FIXED)
    # the window: the rows are validated in the table, their folder is not marked yet; the log
    # says it was re-admitted, so it no longer counts as quarantined
    commits = table.hour_versions(table.open_table(lake), START)
    assert commits[-1]["event"] == "readmit" and not lk.readmitted(source)
    assert lk.quarantine_attempts(lake, START) == []
    assert lq.row_counts(lake, START)["quarantined"] == 0

    again = readmit_hour(lake, START, ValidationSettings(**FIXED), "query length rule reviewed (#12)")
    assert again.status == "validated", again.summary()
    assert [c["event"] for c in table.hour_versions(table.open_table(lake), START)] == [c["event"] for c in commits]
    marked = json.loads((source / lk.READMITTED_FILE).read_text())
    assert marked["repaired"] is True and marked["version"] == commits[-1]["version"]
    record = files.read_json(lk.partition_dir(lake, START) / files.VALIDATION_FILE)  # the re-admission's, not the one before
    assert (record["part"], record["version"], record["live_rows"]) == (READMITTED, commits[-1]["version"], ROWS)
    assert marked["reason"] == "query length rule reviewed (#12)"
    counts = lq.row_counts(lake, START)
    assert (counts["validated"], counts["quarantined"], counts["total"]) == (ROWS, 0, ROWS)


def off_contract() -> pa.Table:
    """An hour the table cannot hold (event_ts in ns): staged, then quarantined whole as a file."""
    rows = pa.Table.from_pandas(good_frame(), preserve_index=False).cast(lk.SEARCH_LOG_SCHEMA)
    return rows.set_column(1, pa.field("event_ts", pa.timestamp("ns", tz="UTC")),
                           rows["event_ts"].cast(pa.timestamp("ns", tz="UTC")))


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_whole_extraction_quarantine_killed_at_its_move_loses_nothing(tmp_path: Path, when: str) -> None:
    """The report is written before the staged file moves in: killed before the move, the rows are
    still staged (the report not listed); after it, the quarantine is whole. (Moved first, a kill
    left a rows file without a report: listed nowhere, the hour "missing", its rows lost.)"""
    lake = tmp_path / "lake"
    write_hour(lake, off_contract())
    killed(lake, "validate", when, fault="KILL_AT_MOVE")
    assert lq.row_counts(lake, START)["total"] == ROWS  # nothing lost, nothing counted twice
    assert lk.partition(lake, START).status == ("extracted" if when == "before" else "quarantined")
    report = validate_hour(lake, START, ValidationSettings())  # the rerun
    assert report.status == "quarantined"
    (folder,) = folders(lake)
    assert (folder / lk.QUARANTINED_ROWS_FILE).is_file() and lk.staged_file(lake, START) is None
    assert lq.row_counts(lake, START)["quarantined_whole"] == ROWS


def test_a_whole_extraction_readmitted_and_killed_is_not_readmitted_twice(tmp_path: Path) -> None:
    """An extraction the table could not hold, quarantined whole as a file: re-admitting it twice
    would put its rows in the table twice."""
    lake = tmp_path / "lake"
    write_hour(lake, off_contract())
    assert validate_hour(lake, START, ValidationSettings()).status == "quarantined"
    (source,) = lk.quarantine_attempts(lake, START)
    assert (source / lk.QUARANTINED_ROWS_FILE).is_file()
    killed(lake, "readmit", "after:readmit")
    assert lq.row_counts(lake, START)["total"] == ROWS  # the file no longer counts: its rows are in the table

    readmit_hour(lake, START, ValidationSettings(), "event_ts unit fixed in the source (#13)")
    counts = lq.row_counts(lake, START)
    assert (counts["validated"], counts["quarantined"], counts["total"]) == (ROWS, 0, ROWS)
    assert lk.readmitted(source)
    assert [c["event"] for c in table.hour_versions(table.open_table(lake), START)].count("readmit") == 1


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_staged_extraction_validated_and_killed_at_its_commit_loses_nothing(tmp_path: Path, when: str) -> None:
    """Staged rows that pass (the columns' types fit the contract, a flag did not): committed into the
    table, then the staged file deleted. (Deleted first, a kill before the commit lost the rows.)"""
    lake = tmp_path / "lake"
    rows = pa.Table.from_pandas(good_frame(), preserve_index=False).cast(lk.SEARCH_LOG_SCHEMA)
    rows = rows.cast(pa.schema([f.with_nullable(f.name != "event_id") for f in rows.schema]))
    write_hour(lake, rows)
    assert lk.staged_file(lake, START) is not None
    killed(lake, "validate", f"{when}:validate")
    assert lq.row_counts(lake, START)["total"] == ROWS  # nothing lost, nothing counted twice
    assert validate_hour(lake, START, ValidationSettings()).status == "validated"  # the rerun
    counts = lq.row_counts(lake, START)
    assert (counts["validated"], counts["total"]) == (ROWS, ROWS) and lk.staged_file(lake, START) is None
    assert not lk.staging_dir(lake, START).exists()
    events = [c["event"] for c in table.hour_versions(table.open_table(lake), START)]
    assert events == ["validate"]  # one commit: the rerun did not add the rows again


def late_rows(rows: int = 20) -> pd.DataFrame:
    """Rows of the hour that arrived after its first extraction (event ids of their own)."""
    frame = good_frame(rows=rows, seed=7)
    return frame.assign(event_id="late-" + frame["event_id"])


@pytest.mark.parametrize("late", [False, True], ids=["first", "late-rows"])
def test_a_validation_killed_after_its_commit_keeps_the_hours_record(tmp_path: Path, late: bool) -> None:
    """The commit validates the hour's rows, then the record (`_validation.json`: the statistics later
    hours' drift checks compare with, the table version) is written. Killed in between, the hour was
    validated in the table with no record (or, for late rows, the one before), and validating again
    found nothing pending: the record stayed missing (behind). The rerun must leave the record an
    uninterrupted run writes (`twin`), naming the commit that validated the rows."""
    lake, twin = tmp_path / "lake", tmp_path / "twin"
    for root in (lake, twin):
        write_hour(root, good_frame())
        if late:
            assert validate_hour(root, START, ValidationSettings()).status == "validated"
            write_hour(root, late_rows())
    assert validate_hour(twin, START, ValidationSettings()).status == "validated"
    killed(lake, "validate", "after:validate")
    commit = table.hour_versions(table.open_table(lake), START)[-1]
    part = lk.partition(lake, START)
    assert commit["event"] == "validate" and part.status == "validated" and not part.pending_parts
    if not late:  # before the rerun, the next hour's drift reference already has this hour (its pending record)
        reference = lk.validated_statistics(lake, START + HOUR, 48, 24, None)
        assert [r["rows"] for r in reference] == [ROWS]

    report = validate_hour(lake, START, ValidationSettings())  # the rerun (the task's retry)
    assert report.status == "validated", report.summary()
    assert table.hour_versions(table.open_table(lake), START)[-1] == commit  # nothing committed again
    folder = lk.partition_dir(lake, START)
    record = files.read_json(folder / files.VALIDATION_FILE)
    want = files.read_json(twin / folder.relative_to(lake) / files.VALIDATION_FILE)
    live = ROWS + (20 if late else 0)
    assert (record["version"], record["sha256"], record["live_rows"]) == (commit["version"], part.manifest["sha256"], live)
    assert record["statistics"]["rows"] == live  # of the hour's validated rows, late ones included
    for r in (record, want):
        r.pop("validated_at"), r.pop("sha256")  # a time, and the identity of files named at random
    assert record == want
    assert sorted(p.name for p in folder.iterdir()) == [files.VALIDATION_FILE]
