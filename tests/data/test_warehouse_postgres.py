"""The PostgreSQL columnar read (`COPY (query) TO STDOUT` -> Arrow) against the real PostgreSQL:
the same values and types as reading the rows through SQLAlchemy, with bound parameters."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import sqlalchemy as sa

from incremental.data.warehouse import Warehouse
from incremental.hours import Hour

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
    # a value Arrow cannot parse, after many rows it could: the whole read falls back, nothing hangs
    many = "SELECT CASE WHEN i < 150000 THEN TIMESTAMPTZ '2026-03-01 10:00:00+00' ELSE CAST(:v AS timestamptz) END AS t " \
           "FROM generate_series(1, 150000) AS g(i)"
    assert w._pg_query_arrow(many, {"v": "infinity"}) is None
    assert w._pg_query_arrow(many, {"v": "2026-03-01 11:00:00+00"}).num_rows == 150000


def test_many_csv_blocks_give_duckdbs_bytes(tmp_path, postgres_url: str, monkeypatch) -> None:
    """An hour bigger than one block of Arrow's CSV reader: still one partition byte-identical to DuckDB's."""
    import incremental.data.warehouse as wh
    from incremental.data import extract

    hour = Hour(2026, 3, 1, 10, tzinfo=UTC)
    n = 3000
    products = pa.table({"product_id": [f"p{i}" for i in range(50)], "title": [f"title {i}, \"x\"" for i in range(50)],
                         "brand": [None if i % 7 == 0 else f"b{i % 5}" for i in range(50)],
                         "category": [f"c{i % 4}" for i in range(50)], "price": [i + 0.25 for i in range(50)],
                         "created_at": pa.array([hour] * 50, pa.timestamp("us", tz="UTC"))})
    ts = pa.array([hour.replace(minute=i % 60, second=i % 59, microsecond=i) for i in range(n)], pa.timestamp("us", tz="UTC"))
    impressions = pa.table({
        "event_id": [f"e{i:06d}" for i in range(n)], "event_ts": ts, "ingested_at": ts,
        "session_id": [f"s{i // 8}" for i in range(n)], "user_id": [f"u{i // 24}" for i in range(n)],
        "query": ["" if i % 11 == 0 else f"q {i % 97}\nline" for i in range(n)], "product_id": [f"p{i % 53}" for i in range(n)],
        "position": pa.array([i % 8 + 1 for i in range(n)], pa.int32()),
        "clicked": pa.array([int(i % 9 == 0) for i in range(n)], pa.int32()),
    })
    monkeypatch.setattr(wh, "_PG_CSV_BLOCK", 4096)  # ~100 blocks instead of one
    shas = []
    for name, url in [("duck", f"duckdb:///{tmp_path / 'w.duckdb'}"), ("pg", postgres_url)]:
        w = Warehouse(url)
        w.init_schema()
        w.insert("products", products)
        w.insert("search_impressions", impressions)
        if name == "pg":
            assert w._pg_query_arrow(wh.sql_text("extract_search_logs"),
                                     {"start": hour, "end": hour.replace(hour=11)}).column(0).num_chunks == 1
        shas.append(extract.extract_hour(w, tmp_path / name, hour)["sha256"])
    assert shas[0] == shas[1]


def test_an_error_during_copy_is_raised_not_truncated(postgres_url: str) -> None:
    """Rows already sent before the server fails must not come back as a (short) result."""
    import psycopg
    import pytest

    w = Warehouse(postgres_url)
    query = "SELECT i, 1 / (i - :bad) AS boom FROM generate_series(1, 200000) AS g(i)"
    with pytest.raises(psycopg.errors.DivisionByZero):
        w._pg_query_arrow(query, {"bad": 150000})
    assert w._pg_query_arrow(query, {"bad": -1}).num_rows == 200000
