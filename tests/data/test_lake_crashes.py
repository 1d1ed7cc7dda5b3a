"""A validation or a re-admission killed (SIGKILL: no handler, no `finally`) between its two steps
on the lake: the quarantine report it wrote and the table's commit, or the commit and the marks on
the quarantine folders its rows came from. The killed process is a real child, crashed by the
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
from incremental.data import lake as lk
from incremental.data import quarantine as lq
from incremental.data import table
from incremental.validation.validate import readmit_hour, validate_hour

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

    report = validate_hour(lake, START, ValidationSettings(**TOLERANT))  # the rerun: the orphan goes, the quarantine is done once
    assert report.status == status, report.summary()
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
