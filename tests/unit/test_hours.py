"""`Hour`: parsed once at the edge, written in the one ISO form, kept an Hour by arithmetic."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest

from incremental.errors import InputError
from incremental.hours import HOUR, Hour, hours, iso_hour, parse_hour


def test_an_hour_writes_itself_in_the_one_iso_form() -> None:
    hour = parse_hour("2026-01-01T09:00")
    assert type(hour) is Hour
    assert str(hour) == f"{hour}" == iso_hour(hour) == "2026-01-01T09:00Z"
    assert json.dumps({"hour": f"{hour}"}) == '{"hour": "2026-01-01T09:00Z"}'
    # every other form is a datetime's
    assert f"{hour:%Y%m%dT%H}" == "20260101T09" and hour.isoformat() == "2026-01-01T09:00:00+00:00"


@pytest.mark.parametrize("edge", [
    "2026-01-01T09:00Z", "2026-01-01T09:00", "2026-01-01T10:00+01:00",
    datetime(2026, 1, 1, 9), datetime(2026, 1, 1, 11, tzinfo=timezone(timedelta(hours=2))),
    pd.Timestamp("2026-01-01 09:00", tz="UTC"), Hour(2026, 1, 1, 9, tzinfo=UTC),
])
def test_whatever_comes_in_at_the_edge_becomes_an_hour(edge: str | datetime) -> None:
    hour = parse_hour(edge)
    assert type(hour) is Hour and hour.tzinfo is UTC and hour == datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert str(hour) == "2026-01-01T09:00Z"


def test_off_the_hour_is_refused() -> None:
    with pytest.raises(InputError, match="not on the hour"):
        parse_hour("2026-01-01T09:30")


def test_arithmetic_and_copies_keep_an_hour() -> None:
    hour = parse_hour("2026-01-01T23:00")
    for value in (hour + HOUR, HOUR + hour, hour - 2 * HOUR, hour.replace(day=2), hour.astimezone(UTC),
                  pickle.loads(pickle.dumps(hour))):
        assert type(value) is Hour
    assert str(hour + HOUR) == "2026-01-02T00:00Z"
    assert [str(h) for h in hours(hour, hour + 2 * HOUR)] == ["2026-01-01T23:00Z", "2026-01-02T00:00Z"]
    assert hour - datetime(2026, 1, 1, 22, tzinfo=UTC) == HOUR  # a difference is a timedelta


def test_an_hour_is_a_datetime_to_everything_else() -> None:
    hour = parse_hour("2026-01-01T09:00")
    plain = datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert hour == plain and hash(hour) == hash(plain) and {plain: 1}[hour] == 1
    assert pd.Timestamp(hour) == pd.Timestamp("2026-01-01 09:00", tz="UTC")
    assert sorted([hour + HOUR, plain - HOUR, hour]) == [plain - HOUR, hour, hour + HOUR]
