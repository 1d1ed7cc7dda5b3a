"""Hours: the unit of work of the whole pipeline, as a value.

An hour is an aware UTC `datetime` on the hour. It is parsed from text once, at the edge (the CLI's
arguments, the DAG's data interval, a record read back from disk: `parse_hour`), passed on as a
`datetime` below it, and written as text in one way only (`iso_hour`), in records, keys and messages.
A moment (when a record was written: its `at`) is written in one way too (`now_iso`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from incremental.errors import InputError

HOUR = timedelta(hours=1)


def parse_hour(text: str | datetime) -> datetime:
    """An ISO time (naive means UTC) that must fall on the hour; returns an aware UTC datetime."""
    value = datetime.fromisoformat(text) if isinstance(text, str) else text
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if (value.minute, value.second, value.microsecond) != (0, 0, 0):
        raise InputError(f"{text!r} is not on the hour: intervals are whole UTC hours")
    # a plain datetime, whatever came in (Airflow hands out pendulum DateTimes)
    return datetime(value.year, value.month, value.day, value.hour, tzinfo=UTC)


def iso_hour(hour: datetime) -> str:
    """The one way an hour is written in records, keys and messages: ``2026-01-01T09:00Z``.

    The inverse of `parse_hour`: hours travel as aware datetimes and become text only here
    (a naive datetime is taken as UTC, as `parse_hour` does; pandas Timestamps are datetimes).
    """
    value = hour.replace(tzinfo=UTC) if hour.tzinfo is None else hour.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%MZ}"


def hours(start: datetime, end: datetime) -> list[datetime]:
    """The hour starts in [start, end)."""
    out, hour = [], start
    while hour < end:
        out.append(hour)
        hour += HOUR
    return out


def now_iso() -> str:
    """The current UTC time to the second, for `at` and `extracted_at` fields (a moment, not an hour)."""
    return datetime.now(UTC).isoformat(timespec="seconds")
