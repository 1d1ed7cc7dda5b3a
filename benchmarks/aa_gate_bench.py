"""A/A check of the relative gate: does its paired interval hold its stated level on hourly holdouts,
and how often would it reject a candidate that is no different from the champion?

The gate compares candidate and champion on one hour's holdout sessions (`holdout_fraction` of the
hour, by the pipeline's own hash) with a paired bootstrap interval over sessions
(`incremental.judge.compare.paired_bootstrap`, 90%), and rejects when the interval lies wholly below 0.
Here both "models" are fixed scorers of simulated traffic, so the truth of their difference is
known: measured on all hours pooled (tens of thousands of sessions), it is the population
difference the hourly intervals estimate.

- `null update`: the candidate scores exactly as the champion (zero steps): every interval is
  [0, 0] and it is never rejected; checked, not assumed.
Both resampling units are measured in one run: sessions alone (products held fixed) and sessions
and products at once (`compare.replicate_weights`, `gate.bootstrap_units: sessions_and_products`).

- `seed-only`: champion and candidate are the same BM25 scorer with a small per-product
  perturbation drawn from two seeds (two candidates that differ only by their seed). Per hour:
  does the interval cover the population difference (its stated 90%)? Is the candidate rejected?
- `worse candidate`: the champion with a strong per-product perturbation (`--worse-scale`), worse
  on average by its population difference: how often the gate rejects it (its power).

    .venv/bin/python benchmarks/aa_gate_bench.py [--hours 96] [--rate 2000] [--pairs 3]

Results: benchmarks/results/aa_gate-rate<rate>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(__file__))
from _record import record  # noqa: E402

from incremental.config import GateSettings, TrainingSettings  # noqa: E402
from incremental.judge import compare, metrics
from incremental.judge.lexical import LexicalScorer  # noqa: E402
from incremental.model import replay  # noqa: E402
from incremental.sim.simulate import generate  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def traffic(hours: int, rate: int, seed: int) -> pd.DataFrame:
    products, impressions, _ = generate(T0, T0 + timedelta(hours=hours), rate=rate, seed=seed)
    frame = impressions.to_pandas().merge(products.select(["product_id", "title"]).to_pandas(), on="product_id")
    frame["hour"] = pd.to_datetime(frame["ingested_at"], utc=True).dt.floor("h")
    return frame


def perturbed(base: np.ndarray, products: pd.Series, seed: int, scale: float) -> np.ndarray:
    """The base scores times a per-product factor drawn from `seed`: a model that differs by its seed."""
    codes, uniques = pd.factorize(products)
    factor = np.exp(np.random.default_rng(seed).normal(0.0, scale, len(uniques)))
    return base * factor[codes] + 1e-6 * factor[codes]  # break BM25's zero ties differently per seed


def population_diff(frame: pd.DataFrame, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    groups = frame.groupby(["session_id", "query"], sort=False).ngroup().to_numpy()
    clicks = frame["clicked"].to_numpy()
    return {"ndcg@10": metrics.ndcg_at_k(clicks, a, groups) - metrics.ndcg_at_k(clicks, b, groups),
            "auc": metrics.roc_auc(clicks, a) - metrics.roc_auc(clicks, b)}


def hourly(frame: pd.DataFrame, a: np.ndarray, b: np.ndarray, truth: dict[str, float], gate: GateSettings,
           holdout_fraction: float, by_product: bool) -> dict[str, object]:
    covered = {m: 0 for m in truth}
    rejected = sessions = hours = 0
    for _, rows in frame.groupby("hour").indices.items():
        part = frame.iloc[rows].reset_index(drop=True)
        keep = replay.holdout_mask(part["session_id"], holdout_fraction)
        out = compare.paired_bootstrap(part[keep], a[rows][keep], b[rows][keep], samples=gate.bootstrap_samples,
                                       confidence=gate.confidence, seed=hours, by_product=by_product)
        hours += 1
        sessions += out["sessions"]
        for m in truth:
            covered[m] += int(out[m]["lo"] <= truth[m] <= out[m]["hi"])
        # the gate's two relative checks: rejected when either interval lies wholly below 0
        rejected += int(out["ndcg@10"]["hi"] < -gate.max_holdout_ndcg_deficit or out["auc"]["hi"] < -gate.max_holdout_auc_deficit)
    return {"hours": hours, "mean_holdout_sessions": round(sessions / hours, 1),
            "coverage": {m: round(c / hours, 3) for m, c in covered.items()},
            "rejected_share": round(rejected / hours, 3),
            "population_diff": {m: round(v, 5) for m, v in truth.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=int, default=96)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=3, help="seed pairs of the seed-only comparison")
    parser.add_argument("--scale", type=float, default=0.3, help="spread of the per-product perturbation")
    parser.add_argument("--worse-scale", type=float, default=1.0,
                        help="the worse candidate: the champion with this spread of per-product perturbation")
    args = parser.parse_args()
    gate, training = GateSettings(), TrainingSettings()
    frame = traffic(args.hours, args.rate, seed=3)
    base = LexicalScorer.fit(frame["title"].drop_duplicates()).score(frame["query"].to_numpy(),
                                                                     frame["title"].to_numpy())
    units = {"sessions": False, "sessions_and_products": True}
    null = {u: hourly(frame, base, base, {"ndcg@10": 0.0, "auc": 0.0}, gate, training.holdout_fraction, p)
            for u, p in units.items()}
    print("null update", null, flush=True)
    pairs: dict[str, list] = {u: [] for u in units}
    for k in range(args.pairs):
        a = perturbed(base, frame["product_id"], 2 * k + 1, args.scale)
        b = perturbed(base, frame["product_id"], 2 * k + 2, args.scale)
        truth = population_diff(frame, a, b)
        for u, p in units.items():
            pairs[u].append(hourly(frame, a, b, truth, gate, training.holdout_fraction, p))
            print(f"seed pair {k}, resampling {u}", pairs[u][-1], flush=True)

    worse = perturbed(base, frame["product_id"], 99, args.worse_scale)  # worse on average: its truth says how much
    truth = population_diff(frame, worse, base)
    worse_candidate = {u: hourly(frame, worse, base, truth, gate, training.holdout_fraction, p) for u, p in units.items()}
    print("worse candidate", worse_candidate, flush=True)

    def summary(u: str) -> dict[str, object]:
        return {"null_update_rejected_share": null[u]["rejected_share"],
                "seed_only_rejected_share": round(float(np.mean([p["rejected_share"] for p in pairs[u]])), 3),
                "seed_only_coverage": {m: round(float(np.mean([p["coverage"][m] for p in pairs[u]])), 3)
                                       for m in ("ndcg@10", "auc")},
                "worse_candidate_rejected_share": worse_candidate[u]["rejected_share"],
                "worse_candidate_coverage": worse_candidate[u]["coverage"]}

    record(f"aa_gate-rate{args.rate}", {
        "rate": args.rate, "hours": args.hours, "confidence": gate.confidence, "bootstrap_samples": gate.bootstrap_samples,
        "holdout_fraction": training.holdout_fraction, "perturbation_scale": args.scale,
        "gate_default_units": gate.bootstrap_units, "null_update": null, "seed_only": pairs,
        "worse_candidate": {"perturbation_scale": args.worse_scale, **worse_candidate},
        "summary": {**{u: summary(u) for u in units},
                    "goal": "null updates rejected at most at the stated level (<= 10% at 90%); coverage near 0.90"},
    })


if __name__ == "__main__":
    main()
