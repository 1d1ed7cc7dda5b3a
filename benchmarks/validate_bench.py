"""Benchmark: `validate_hour` on one hour of 1,000,000 valid rows (synthetic, self-made).

Builds the frame, appends it to a temporary lake's Delta table (status extracted), times
`validate_hour` (read + schema + GX suite + text checks + drift + the commit + `_validation.json`),
and records the figures in `benchmarks/results/validate.json`.

    .venv/bin/python benchmarks/validate_bench.py [--rows N] [--repeat K] [--no-record]

The target is under 10 s for 1M rows on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from incremental.config import ValidationSettings  # noqa: E402
from incremental.data import lake as lk  # noqa: E402
from incremental.data import table as delta  # noqa: E402
from incremental.data.extract import write_rows  # noqa: E402
from incremental.hours import Hour  # noqa: E402
from incremental.validation.validate import validate_hour  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "validate.json"
START = Hour(2026, 1, 1, 5, tzinfo=UTC)


def synthetic_table(rows: int, start: datetime = START, seed: int = 0) -> pa.Table:
    """`rows` valid search-log rows ingested in [start, start + 1h)."""
    rng = np.random.default_rng(seed)
    us = 3_600_000_000
    base = np.datetime64(start.replace(tzinfo=None), "us")
    ingested = base + rng.integers(0, us, rows).astype("timedelta64[us]")
    event = ingested - rng.integers(0, 600_000_000, rows).astype("timedelta64[us]")
    words = np.array(
        ["red", "shoes", "usb", "cable", "laptop", "bag", "o'neill", "kids", "desk", "lamp", "42"], dtype=object
    )
    queries = np.array([" ".join(rng.choice(words, k)) for k in rng.integers(1, 4, 5_000)], dtype=object)
    titles = np.array([f"Product {i} " + " ".join(rng.choice(words, 6)) for i in range(20_000)], dtype=object)
    categories = np.array(["shoes", "electronics", "bags", "home", "toys"], dtype=object)
    product = rng.integers(0, 20_000, rows)
    columns = {
        "event_id": pa.array(np.char.add("ev-", np.arange(rows).astype(str)).astype(object), pa.string()),
        "event_ts": pa.array(event, pa.timestamp("us", tz="UTC")),
        "ingested_at": pa.array(ingested, pa.timestamp("us", tz="UTC")),
        "session_id": pa.array(np.char.add("s-", (np.arange(rows) // 10).astype(str)).astype(object), pa.string()),
        "user_id": pa.array(np.char.add("u-", rng.integers(0, 50_000, rows).astype(str)).astype(object), pa.string()),
        "query": pa.array(queries[rng.integers(0, len(queries), rows)], pa.string()),
        "product_id": pa.array(np.char.add("p-", product.astype(str)).astype(object), pa.string()),
        "position": pa.array(rng.integers(1, 41, rows).astype(np.int32), pa.int32()),
        "clicked": pa.array((rng.random(rows) < 0.1).astype(np.int32), pa.int32()),
        "title": pa.array(titles[product], pa.string()),
        "brand": pa.array(np.array(["acme", "globex", "initech"], dtype=object)[product % 3], pa.string()),
        "category": pa.array(categories[product % 5], pa.string()),
        "price": pa.array(rng.uniform(1, 500, rows).round(2), pa.float64()),
    }
    return pa.table(columns, schema=lk.SEARCH_LOG_SCHEMA)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    t0 = time.perf_counter()
    table = synthetic_table(args.rows)
    build_s = time.perf_counter() - t0
    settings = ValidationSettings()
    timings = []
    with tempfile.TemporaryDirectory() as tmp:
        lake = Path(tmp) / "lake"
        write_rows(lake, START, table)
        # earlier validated hours (0.4x the volume: inside the warning ratio) so the drift checks run too
        for k in range(1, settings.drift_min_history + 1):
            earlier = START - timedelta(hours=k)
            write_rows(lake, earlier, synthetic_table(max(args.rows * 2 // 5, 100), earlier, seed=k))
            validate_hour(lake, earlier, settings)
        for _ in range(args.repeat):
            # an hour already validated is not validated again (nothing pending): start each run afresh
            if lk.partition(lake, START).status == "validated":  # back to extracted, untimed
                delta.overwrite_hour(lake, START, delta.with_status(table, START, delta.EXTRACTED), "benchmark reset",
                                     {}, keep_validated=False, read=delta.open_table(lake))
            t0 = time.perf_counter()
            report = validate_hour(lake, START, settings)
            timings.append(time.perf_counter() - t0)
            if report.status != "validated":
                print(report.summary(), file=sys.stderr)
                return 1
    seconds = min(timings)
    result = {
        "benchmark": "validate_hour, one hour of valid synthetic rows (read, sha256, schema, GX, text, drift, write)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": args.rows,
        "seconds": round(seconds, 3),
        "seconds_all_runs": [round(t, 3) for t in timings],
        "rows_per_second": round(args.rows / seconds),
        "target_seconds": 10.0,
        "checks": len(report.checks),
        "frame_build_seconds": round(build_s, 2),
        "machine": {
            "cpu_cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": {name: version(name) for name in ("great_expectations", "pandas", "pyarrow", "numpy")},
    }
    print(json.dumps(result, indent=2))
    if not args.no_record:
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
