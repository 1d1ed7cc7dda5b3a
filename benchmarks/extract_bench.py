"""Extraction speed: `extract_hour` on a 1M-row hour vs DuckDB's own `COPY (query) TO 'x.parquet'`.

Goal: at least half of DuckDB's speed. Both run the same SQL (sql/extract_search_logs.sql) on
the same DuckDB file in one process, alternately, best of N; the ratio is what counts (timings
on these machines vary run to run).

Then the same rows in PostgreSQL (a throw-away database on --postgres, loaded through
`Warehouse.insert`): `extract_hour` there (the COPY-to-Arrow path), best of N, its ratio to the
same DuckDB COPY figure, a check that its partition has the same bytes as DuckDB's, and one run
of the row-by-row SQLAlchemy read it replaced (`--no-row-path` skips that).

    .venv/bin/python benchmarks/extract_bench.py [--rows 1000000] [--repeat 3] [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

from incremental.data import extract, table  # noqa: E402
from incremental.data.warehouse import Warehouse, _duckdb_params, sql_text  # noqa: E402
from incremental.hours import HOUR, Hour  # noqa: E402

BENCH_HOUR = Hour(2026, 1, 1, 12, tzinfo=UTC)


def build(path: Path, rows: int) -> Warehouse:
    warehouse = Warehouse(f"duckdb:///{path}")
    warehouse.init_schema()
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("""
        INSERT INTO products
        SELECT 'p' || i, 'product title number ' || i || ' cordless drill brushless 18v',
               'brand' || (i % 50), 'category' || (i % 12), (i % 500) + 0.99, TIMESTAMPTZ '2025-12-01 00:00:00+00'
        FROM range(20000) t(i)""")
    con.execute("""
        INSERT INTO search_impressions
        SELECT 'e' || lpad(i::VARCHAR, 9, '0'),
               TIMESTAMPTZ '2026-01-01 12:00:00+00' + to_microseconds((i * 3600000000 // $n)::BIGINT) - INTERVAL 20 SECOND,
               TIMESTAMPTZ '2026-01-01 12:00:00+00' + to_microseconds((i * 3600000000 // $n)::BIGINT),
               's' || (i // 10), 'u' || (i // 40), 'query words ' || (i % 997), 'p' || (hash(i) % 20000),
               (i % 10) + 1, CAST(hash(i * 7) % 9 = 0 AS INTEGER)
        FROM range($n) t(i)""", {"n": rows})
    con.close()
    return warehouse


@contextmanager
def postgres_copy(duck: Warehouse, admin_url: str) -> Iterator[tuple[Warehouse, float]]:
    """A throw-away PostgreSQL database holding the DuckDB warehouse's rows (and the seconds loading took)."""
    import psycopg

    name = f"extract_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql+psycopg://{admin_url.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
        pg = Warehouse(url)
        pg.init_schema()
        with duck._duckdb() as con:
            products = con.execute("SELECT * FROM products").to_arrow_table()
            impressions = con.execute("SELECT * FROM search_impressions").to_arrow_table()
        t = time.perf_counter()
        pg.insert("products", products)
        pg.insert("search_impressions", impressions)
        load_s = time.perf_counter() - t
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as con:
            con.execute("VACUUM ANALYZE")
        yield pg, load_s
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def row_path_seconds(pg: Warehouse, lake_root: Path) -> tuple[float, str]:
    """The PostgreSQL read the COPY path replaced: rows through SQLAlchemy, then Arrow from Python objects."""
    original = Warehouse._pg_query_arrow
    Warehouse._pg_query_arrow = lambda self, statement, params: None  # query_arrow then reads row by row
    try:
        t = time.perf_counter()
        manifest = extract.extract_hour(pg, lake_root, BENCH_HOUR)
        return time.perf_counter() - t, manifest["sha256"]
    finally:
        Warehouse._pg_query_arrow = original


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="an admin URL; the benchmark creates and drops its own database there")
    parser.add_argument("--no-postgres", action="store_true", help="DuckDB only")
    parser.add_argument("--no-row-path", action="store_true", help="skip the slow row-by-row PostgreSQL read")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        tmp = Path(tmp)
        warehouse = build(tmp / "warehouse.duckdb", args.rows)
        pg, load_s = (None, 0.0) if args.no_postgres else stack.enter_context(postgres_copy(warehouse, args.postgres))
        query = _duckdb_params(sql_text("extract_search_logs"))
        ours, theirs, pg_runs = [], [], []
        for i in range(args.repeat):  # alternately, so a busy moment on the machine hits all three alike
            t = time.perf_counter()  # a fresh lake each time: a first extraction (again, nothing is new: no commit)
            manifest = extract.extract_hour(warehouse, tmp / f"lake-{i}", BENCH_HOUR)
            ours.append(time.perf_counter() - t)
            con = duckdb.connect(str(tmp / "warehouse.duckdb"))
            con.execute("SET TimeZone = 'UTC'")
            t = time.perf_counter()
            con.execute(f"COPY ({query}) TO '{tmp / 'copy.parquet'}' (FORMAT parquet)",
                        {"start": BENCH_HOUR, "end": BENCH_HOUR + HOUR})
            theirs.append(time.perf_counter() - t)
            con.close()
            if pg is not None:
                t = time.perf_counter()
                pg_manifest = extract.extract_hour(pg, tmp / f"lake-pg-{i}", BENCH_HOUR)
                pg_runs.append(time.perf_counter() - t)
        assert manifest["rows"] == args.rows, manifest["rows"]
        ours_s, theirs_s = min(ours), min(theirs)
        postgres = {}
        if pg is not None:
            assert pg_manifest["rows"] == args.rows, pg_manifest["rows"]
            pg_s = min(pg_runs)
            postgres = {
                "postgres_extract_hour_seconds": round(pg_s, 3),
                "postgres_extract_hour_rows_per_s": round(args.rows / pg_s),
                "postgres_speed_ratio_vs_duckdb_copy": round(theirs_s / pg_s, 3),
                "postgres_same_bytes_as_duckdb": pg_manifest["sha256"] == manifest["sha256"],
                "postgres_load_seconds": round(load_s, 3),
            }
            if not args.no_row_path:
                rows_s, rows_sha = row_path_seconds(pg, tmp / "lake-pg-rows")
                postgres.update({"postgres_row_path_seconds": round(rows_s, 3),
                                 "postgres_row_path_rows_per_s": round(args.rows / rows_s),
                                 "postgres_row_path_same_bytes": rows_sha == manifest["sha256"]})
        runs = {"extract_hour": ours, "duckdb_copy": theirs, **({"postgres_extract_hour": pg_runs} if pg_runs else {})}
        record("extract", {
            "rows": args.rows,
            "load_average_1min": round(os.getloadavg()[0], 2),  # other work on the machine skews all figures
            "extract_hour_seconds": round(ours_s, 3),
            "extract_hour_rows_per_s": round(args.rows / ours_s),
            "duckdb_copy_seconds": round(theirs_s, 3),
            "duckdb_copy_rows_per_s": round(args.rows / theirs_s),
            "speed_ratio_vs_duckdb_copy": round(theirs_s / ours_s, 3),
            "goal": "speed_ratio_vs_duckdb_copy >= 0.5",
            "goal_met": theirs_s / ours_s >= 0.5,
            "table_bytes": sum(f.size for f in table.files_of(table.open_table(tmp / "lake-0"))),
            **postgres,
            "all_runs_seconds": {k: [round(x, 3) for x in v] for k, v in runs.items()},
        }, packages=("duckdb", "pyarrow") + (() if args.no_postgres else ("psycopg",)))


if __name__ == "__main__":
    main()
