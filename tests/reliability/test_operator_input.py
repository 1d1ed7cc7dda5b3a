"""What an operator types (issue 20, defects 16-22): the CLI in subprocesses, on real parts.

- `run-hour` over a range stops at a quarantined hour and names the hours it did not attempt.
- An hour that has not closed yet is not extracted.
- One rule for reasons: at least 10 characters wherever a person's decision is recorded.
- `drift --hours` is at least 1; `simulate --drift-at` after the window is refused.
- A start whose UTC offset moves it before year 1 gets the right reason.
- `history` shows the deciding reason of a rejection first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import assert_clean_error, cli, cli_env

from incremental.data import lake
from incremental.errors import MIN_REASON_CHARS, InputError, require_reason
from incremental.hours import Hour, iso_hour
from incremental.registry.history import format_history


def _usage_error(result, *needles: str) -> None:
    """argparse's answer: exit 2, its one `error:` line naming each needle, no traceback."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    [line] = [x for x in result.stderr.splitlines() if "error:" in x]
    for needle in needles:
        assert needle in line, line


# --- 16: a quarantined hour in a range ---------------------------------------------------------------
def test_run_hour_names_the_hours_it_did_not_attempt(fresh_home: Path) -> None:
    env = cli_env(fresh_home)
    assert cli(env, "simulate", "--start", "2026-06-01T10:00", "--end", "2026-06-01T11:00", "--rate", "200",
               "--fault", "duplicate_event_id").returncode == 0
    assert cli(env, "simulate", "--start", "2026-06-01T11:00", "--end", "2026-06-01T13:00", "--rate", "200").returncode == 0
    result = cli(env, "run-hour", "--start", "2026-06-01T10:00", "--end", "2026-06-01T13:00")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "hour 2026-06-01T10:00Z was quarantined" in last
    assert "not attempted: 2026-06-01T11:00Z .. 2026-06-01T12:00Z" in last, last
    assert lake.partition(fresh_home / "lake", Hour(2026, 6, 1, 11, tzinfo=UTC)).status == "missing"


# --- 17: an hour that has not closed ------------------------------------------------------------------
def test_an_hour_that_has_not_closed_is_not_extracted(fresh_home: Path) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for start in (now, now + timedelta(days=182)):
        result = cli(cli_env(fresh_home), "extract", "--start", start.strftime("%Y-%m-%dT%H:%M"))
        assert_clean_error(result, iso_hour(start), "has not closed yet")
    assert not (fresh_home / "lake" / "search_logs").exists()


# --- 18: one rule for reasons ------------------------------------------------------------------------
@pytest.mark.parametrize("reason", ["", "  ", "ok", "123456789", " short   "])
def test_a_reason_shorter_than_the_rule_is_refused(reason: str) -> None:
    with pytest.raises(InputError, match=f"at least {MIN_REASON_CHARS} characters"):
        require_reason(reason, "promote")
    assert require_reason("  reviewed: fine  ", "promote") == "reviewed: fine"


@pytest.mark.parametrize("args", [
    ["promote", "--version", "1", "--reason", "ok"],
    ["rollback", "--reason", "ok"],
    ["readmit", "--start", "2026-06-01T10:00", "--reason", "fixed"],
    ["benchmark", "freeze", "--refresh", "--start", "2026-06-01T10:00", "--end", "2026-06-01T11:00"],
    ["run-hour", "--start", "2026-06-01T10:00", "--force-promote", "ok"],
])
def test_every_reason_follows_the_one_rule(fresh_home: Path, args: list[str]) -> None:
    assert_clean_error(cli(cli_env(fresh_home), *args), f"at least {MIN_REASON_CHARS} characters")


# --- 19, 20, 21: arguments out of range ----------------------------------------------------------------
@pytest.mark.parametrize("hours", ["0", "-1", "x"])
def test_drift_hours_must_be_positive(fresh_home: Path, hours: str) -> None:
    _usage_error(cli(cli_env(fresh_home), "drift", "--hours", hours), "--hours")


def test_drift_at_after_the_window_is_refused(fresh_home: Path) -> None:
    result = cli(cli_env(fresh_home), "simulate", "--start", "2026-06-01T00:00", "--end", "2026-06-01T02:00",
                 "--rate", "50", "--scenario", "drift", "--drift-at", "2026-06-01T05:00")
    assert_clean_error(result, "--drift-at 2026-06-01T05:00Z", "no hour of the window would drift")
    assert not (fresh_home / "warehouse.duckdb").exists()


def test_an_hour_not_on_the_hour_is_refused_where_it_is_parsed(fresh_home: Path) -> None:
    """The hour is parsed once, at the edge (the CLI's arguments; the DAGs' data interval, tested in
    tests/dags): below it, the stages take the datetime as it is (extract_hour checked it again)."""
    for command in ("extract", "run-hour", "train"):
        _usage_error(cli(cli_env(fresh_home), command, "--start", "2026-06-01T10:30"), "--start", "not on the hour")
    assert not (fresh_home / "lake").exists()


def test_a_start_moved_before_year_1_by_its_offset_gets_the_right_reason(fresh_home: Path) -> None:
    result = cli(cli_env(fresh_home), "partitions", "--start", "0001-01-01T00:00+01:00")
    _usage_error(result, "before year 1")
    assert "beyond year 9999" not in result.stderr
    result = cli(cli_env(fresh_home), "partitions", "--start", "9999-12-31T23:00")
    _usage_error(result, "beyond year 9999")


# --- 22: history shows the deciding reason first ------------------------------------------------------
def test_history_shows_the_deciding_reason_of_a_stale_rejection_first() -> None:
    approval = "approved: all 12 checks passed; " + "; ".join(f"check {i}: within noise of the champion" for i in range(6))
    stale = "stale: trained from version 3 but the champion is now 4; retrain from the current champion"
    row = {"champion": False, "version": "5", "decision": "rejected", "override": None, "interval": "06-01T10",
           "parent": "3", "lake_table_version": "12", "mode": "normal", "holdout_auc": 0.7, "holdout_ndcg_diff": 0.0, "anchor_auc": 0.7,
           "worst_category_auc": 0.6, "champion_periods": [], "reasons": [approval, stale]}
    [line] = [x for x in format_history([row]).splitlines() if x.strip().startswith("5")]
    assert "stale: trained from version 3" in line, line
    assert line.index("stale:") < line.index("approved:") if "approved:" in line else True
