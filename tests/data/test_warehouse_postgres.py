"""The PostgreSQL columnar read (`COPY (query) TO STDOUT` -> Arrow) against the real PostgreSQL:
the same values and types as reading the rows through SQLAlchemy, with bound parameters."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import sqlalchemy as sa

from incremental.warehouse import Warehouse

TEXTS = ["plain", "", None, "comma, \"quote\" and 'apostrophe'", "two\nlines\r\nthree", "100% _x\\y", "naïve ☃",
         "NULL", "\\N", "t"]
QUERY = """
SELECT v.i, v.s, v.i * 10000000000 AS big, (v.i % 3)::smallint AS small, v.i / 3.0::float8 AS f8,
       (v.i / 3.0)::float4 AS f4, v.i % 2 = 0 AS even, DATE '2026-03-01' + v.i::int AS d,
       TIMESTAMP '2026-03-01 10:00:00.123456' + v.i * INTERVAL '1 hour' AS ts,
       TIMESTAMPTZ '2026-03-01 10:00:00+05:30' + v.i * INTERVAL '1 second' AS tstz
FROM (SELECT * FROM unnest(CAST(:texts AS text[])) WITH ORDINALITY AS t(s, i)) AS v
WHERE v.i >= :first  -- a trailing comment
"""


def rows_through_sqlalchemy(w: Warehouse, query: str, params: dict) -> list[dict]:
    engine = w._engine()
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(query), params)
            return [dict(zip(result.keys(), row, strict=True)) for row in result]
    finally:
        engine.dispose()


def test_copy_read_matches_row_read(postgres_url: str) -> None:
    w = Warehouse(postgres_url)
    params = {"texts": TEXTS, "first": 1}
    table = w._pg_query_arrow(QUERY, params)
    assert table is not None, "every column type here has a columnar mapping"
    assert table.schema == pa.schema({
        "i": pa.int64(), "s": pa.string(), "big": pa.int64(), "small": pa.int16(), "f8": pa.float64(),
        "f4": pa.float32(), "even": pa.bool_(), "d": pa.date32(), "ts": pa.timestamp("us"),
        "tstz": pa.timestamp("us", tz="UTC"),
    })
    expected = rows_through_sqlalchemy(w, QUERY, params)
    got = table.to_pylist()
    assert [r["s"] for r in got] == TEXTS  # NULL and '' stay apart; quotes, newlines, 'NULL', '\N' are data
    assert len(got) == len(expected) == len(TEXTS)
    for mine, theirs in zip(got, expected, strict=True):
        for key in ("i", "s", "big", "small", "f8", "even", "d", "ts"):
            assert mine[key] == theirs[key], (key, mine[key], theirs[key])
        assert mine["f4"] == float(pa.scalar(theirs["f4"], pa.float32()).as_py())
        assert mine["tstz"] == theirs["tstz"].astimezone(UTC)
    assert got[0]["tstz"] == datetime(2026, 3, 1, 4, 30, 1, tzinfo=UTC) and got[0]["d"] == date(2026, 3, 2)
    # bound, not formatted: the parameter's value selects rows
    assert w._pg_query_arrow(QUERY, {"texts": TEXTS, "first": 9}).column("s").to_pylist() == TEXTS[8:]


def test_other_types_are_left_to_the_row_read(postgres_url: str) -> None:
    """numeric (and anything else without a lossless CSV mapping) makes query_arrow read rows instead."""
    w = Warehouse(postgres_url)
    assert w._pg_query_arrow("SELECT CAST(:x AS numeric) AS n, 1 AS i", {"x": "1.25"}) is None
    assert rows_through_sqlalchemy(w, "SELECT CAST(:x AS numeric) AS n", {"x": "1.25"}) == [{"n": Decimal("1.25")}]
