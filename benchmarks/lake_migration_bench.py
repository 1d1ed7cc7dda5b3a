"""Extraction and validation of a 1M-row hour, before and after the lake moved to Delta Lake, in one run.

The code *before* is a git revision of this repository (``--before``, default ``main``), exported to a
temporary folder; *after* is this working tree. Each side runs in a process of its own (its own
``incremental`` on the path) on the same inputs, alternately, ``--rounds`` times, so a busy moment
on the machine hits both alike; the figure per side is its best run, the ratio ``before / after``
(1.0: as fast; the goal is at least 0.8).

* extract: `extract_hour` of the hour from one DuckDB warehouse (`extract_bench.build`) into a fresh lake;
* validate: `validate_hour` of the hour (`validate_bench.synthetic_table`) in a fresh lake holding three
  validated earlier hours of 0.4x the volume (so the drift checks run), the hour written untimed first.

    .venv/bin/python benchmarks/lake_migration_bench.py [--before main] [--rows 1000000] [--rounds 2]

Results: `benchmarks/results/lake_migration.json`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from _record import record  # noqa: E402
from extract_bench import BENCH_HOUR, build  # noqa: E402
from validate_bench import START, synthetic_table  # noqa: E402

EXTRACT = r"""
import json, sys, tempfile, time
from pathlib import Path
from incremental.data import extract
from incremental.hours import parse_hour
from incremental.data.warehouse import Warehouse

warehouse, hour = Warehouse(sys.argv[1]), parse_hour(sys.argv[2])
with tempfile.TemporaryDirectory() as tmp:
    t = time.perf_counter()
    manifest = extract.extract_hour(warehouse, Path(tmp) / "lake", hour)
    print(json.dumps({"seconds": time.perf_counter() - t, "rows": manifest["rows"]}))
"""
VALIDATE = r"""
import json, sys, tempfile, time
from pathlib import Path
import pyarrow.parquet as pq
from incremental.config import ValidationSettings
from incremental.data import lake as lk
from incremental.hours import parse_hour
from incremental.validation.validate import validate_hour

if hasattr(lk, "write_partition"):  # before: Parquet parts + manifests
    put = lk.write_partition
else:  # after: the Delta table
    from incremental.data.extract import write_rows as put
settings = ValidationSettings()
hour = parse_hour(sys.argv[2])
with tempfile.TemporaryDirectory() as tmp:
    lake = Path(tmp) / "lake"
    for spec in sys.argv[3:]:
        path, start = spec.split("@")
        put(lake, parse_hour(start), pq.read_table(path))
        assert validate_hour(lake, parse_hour(start), settings).status == "validated"
    put(lake, hour, pq.read_table(sys.argv[1]))
    t = time.perf_counter()
    report = validate_hour(lake, hour, settings)
    print(json.dumps({"seconds": time.perf_counter() - t, "rows": report.rows, "status": report.status}))
"""


def export(revision: str, into: Path) -> Path:
    """The repository at `revision` (tracked files), in a folder of its own."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_side(tree: Path, script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{tree}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="the git revision of the code before")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", default="extract,validate", help="which to measure (comma-separated)")
    args = parser.parse_args()
    steps = [s for s in ("extract", "validate") if s in args.steps.split(",")]
    revision = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.before], check=True,
                              capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        before = export(args.before, tmp / "before")
        warehouse = build(tmp / "warehouse.duckdb", args.rows)
        pq.write_table(synthetic_table(args.rows), tmp / "hour.parquet")
        history = []
        for k in range(1, 4 if "validate" in steps else 1):
            earlier = START - timedelta(hours=k)
            pq.write_table(synthetic_table(max(args.rows * 2 // 5, 100), earlier, seed=k), tmp / f"h{k}.parquet")
            history.append(f"{tmp / f'h{k}.parquet'}@{earlier.isoformat()}")
        runs: dict[str, list[float]] = {f"{step}_{side}": [] for step in steps for side in ("before", "after")}
        for _ in range(args.rounds):
            for side, tree in (("before", before), ("after", ROOT)):
                if "extract" in steps:
                    got = run_side(tree, EXTRACT, warehouse.url, BENCH_HOUR.isoformat())
                    assert got["rows"] == args.rows, got
                    runs[f"extract_{side}"].append(got["seconds"])
                if "validate" in steps:
                    got = run_side(tree, VALIDATE, str(tmp / "hour.parquet"), START.isoformat(), *history)
                    assert got["status"] == "validated" and got["rows"] == args.rows, got
                    runs[f"validate_{side}"].append(got["seconds"])
    best = {k: min(v) for k, v in runs.items()}
    figures = {"rows": args.rows, "before": f"{args.before} ({revision})", "after": "this tree (Delta Lake)",
               "load_average_1min": round(os.getloadavg()[0], 2)}
    for step in steps:
        figures[f"{step}_before_seconds"] = round(best[f"{step}_before"], 3)
        figures[f"{step}_after_seconds"] = round(best[f"{step}_after"], 3)
        figures[f"{step}_speed_ratio"] = round(best[f"{step}_before"] / best[f"{step}_after"], 3)
    figures["goal"] = "speed_ratio (before / after seconds) >= 0.8 for extract and validate"
    figures["goal_met"] = all(figures[f"{s}_speed_ratio"] >= 0.8 for s in steps)
    figures["all_runs_seconds"] = {k: [round(x, 3) for x in v] for k, v in runs.items()}
    record("lake_migration" if len(steps) == 2 else f"lake_migration_{steps[0]}", figures, packages=("deltalake", "pyarrow", "duckdb", "great_expectations"))


if __name__ == "__main__":
    main()
