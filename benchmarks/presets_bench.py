"""Model presets on the simulator: speed and quality of `minilm-l2` (the fast preset) vs `minilm`, `tiny` the floor.

One simulated world for all presets: `--hours` hours of `--rate` impressions (seed `--seed`) in a
DuckDB warehouse, extracted and validated into a lake; the anchor set is frozen on the first
hours (shared by every preset). Then, per preset, in a fresh subprocess (its own imports and
peak RSS):

- bootstrap from the preset's base weights on the first `hours - 1` hours (`train.bootstrap`,
  the loop `incremental bootstrap` runs), then the gate on the bootstrap's holdout and the
  anchor (`verdict.evaluate_step`; no registration);
- score the last hour, never trained on (held out whole), with the candidate.

Figures per preset: training samples/s (median of the per-step figure the loop logs to MLflow:
forward + backward + optimiser step, no evaluation; and the mean over the whole loop, in-loop
holdout evaluations included), scoring rows/s on the held-out hour, its AUC and NDCG@10, and the
gate's decision with the bootstrap holdout AUC. Settings: `incremental.yaml` (the reviewed file)
for the MiniLM presets (its `models:` entry gives `minilm-l2` its learning rates), `tests/tiny.yaml`
for `tiny` (a random model needs lr 1e-3); `--steps`
sets the bootstrap steps of all of them.

The speed figures of the bootstraps are taken minutes apart, under whatever load the machine had
then; the speed-up is measured separately, paired: all presets loaded in one process and timed
in alternation, round after round (`run_speed`), so each round's ratio compares them under the
same load. `--speed-only` repeats just that and adds it to an existing results file.

Timings on a shared machine vary up to 2.5x between runs (far more when it is oversubscribed):
compare the paired ratios.

    .venv/bin/python benchmarks/presets_bench.py [--hours 4] [--rate 1500] [--seed 5] [--steps 300]
        [--presets minilm-l2,minilm,tiny] [--threads 1] [--rounds 6] [--speed-only]

writes benchmarks/results/presets.json and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))
from _record import RESULTS, record  # noqa: E402

from incremental.hours import Hour, iso_hour  # noqa: E402

T0 = Hour(2026, 1, 1, 0, tzinfo=UTC)  # an Hour, as the pipeline takes it (`parse_hour` makes them)
CONFIGS = {"minilm": REPO / "incremental.yaml", "minilm-l2": REPO / "incremental.yaml", "tiny": REPO / "tests" / "tiny.yaml"}
ANCHOR_ROWS = 1000


def _env(home: Path, preset: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("INCREMENTAL_")}
    return {**keep, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "GX_ANALYTICS_ENABLED": "False",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "INCREMENTAL_HOME": str(home),
            "INCREMENTAL_BASE_MODEL": preset, "INCREMENTAL_MODEL_NAME": f"bench-{preset}",
            "INCREMENTAL_CONFIG": str(CONFIGS[preset])}


def prepare(home: Path, hours: int, rate: int, seed: int) -> dict:
    """Simulate, extract and validate every hour; freeze the anchor on the bootstrap window."""
    os.environ.update({k: v for k, v in _env(home, "minilm").items() if k.startswith("INCREMENTAL_")})
    from incremental import pipeline, retrain
    from incremental.config import load_settings
    from incremental.data.warehouse import Warehouse
    from incremental.sim.simulate import simulate

    settings = load_settings()
    warehouse = Warehouse(settings.warehouse_url)
    warehouse.init_schema()
    simulate(warehouse, T0, T0 + timedelta(hours=hours), rate=rate, seed=seed)
    rows = {}
    for h in range(hours):
        hour = T0 + timedelta(hours=h)
        rows[iso_hour(hour)] = pipeline.extract_step(settings, hour).rows
        status = pipeline.validate_step(settings, hour).status
        if status != "validated":
            raise RuntimeError(f"hour {hour} was {status}")
    anchor = retrain.freeze_anchor(settings, T0, T0 + timedelta(hours=hours - 1), ANCHOR_ROWS, reason="presets bench")
    return {"rows_per_hour": rows, "anchor_rows": anchor.rows}


def run_preset(home: Path, preset: str, hours: int, steps: int | None, threads: int | None) -> dict:
    """In this process: bootstrap `preset`, gate it, score the held-out last hour."""
    import numpy as np
    import pandas as pd
    import torch

    if threads:
        torch.set_num_threads(threads)
    from incremental.config import load_settings
    from incremental.data import lake
    from incremental.handover import Trained
    from incremental.judge import metrics, verdict
    from incremental.model import ranker as rk
    from incremental.model.update import bootstrap, holdout_uri
    from incremental.registry import tracking

    settings = load_settings()
    if steps:
        settings = settings.with_training(bootstrap_steps=steps)
    t = settings.training
    end = T0 + timedelta(hours=hours - 1)
    started = time.perf_counter()
    result = bootstrap(settings, T0, end)
    bootstrap_s = time.perf_counter() - started
    per_step = [m.value for m in tracking.configure(settings).get_metric_history(result.run_id, "samples_per_s")]
    trained = Trained(hour=T0, interval_end=end, kind="full_retrain", run_id=result.run_id,
                      model_uri=result.model_uri, holdout_uri=holdout_uri(result.run_id, result.holdout_path))
    started = time.perf_counter()
    gated = verdict.evaluate_step(settings, T0, trained)
    evaluate_s = time.perf_counter() - started

    last = lake.read_partition(lake.partition(settings.lake, end)).to_pandas()
    model, tokenizer = rk.load_dir(result.candidate_dir)
    rk.score_frame(model, tokenizer, last.head(64), max_length=t.max_length)  # warm-up, not timed
    started = time.perf_counter()
    scores = rk.score_frame(model, tokenizer, last, max_length=t.max_length)
    score_s = time.perf_counter() - started
    held_out = metrics.evaluate(pd.DataFrame(last), scores)
    return {
        "preset": preset,
        "config": str(settings.config_file.relative_to(REPO)) if settings.config_file.is_relative_to(REPO)
        else str(settings.config_file),
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": model.config.num_hidden_layers,
        "hidden_size": model.config.hidden_size,
        "bootstrap": {"steps": int(result.metrics["steps"]), "max_steps": t.bootstrap_steps,
                      "best_step": int(result.metrics["best_step"]), "batch_size": t.batch_size,
                      "learning_rate": t.bootstrap_learning_rate, "max_length": t.max_length,
                      "train_rows": int(result.metrics["train_rows"]), "seconds": round(bootstrap_s, 1),
                      "loop_seconds": round(result.metrics["train_seconds"], 1)},
        "train_samples_per_s": round(float(np.median(per_step)), 2),
        "train_samples_per_s_loop_mean": round(result.metrics["samples_per_s_mean"], 2),
        "gate": {"decision": gated.decision, "reasons": list(gated.reasons),
                 "holdout_auc": round(gated.key_metrics["holdout_auc"], 4),
                 "holdout_logloss": round(gated.key_metrics["holdout_logloss"], 4),
                 "anchor_auc": round(gated.key_metrics["anchor_auc"], 4),
                 "anchor_ndcg@10": round(gated.key_metrics["anchor_ndcg@10"], 4),
                 "seconds": round(evaluate_s, 1)},
        "held_out_hour": {"hour": iso_hour(end), "rows": len(last), "auc": round(held_out["auc"], 4),
                          "ndcg@10": round(held_out["ndcg@10"], 4), "logloss": round(held_out["logloss"], 4)},
        "score_rows_per_s": round(len(last) / score_s, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(),
    }


def run_speed(home: Path, presets: list[str], hours: int, rounds: int, steps: int, threads: int | None) -> dict:
    """In this process: all presets loaded side by side, timed in alternation (paired under the same load).

    Each round times `steps` training steps (batch 32 of the bootstrap window's rows: forward,
    BCE, backward, AdamW) and the scoring of 512 rows of the held-out hour, for every preset in
    turn (the order rotates each round). On a machine whose load changes from minute to minute,
    the per-round ratio between presets is steadier than figures taken minutes apart.
    """
    import numpy as np
    import torch

    if threads:
        torch.set_num_threads(threads)
    from incremental.config import TrainingSettings
    from incremental.data import lake
    from incremental.model import ranker as rk
    from incremental.model.fit import batch_indices, make_optimizer

    lake_dir = home / "lake"
    frames = [lake.read_partition(lake.partition(lake_dir, T0 + timedelta(hours=h))).to_pandas() for h in range(hours)]
    train, last = frames[:-1], frames[-1]
    import pandas as pd

    train = pd.concat(train, ignore_index=True)
    labels = torch.tensor(train["clicked"].to_numpy(dtype=np.float32))
    held = last.head(512)
    loaded = {}
    for preset in presets:
        model, tokenizer = rk.load_base(preset, seed=0)
        features = rk.tokenize(tokenizer, *rk.frame_texts(train), 64)
        held_features = rk.tokenize(tokenizer, *rk.frame_texts(held), 64)
        optimizer = make_optimizer(model, TrainingSettings(learning_rate=5e-5))
        loaded[preset] = (model, tokenizer.pad_token_id, features, held_features, optimizer)

    def train_steps(preset: str, first: int, n: int) -> float:
        model, pad_id, features, _, optimizer = loaded[preset]
        model.train()
        started = time.perf_counter()
        for s in range(first, first + n):
            index = batch_indices(len(train), 32, seed=0, step=s)
            batch = rk.collate(features, index, pad_id, torch.device("cpu"))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(**batch).logits.squeeze(-1), labels[index])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return n * 32 / (time.perf_counter() - started)

    def score_rows(preset: str) -> float:
        model, pad_id, _, held_features, _ = loaded[preset]
        started = time.perf_counter()
        rk.logits(model, held_features, pad_id=pad_id, batch_size=256)
        return len(held) / (time.perf_counter() - started)

    for preset in presets:  # warm-up: allocator, kernels
        train_steps(preset, 10_000, 1)
        score_rows(preset)
    per_round: dict[str, dict[str, list[float]]] = {p: {"train": [], "score": []} for p in presets}
    for r in range(rounds):
        for preset in presets[r % len(presets):] + presets[: r % len(presets)]:
            per_round[preset]["train"].append(train_steps(preset, r * steps, steps))
            per_round[preset]["score"].append(score_rows(preset))
    out = {"rounds": rounds, "train_steps_per_round": steps, "batch_size": 32, "score_rows_per_round": len(held),
           "torch_threads": torch.get_num_threads(), "presets": {}}
    for preset in presets:
        out["presets"][preset] = {
            "train_samples_per_s": round(float(np.median(per_round[preset]["train"])), 2),
            "score_rows_per_s": round(float(np.median(per_round[preset]["score"])), 1),
            "train_samples_per_s_rounds": [round(x, 1) for x in per_round[preset]["train"]],
        }
        if "minilm" in per_round and preset != "minilm":
            base = per_round["minilm"]
            out["presets"][preset]["train_speedup_vs_minilm"] = round(float(np.median(
                np.array(per_round[preset]["train"]) / np.array(base["train"]))), 2)
            out["presets"][preset]["score_speedup_vs_minilm"] = round(float(np.median(
                np.array(per_round[preset]["score"]) / np.array(base["score"]))), 2)
    return out


def measure_speed(home: Path, presets: list[str], args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--speed", "--presets", ",".join(presets), "--home", str(home),
               "--hours", str(args.hours), "--threads", str(args.threads), "--rounds", str(args.rounds)]
    out = subprocess.run(command, env=_env(home, presets[0]), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"speed measurement failed ({out.returncode}):\n{out.stderr[-4000:]}")
    speed = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))[7:])
    speed["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    speed["load_average_1m"] = round(os.getloadavg()[0], 2)
    for preset, r in speed["presets"].items():
        print(f"{preset:10s} paired: train {r['train_samples_per_s']:7.1f} samples/s  score {r['score_rows_per_s']:7.1f} rows/s"
              + (f"  x{r['train_speedup_vs_minilm']} / x{r['score_speedup_vs_minilm']} vs minilm"
                 if "train_speedup_vs_minilm" in r else ""), flush=True)
    return speed


def add_speed(args: argparse.Namespace, presets: list[str]) -> None:
    """`--speed-only`: the paired speed measurement on freshly simulated data, into the recorded results."""
    path = RESULTS / "presets.json"
    payload = json.loads(path.read_text())
    with tempfile.TemporaryDirectory(prefix="presets-speed-") as tmp:
        home = args.home or Path(tmp) / "var"
        prepare(home, args.hours, args.rate, args.seed)
        payload["paired_speed"] = measure_speed(home, presets, args)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"paired speed added to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=4, help="simulated hours; the last one is held out")
    parser.add_argument("--rate", type=int, default=1500, help="impressions per hour")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--steps", type=int, default=None, help="bootstrap steps (default: each config's)")
    parser.add_argument("--presets", default="minilm-l2,minilm,tiny")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (0: torch's default)")
    parser.add_argument("--home", type=Path, help="keep the work here instead of a temporary folder")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of the paired speed measurement")
    parser.add_argument("--speed-only", action="store_true",
                        help="only the paired speed measurement, added to the existing results/presets.json")
    parser.add_argument("--preset", help="run one preset in this process (internal)")
    parser.add_argument("--speed", action="store_true", help="run the paired speed measurement in this process (internal)")
    args = parser.parse_args()
    if args.preset:
        print("RESULT " + json.dumps(run_preset(args.home, args.preset, args.hours, args.steps, args.threads)))
        return
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    if args.speed:
        print("RESULT " + json.dumps(run_speed(args.home, presets, args.hours, args.rounds, 4, args.threads)))
        return
    if args.speed_only:
        add_speed(args, presets)
        return

    with tempfile.TemporaryDirectory(prefix="presets-bench-") as tmp:
        home = args.home or Path(tmp) / "var"
        started = time.perf_counter()
        data = prepare(home, args.hours, args.rate, args.seed)
        print(f"data ready in {time.perf_counter() - started:.0f}s: {data}", flush=True)
        results = {}
        for preset in presets:
            command = [sys.executable, __file__, "--preset", preset, "--home", str(home), "--hours", str(args.hours),
                       "--threads", str(args.threads)] + (["--steps", str(args.steps)] if args.steps else [])
            out = subprocess.run(command, env=_env(home, preset), capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{preset} failed ({out.returncode}):\n{out.stderr[-4000:]}")
            results[preset] = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))[7:])
            r = results[preset]
            print(f"{preset:10s} train {r['train_samples_per_s']:7.1f} samples/s  score {r['score_rows_per_s']:7.1f} rows/s  "
                  f"held-out AUC {r['held_out_hour']['auc']:.3f} NDCG@10 {r['held_out_hour']['ndcg@10']:.3f}  "
                  f"gate {r['gate']['decision']} (holdout AUC {r['gate']['holdout_auc']:.3f})", flush=True)
        speed = measure_speed(home, presets, args)

    ratios = {}
    if "minilm" in results:
        base = results["minilm"]
        for preset, r in results.items():
            if preset != "minilm":
                ratios[preset] = {
                    "train_speedup_vs_minilm": round(r["train_samples_per_s"] / base["train_samples_per_s"], 2),
                    "score_speedup_vs_minilm": round(r["score_rows_per_s"] / base["score_rows_per_s"], 2),
                    "held_out_auc_minus_minilm": round(r["held_out_hour"]["auc"] - base["held_out_hour"]["auc"], 4)}
    record("presets", {
        "simulator": {"hours": args.hours, "rate": args.rate, "seed": args.seed, "scenario": "steady",
                      "bootstrap_hours": args.hours - 1, "held_out_hour": args.hours - 1, **data},
        "device": "cpu",
        "load_average_1m": round(os.getloadavg()[0], 2),
        "presets": results,
        "ratios_between_runs": ratios,
        "paired_speed": speed,
        "note": "shared 2-core machine: absolute figures vary up to 2.5x between runs; the ratios are the measurement",
    }, packages=("torch", "transformers", "tokenizers", "mlflow"))


if __name__ == "__main__":
    main()
