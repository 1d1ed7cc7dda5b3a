"""A full retrain on 1 process against 2 (torchrun, DDP): wall time, training time, the same schedule.

Each arm runs the user-facing command, `incremental bootstrap --start .. --end .. --nproc N`, in a
fresh home on a copy of the same lake (a few validated hours written straight into it: sessions of
8 results whose clicks follow the query's colour and kind), and reads its MLflow run back: steps,
the training loop's seconds (rank 0's `train_seconds`), rows per second, the final losses. The
wall time includes everything the command does (process start, model load, MLflow, the anchor
freeze, the evaluation and the gate), which does not shrink with more processes.

    .venv/bin/python -m benchmarks.ddp_bench [--preset minilm-l2] [--hours 3] [--rows 240] [--steps 60] \\
        [--arms 1,1t1,2] [--repeats 2]

Three arms, interleaved, each `--repeats` times: one process with torch's default threads (`1`),
one process with one thread (`1t1`, what each torchrun process gets: torchrun sets
OMP_NUM_THREADS=1), and two processes (`2`). On a machine with 2 CPU cores (this one, shared with
other work) two processes are not expected to beat one: each has one core, and every step adds an
all-reduce of the gradients over gloo. The figure checks correctness (the same step count, one run,
the shards); a speed-up is for GPUs, one per process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from benchmarks._record import record
from incremental.hours import Hour

REPO = Path(__file__).resolve().parents[1]
T0 = Hour(2026, 3, 1, tzinfo=UTC)
COLOURS = ["red", "blue", "green", "black", "white", "pink", "grey", "brown"]
KINDS = {"shoes": "footwear", "shirt": "apparel", "bag": "accessories", "lamp": "home"}


def hour_frame(start: datetime, rows: int, seed: int) -> pd.DataFrame:
    """One hour in the lake schema: sessions of 8 results for one query, clicks on colour and kind."""
    rng = np.random.default_rng(seed)
    kinds, records = list(KINDS), []
    for i in range(rows):
        if i % 8 == 0:
            session, colour_q, kind_q = f"s{seed}-{i // 8}", rng.choice(COLOURS), rng.choice(kinds)
        colour = colour_q if rng.random() < 0.5 else rng.choice(COLOURS)
        kind = kind_q if rng.random() < 0.5 else rng.choice(kinds)
        ts = start + timedelta(seconds=float(rng.uniform(0, 3000)))
        p = 0.1 + 0.6 * (colour == colour_q) + 0.2 * (kind == kind_q)
        records.append({"event_id": f"{start:%Y%m%d%H}-{i}", "event_ts": ts, "ingested_at": ts + timedelta(seconds=30),
                        "session_id": session, "user_id": f"u{seed}-{i // 24}", "query": f"{colour_q} {kind_q}",
                        "product_id": f"p-{colour}-{kind}", "position": i % 8 + 1, "clicked": int(rng.random() < p),
                        "title": f"acme {colour} {kind}", "brand": "acme", "category": KINDS[kind],
                        "price": float(round(rng.uniform(5, 200), 2))})
    return pd.DataFrame.from_records(records)


def make_lake(lake: Path, hours: int, rows: int) -> None:
    from incremental.data import lake as lk
    from incremental.data import table as delta

    for k in range(hours):
        start = T0 + timedelta(hours=k)
        table = pa.Table.from_pandas(hour_frame(start, rows, seed=k), schema=lk.SEARCH_LOG_SCHEMA, preserve_index=False)
        delta.append(lake, start, delta.with_status(table, start, delta.VALIDATED), "benchmark fixture", {})


def run_arm(work: Path, lake: Path, arm: str, repeat: int, args: argparse.Namespace) -> dict:
    """`arm`: "1" (one process, torch's default threads), "1t1" (one process, one thread), "2" (torchrun)."""
    nproc, one_thread = int(arm.split("t")[0]), arm.endswith("t1")
    home = work / f"{arm}-{repeat}"
    shutil.copytree(lake, home / "lake")
    config = home / "bench.yaml"
    config.write_text(f"training:\n  batch_size: {args.batch}\n  bootstrap_steps: {args.steps}\n"
                      "  bootstrap_epochs: 0\n  eval_every: 1000\n  max_length: 64\n")
    env = {**os.environ, "INCREMENTAL_HOME": str(home), "INCREMENTAL_CONFIG": str(config),
           "INCREMENTAL_BASE_MODEL": args.preset, "PYTHONPATH": str(REPO)}
    for name in ("INCREMENTAL_LAKE", "INCREMENTAL_MLFLOW_URI", "INCREMENTAL_WAREHOUSE_URL", "WORLD_SIZE",
                 "OMP_NUM_THREADS"):
        env.pop(name, None)
    if one_thread:
        env["OMP_NUM_THREADS"] = "1"
    end = T0 + timedelta(hours=args.hours)
    command = [sys.executable, "-m", "incremental.cli", "bootstrap", "--start", T0.strftime("%Y-%m-%dT%H:%M"),
               "--end", end.strftime("%Y-%m-%dT%H:%M"), "--nproc", str(nproc), "--anchor-size", "200",
               "--result-json", str(home / "decision.json")]
    load_before = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"nproc {nproc} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    probe = ("import json; from incremental.config import load_settings; from incremental.registry import tracking; "
             "s = load_settings(); c = tracking.configure(s); r = c.search_runs([tracking.get_or_create_experiment(s)]); "
             "print('RUNS ' + json.dumps([{'metrics': x.data.metrics, 'params': {k: v for k, v in x.data.params.items() "
             "if k.startswith('ddp.')}} for x in r]))")
    read = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    runs = json.loads(next(line for line in read.stdout.splitlines() if line.startswith("RUNS "))[5:])
    assert len(runs) == 1, runs
    m = runs[0]["metrics"]
    decision = json.loads((home / "decision.json").read_text())
    return {"arm": arm, "nproc": nproc, "threads_per_process": 1 if one_thread or nproc > 1 else torch_threads(),
            "repeat": repeat, "load_average_1min_before": load_before, "wall_seconds": round(wall, 2), "train_seconds": round(m["train_seconds"], 2),
            "steps": int(m["steps"]), "train_rows": int(m["train_rows"]),
            "rows_per_s_per_process": round(m["samples_per_s_mean"], 1),
            "rows_per_s_total": round(m["steps"] * args.batch / m["train_seconds"], 1),
            "train_loss_last": round(m["train_loss_last"], 4), "decision": decision["decision"],
            "mlflow_runs": len(runs), "shards": runs[0]["params"]}


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="minilm-l2")
    parser.add_argument("--hours", type=int, default=3)
    parser.add_argument("--rows", type=int, default=240, help="impressions per hour")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--arms", default="1,1t1,2",
                        help="1: one process (torch's default threads); 1t1: one process, one thread; N: torchrun")
    parser.add_argument("--repeats", type=int, default=2, help="each arm this many times, interleaved")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        make_lake(work / "lake", args.hours, args.rows)
        arms = [run_arm(work, work / "lake", arm, r, args) for r in range(args.repeats) for arm in args.arms.split(",")]
    load = os.getloadavg()
    summary = {arm: {"train_seconds_median": float(np.median([a["train_seconds"] for a in arms if a["arm"] == arm])),
                     "wall_seconds_median": float(np.median([a["wall_seconds"] for a in arms if a["arm"] == arm]))}
               for arm in args.arms.split(",")}
    record("ddp_full_retrain", {
        "settings": {"preset": args.preset, "hours": args.hours, "rows_per_hour": args.rows,
                     "bootstrap_steps": args.steps, "global_batch": args.batch, "device": "cpu (gloo)",
                     "threads": "arm 1: torch's default; 1t1: OMP_NUM_THREADS=1; N processes: OMP_NUM_THREADS=1 "
                                "each (torchrun's default)",
                     "machine_note": "2 CPU cores shared with other work (see each arm's load average); nice 10"},
        "load_average_after": [round(x, 2) for x in load],
        "summary": summary,
        "arms": arms,
    }, packages=("torch", "transformers", "mlflow"))


if __name__ == "__main__":
    main()
