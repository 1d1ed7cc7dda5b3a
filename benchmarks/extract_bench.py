"""Extraction speed: `extract_hour` on a 1M-row hour vs DuckDB's own `COPY (query) TO 'x.parquet'`.

Goal: at least half of DuckDB's speed. Both run the same SQL (sql/extract_search_logs.sql) on
the same DuckDB file in one process, alternately, best of N; the ratio is what counts (timings
on these machines vary run to run).

    .venv/bin/python benchmarks/extract_bench.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

from incremental import extract, lake  # noqa: E402
from incremental.warehouse import Warehouse, _duckdb_params, sql_text  # noqa: E402

HOUR = datetime(2026, 1, 1, 12, tzinfo=UTC)


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        warehouse = build(tmp / "warehouse.duckdb", args.rows)
        query = _duckdb_params(sql_text("extract_search_logs"))
        ours, theirs = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            manifest = extract.extract_hour(warehouse, tmp / "lake", HOUR)
            ours.append(time.perf_counter() - t)
            con = duckdb.connect(str(tmp / "warehouse.duckdb"))
            con.execute("SET TimeZone = 'UTC'")
            t = time.perf_counter()
            con.execute(f"COPY ({query}) TO '{tmp / 'copy.parquet'}' (FORMAT parquet)",
                        {"start": HOUR, "end": HOUR + lake.HOUR})
            theirs.append(time.perf_counter() - t)
            con.close()
        assert manifest["rows"] == args.rows, manifest["rows"]
        ours_s, theirs_s = min(ours), min(theirs)
        record("extract", {
            "rows": args.rows,
            "extract_hour_seconds": round(ours_s, 3),
            "extract_hour_rows_per_s": round(args.rows / ours_s),
            "duckdb_copy_seconds": round(theirs_s, 3),
            "duckdb_copy_rows_per_s": round(args.rows / theirs_s),
            "speed_ratio_vs_duckdb_copy": round(theirs_s / ours_s, 3),
            "goal": "speed_ratio_vs_duckdb_copy >= 0.5",
            "goal_met": theirs_s / ours_s >= 0.5,
            "parquet_bytes": manifest["bytes"],
            "all_runs_seconds": {"extract_hour": [round(x, 3) for x in ours], "duckdb_copy": [round(x, 3) for x in theirs]},
        }, packages=("duckdb", "pyarrow"))


if __name__ == "__main__":
    main()
