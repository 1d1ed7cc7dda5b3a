"""Long work shows progress (done / total, rate, time left); short work stays quiet."""

from __future__ import annotations

import logging

import pytest

from incremental.progress import Progress, duration


def test_lines_say_how_far_how_fast_and_how_long(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="incremental.progress")
    p = Progress("scoring", 200, unit="rows", every_s=0.0)
    p.update(50)
    p.finish(200, "anchor")
    first, last = (r.getMessage() for r in caplog.records)
    assert first.startswith("scoring: 50/200 rows (25%) |") and "rows/s" in first and "left" in first
    assert last.startswith("scoring: 200/200 rows (100%) |") and last.endswith("| anchor | done")


def test_short_work_says_nothing_unless_asked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="incremental.progress")
    quiet = Progress("scoring", 10, unit="rows", always_final=False)  # every_s not reached
    quiet.update(5)
    quiet.finish(10)
    assert caplog.records == []
    Progress("training", 3).finish(3)  # training always ends with a line
    assert len(caplog.records) == 1


def test_durations_read_as_minutes_and_seconds() -> None:
    assert (duration(59.4), duration(61), duration(float("nan"))) == ("59s", "1m01s", "?")
