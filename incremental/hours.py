"""Hours: the unit of work of the whole pipeline, as a value.

An hour is an `Hour`: an aware UTC `datetime` on the hour that writes itself as text in the one
way hours are written in records, keys and messages, ``2026-01-01T09:00Z`` (``str(hour)``,
``f"{hour}"``). It is parsed once, at the edge (the CLI's arguments, the DAG's data interval, a
record read back from disk or an Arrow/pandas time: `parse_hour`), and passed on as an `Hour` below
it, which needs no call back down here to be written. Arithmetic keeps it an `Hour`
(``hour + HOUR`` is the next one). `iso_hour` writes any other datetime the same way.
A moment (when a record was written: its `at`) is written in one way too (`now_iso`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeVar

from incremental.errors import InputError

HOUR = timedelta(hours=1)
_Time = TypeVar("_Time", bound=datetime)


class Hour(datetime):
    """An aware UTC datetime on the hour, made by `parse_hour`, written ``2026-01-01T09:00Z``.

    It is a `datetime` in every other way (compares, hashes and sorts with plain datetimes and
    pandas Timestamps; ``isoformat()`` and format specs such as ``f"{hour:%Y%m%dT%H}"`` are
    unchanged); only its plain text form is the hour's ISO form. Adding or subtracting a
    `timedelta` gives an `Hour`.
    """

    __slots__ = ()

    def __str__(self) -> str:  # also f"{hour}" (datetime's format with no spec is str)
        return iso_hour(self)


def parse_hour(text: str | datetime) -> Hour:
    """An ISO time (naive means UTC) that must fall on the hour; returns an aware UTC datetime."""
    value = datetime.fromisoformat(text) if isinstance(text, str) else text
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if (value.minute, value.second, value.microsecond) != (0, 0, 0):
        raise InputError(f"{text!r} is not on the hour: intervals are whole UTC hours")
    # an Hour, whatever came in (Airflow hands out pendulum DateTimes, pandas Timestamps, plain datetimes)
    return Hour(value.year, value.month, value.day, value.hour, tzinfo=UTC)


def iso_hour(hour: datetime) -> str:
    """The one way an hour is written in records, keys and messages: ``2026-01-01T09:00Z``.

    The inverse of `parse_hour`, and what ``str(hour)`` of an `Hour` gives: an `Hour` writes itself,
    this writes any other datetime the same way (a naive datetime is taken as UTC, as `parse_hour`
    does; pandas Timestamps are datetimes).
    """
    value = hour.replace(tzinfo=UTC) if hour.tzinfo is None else hour.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%MZ}"


def hours(start: _Time, end: datetime) -> list[_Time]:
    """The hour starts in [start, end) (`Hour`s from an `Hour`)."""
    out, hour = [], start
    while hour < end:
        out.append(hour)
        hour += HOUR
    return out


def now_iso() -> str:
    """The current UTC time to the second, for `at` and `extracted_at` fields (a moment, not an hour)."""
    return datetime.now(UTC).isoformat(timespec="seconds")
