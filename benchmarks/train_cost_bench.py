"""The cost side of the promise: an hourly update against a full retrain, through the project's loop.

The seconds (`incremental.model.fit`, on CUDA when there is one, else the CPU) of an hourly
update (the reviewed `max_steps` of `batch_size` rows: one hour plus replay) against a full retrain
from the base weights at hour 48 (`bootstrap_epochs` passes over 48 hours' training rows), for
each preset (fp32, and bf16 autocast on a GPU), plus scoring rows/s. On a CPU the retrain is
timed over `--cpu-steps` steps and projected to its full length. Training only: no MLflow, no GX, no
evaluation, so it is the part a GPU changes; the pipeline's fixed costs are in latency.json.

The rows are the simulator's (48 hours of 2,000 impressions, `steady`, seed 0), written beforehand
first (or beforehand by `--make-data`, so that a GPU machine needs neither DuckDB nor MLflow):

    .venv/bin/python benchmarks/train_cost_bench.py [--presets minilm-l2,minilm] [--cpu-steps 60]
    python3 benchmarks/train_cost_bench.py --rows rows.parquet   # on a GPU machine, rows made here

Each configuration: a warm-up of 10 steps (CUDA kernels, allocator), then timed steps with the
device synchronised before the clock is read. The hourly update and the full retrain train from
the packaged weights, on the rows they would see; the full retrain's holdout AUC on hour 48's
held-out sessions is recorded as a check that it learned.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOURS, RATE = 48, 2000


def make_data(path: Path) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from incremental.sim.simulate import generate

    products, impressions, _ = generate(T0, T0 + timedelta(hours=HOURS), rate=RATE, seed=0)
    products = products.select(["product_id", "title", "brand", "category"])
    rows = impressions.join(products, "product_id").select(
        ["event_ts", "session_id", "query", "title", "brand", "category", "clicked"])
    start_us = int(T0.timestamp() * 1_000_000)
    hour = pc.divide(pc.subtract(pc.cast(rows["event_ts"], "int64"), start_us), 3_600_000_000)
    rows = rows.append_column("hour", pc.cast(hour, "int32")).sort_by("event_ts")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, path)
    print(f"{rows.num_rows} rows, {HOURS} hours -> {path}")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _trainer(preset: str, t, steps: int, *, l2sp: bool):
    """The project's trainer from the packaged weights; an hourly update pulls toward its
    starting weights (L2-SP), a retrain from the base does not."""
    from incremental.model import ranker as rk
    from incremental.model.fit import make_trainer

    model, tokenizer = rk.load_base(preset, seed=t.seed)
    model.float()  # weights may be stored in half precision to travel
    t = t if l2sp else t.model_copy(update={"l2sp_strength": 0.0})
    return make_trainer(model, t, steps, new_head=False), tokenizer


def time_training(preset: str, t, frame, holdout, steps: int, device, autocast: bool, *, retrain: bool) -> dict:
    """Seconds for `steps` steps of the project's loop (after 10 warm-up steps on the same data);
    for a retrain, its holdout AUC on hour 48 (an hourly update from the base weights says nothing)."""
    from incremental.model.fit import FitData, FitState, fit, stopping_eval

    trainer, tokenizer = _trainer(preset, t, steps + 10, l2sp=not retrain)
    trainer.autocast = autocast
    data = FitData.from_frames(tokenizer, frame, holdout, t.max_length)
    quiet = t.model_copy(update={"eval_every": 10**9, "checkpoint_every": 10**9})  # time the steps alone
    fit(trainer, data, quiet, max_steps=10, label=f"{preset} warm-up")
    _sync(device)
    started = time.perf_counter()
    state = fit(trainer, data, quiet, max_steps=10 + steps, state=FitState(step=10), label=preset)
    _sync(device)
    seconds = time.perf_counter() - started

    out = {"steps": steps, "train_rows": len(frame), "seconds": round(seconds, 3), "final_step": state.step,
           "samples_per_s": round(steps * t.batch_size / seconds, 1), "epochs": round(steps * t.batch_size / len(frame), 3)}
    if retrain:
        check = stopping_eval(trainer.model, data, autocast)
        out["holdout_auc_hour_48"] = round(check.get("stopping_auc", float("nan")), 4)
    return out


def time_scoring(preset: str, frame, device, autocast: bool, max_length: int) -> dict:
    from incremental.model import ranker as rk

    model, tokenizer = rk.load_base(preset)
    model = model.float().to(device)
    features = rk.tokenize(tokenizer, *rk.frame_texts(frame), max_length)
    rk.logits(model, features, pad_id=tokenizer.pad_token_id, device=device, autocast=autocast)  # warm-up
    _sync(device)
    started = time.perf_counter()
    rk.logits(model, features, pad_id=tokenizer.pad_token_id, device=device, autocast=autocast)
    _sync(device)
    seconds = time.perf_counter() - started
    return {"rows": len(frame), "seconds": round(seconds, 3), "rows_per_s": round(len(frame) / seconds, 1)}


def run(rows_path: Path, presets: list[str], out: Path, cpu_steps: int) -> dict:
    import pandas as pd
    import torch
    import yaml

    from incremental.config import TrainingSettings
    from incremental.model import ranker as rk
    from incremental.model.replay import holdout_mask, replay_size

    t = TrainingSettings(**yaml.safe_load((REPO / "incremental.yaml").read_text())["training"])
    rows = pd.read_parquet(rows_path)
    held = holdout_mask(rows["session_id"], t.holdout_fraction)
    train_rows, holdout_rows = rows[~held], rows[held]
    last = HOURS - 1
    fresh = train_rows[train_rows["hour"] == last]
    replayed = train_rows[train_rows["hour"] < last].sample(replay_size(len(fresh), t.replay_fraction), random_state=t.seed)
    hourly_rows = pd.concat([fresh, replayed])
    window = train_rows  # all 48 hours, as a full retrain at hour 48 sees them
    retrain_steps = max(t.bootstrap_steps, math.ceil(t.bootstrap_epochs * len(window) / t.batch_size))
    check_holdout = holdout_rows[holdout_rows["hour"] == last]

    device = rk.pick_device()
    result = {"benchmark": "train_cost", "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                          "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None},
              "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
              "settings": {"batch_size": t.batch_size, "max_steps": t.max_steps, "bootstrap_steps": t.bootstrap_steps,
                           "bootstrap_epochs": t.bootstrap_epochs, "max_length": t.max_length,
                           "replay_fraction": t.replay_fraction},
              "data": {"hours": HOURS, "rate": RATE, "hourly_update_rows": len(hourly_rows),
                       "full_retrain_rows": len(window), "full_retrain_steps": retrain_steps},
              "runs": []}
    configs = [(p, ac) for p in presets for ac in ((False, True) if device.type == "cuda" else (False,))]
    for preset, autocast in configs:
        entry = {"preset": preset, "device": device.type, "autocast": "bf16" if autocast else "off"}
        entry["hourly_update"] = time_training(preset, t, hourly_rows, check_holdout, t.max_steps, device, autocast,
                                                retrain=False)
        steps = retrain_steps if device.type == "cuda" else min(retrain_steps, cpu_steps)
        timed = time_training(preset, t, window, check_holdout, steps, device, autocast, retrain=True)
        timed["projected_seconds"] = round(timed["seconds"] * retrain_steps / steps, 1)
        entry["full_retrain"] = timed
        entry["cost_ratio_update_vs_retrain"] = round(entry["hourly_update"]["seconds"] / timed["projected_seconds"], 4)
        entry["scoring_one_hour"] = time_scoring(preset, rows[rows["hour"] == last], device, autocast, t.max_length)
        result["runs"].append(entry)
        print(json.dumps(entry), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")  # after every configuration: a cut-off run keeps what it has
    return result


def main() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("incremental.progress").setLevel(logging.INFO)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--make-data", type=Path, metavar="PARQUET", help="write the simulator's rows and stop")
    parser.add_argument("--rows", type=Path, default=REPO / "var" / "train_cost_rows.parquet",
                        help="the rows to train on (written first when missing)")
    parser.add_argument("--presets", default="minilm-l2,minilm")
    parser.add_argument("--cpu-steps", type=int, default=60, help="on a CPU, time this many retrain steps and project")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_cost.json")
    args = parser.parse_args()
    if args.make_data:
        make_data(args.make_data)
        return
    if not args.rows.is_file():
        make_data(args.rows)
    run(args.rows, args.presets.split(","), args.out, args.cpu_steps)


if __name__ == "__main__":
    main()
