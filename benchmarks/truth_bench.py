"""A first champion against the truth: click-trained (plain BCE) vs position-bias-aware (PBM), with
the simulator's hidden relevance as the judge, beside the oracle (the ceiling) and BM25 (the floor).

For each case: simulate hours, train a first model from the base weights on the first window as
`incremental bootstrap` does (the fast preset's bootstrap learning rate, one pass over the training
sessions, early stopping on its own sessions), then score the hours after it, which no model saw:

- click AUC and click NDCG@10 (what the pipeline can measure), truth NDCG@10 (graded by the hidden
  relevance, `metrics.ndcg_against`), and the share of the oracle's AUC headroom,
  (AUC - 0.5) / (oracle AUC - 0.5), the demo's goal for its first champion (>= 70%);
- arms: `oracle` (ranks by the hidden relevance), `lexical` (BM25, IDF fitted on the window's
  titles), `bce` (`training.position_bias: none`), `pbm` (the examination curve estimated from
  the window's logs, `incremental.model.propensity`) and `hybrid` (`bce` with the lexical term,
  `training.lexical_term`: logit + w x the share of the query's words in the product text, w learned).

The case `demo` is `make demo`'s own traffic (seed 7, the drift scenario from 09:00, bootstrap on
00:00-06:00, scored on 06:00-09:00, before the drift). Results: benchmarks/results/truth.json; the
arms of an earlier run of the same preset and rate that this run did not train are kept.

    .venv/bin/python benchmarks/truth_bench.py [--cases demo,steady-0,steady-1] [--preset minilm-l2]
        [--arms bce,pbm,hybrid]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(__file__))
from _record import RESULTS, record  # noqa: E402

from incremental.config import load_settings  # noqa: E402
from incremental.judge import metrics
from incremental.judge.lexical import LexicalScorer  # noqa: E402
from incremental.model import (
    propensity,
    replay,  # noqa: E402
)
from incremental.model import ranker as rk  # noqa: E402
from incremental.model.fit import FitData, fit, make_trainer, seed_everything  # noqa: E402
from incremental.sim.simulate import generate  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CASES = {  # name: (seed, scenario, drift hour, train hours, scored hours)
    "demo": (7, "drift", 9, 6, 3),
    "steady-0": (0, "steady", None, 6, 3),
    "steady-1": (1, "steady", None, 6, 3),
}


def simulated(seed: int, scenario: str, drift: int | None, hours: int, rate: int) -> pd.DataFrame:
    end = T0 + timedelta(hours=max(hours, (drift or 0) + 1))
    products, impressions, _ = generate(T0, end, rate=rate, seed=seed, scenario=scenario,
                                        drift_at=T0 + timedelta(hours=drift) if drift is not None else None)
    frame = impressions.to_pandas().merge(products.select(["product_id", "title", "brand", "category"]).to_pandas(),
                                          on="product_id", how="left")
    frame["hour"] = (pd.to_datetime(frame["ingested_at"], utc=True) - pd.Timestamp(T0)) // pd.Timedelta(hours=1)
    return frame


def judged(frame: pd.DataFrame, scores: np.ndarray, oracle_auc: float | None = None) -> dict[str, float]:
    groups = frame[["session_id", "query"]].astype(str).agg("|".join, axis=1).to_numpy()
    auc = metrics.roc_auc(frame["clicked"].to_numpy(), scores)
    out = {"click_auc": round(auc, 4), "click_ndcg@10": round(metrics.ndcg_at_k(frame["clicked"].to_numpy(), scores,
                                                                               groups), 4),
           "truth_ndcg@10": round(metrics.ndcg_against(frame, scores, frame["relevance"].to_numpy()), 4)}
    if oracle_auc is not None:
        out["share_of_oracle_auc_headroom"] = round((auc - 0.5) / (oracle_auc - 0.5), 3)
    return out


def truth_difference(frame: pd.DataFrame, a: np.ndarray, b: np.ndarray, *, samples: int = 1000,
                     confidence: float = 0.9, seed: int = 0) -> dict[str, object]:
    """Truth NDCG@10 of scores `a` minus `b` on the same rows, with a paired bootstrap interval
    over the (session, query) groups (each session asks one query: over sessions)."""
    codes = frame.groupby(["session_id", "query"], sort=False).ngroup().to_numpy()
    gains = frame["relevance"].to_numpy(dtype=np.float64)
    diff = metrics.ndcg_per_group(gains, a, codes) - metrics.ndcg_per_group(gains, b, codes)
    diff = diff[~np.isnan(diff)]
    draws = np.random.default_rng(seed).integers(0, len(diff), size=(samples, len(diff)))
    means = diff[draws].mean(axis=1)
    tail = (1 - confidence) / 2
    return {"difference": round(float(diff.mean()), 4), "groups": len(diff),
            f"interval_{round(confidence * 100)}": [round(float(np.quantile(means, tail)), 4),
                                                    round(float(np.quantile(means, 1 - tail)), 4)]}


def train_first_model(settings, window: pd.DataFrame, position_bias: str, **overrides) -> tuple[object, object, dict]:
    """From the base weights on `window`, as `incremental bootstrap` trains (training settings `overrides` on top)."""
    t = settings.training.model_copy(update={"learning_rate": settings.training.bootstrap_learning_rate,
                                             "l2sp_strength": 0.0, "position_bias": position_bias, **overrides})
    seed_everything(t.seed)
    sessions = window["session_id"]
    gate_rows = replay.holdout_mask(sessions, t.holdout_fraction)
    stop_rows = replay.holdout_mask(sessions, t.early_stopping_fraction, salt="early-stopping") & ~gate_rows
    train, stopping = window[~gate_rows & ~stop_rows], window[stop_rows]
    exam = propensity.estimate(window) if position_bias == "pbm" else propensity.unbiased(len(window))
    steps = max(t.bootstrap_steps, math.ceil(t.bootstrap_epochs * len(train) / t.batch_size))
    model, tokenizer = rk.load_base(settings.base_model, seed=t.seed, lexical=t.lexical_term)
    data = FitData.from_frames(tokenizer, train, stopping, t.max_length, exam)
    trainer = make_trainer(model, t, steps, new_head=True)
    started = time.perf_counter()
    state = fit(trainer, data, t, max_steps=steps, label=f"{position_bias} first model")
    info = {"schedule_steps": steps, "steps": state.step, "best_step": state.best_step, "train_rows": len(train), "seconds":
            round(time.perf_counter() - started, 1), "examination": exam.to_dict()}
    if rk.has_lexical_term(trainer.model):
        info["lexical_weight"] = round(float(trainer.model.lexical_weight.item()), 4)
    return trainer.model.to("cpu").eval(), tokenizer, info


TRAINED = {  # arm: (position bias, training overrides)
    "bce": ("none", {}),
    "pbm": ("pbm", {}),
    "hybrid": ("none", {"lexical_term": True}),
}


def run_case(name: str, preset: str, rate: int, trained: list[str]) -> dict:
    seed, scenario, drift, train_hours, scored_hours = CASES[name]
    os.environ["INCREMENTAL_BASE_MODEL"] = preset
    settings = load_settings()
    frame = simulated(seed, scenario, drift, train_hours + scored_hours, rate)
    window = frame[frame["hour"] < train_hours].reset_index(drop=True)
    scored = frame[(frame["hour"] >= train_hours) & (frame["hour"] < train_hours + scored_hours)].reset_index(drop=True)
    oracle = judged(scored, scored["relevance"].to_numpy())
    lexical = LexicalScorer.fit(window["title"].drop_duplicates())
    scores_of = {"lexical": lexical.score(scored["query"].to_numpy(), scored["title"].to_numpy())}
    arms = {"oracle": oracle, "lexical": judged(scored, scores_of["lexical"], oracle["click_auc"])}
    training = {}
    for arm in trained:
        bias, overrides = TRAINED[arm]
        model, tokenizer, info = train_first_model(settings, window, bias, **overrides)
        scores = scores_of[arm] = rk.score_frame(model, tokenizer, scored, max_length=settings.training.max_length)
        arms[arm] = judged(scored, scores, oracle["click_auc"])
        training[arm] = info
        print(name, arm, arms[arm], info.get("lexical_weight", ""), flush=True)
    print(name, "oracle", arms["oracle"], "lexical", arms["lexical"], flush=True)
    differences = {f"{a}_minus_{b}": truth_difference(scored, scores_of[a], scores_of[b])
                   for a, b in (("hybrid", "bce"), ("hybrid", "lexical"), ("bce", "lexical"))
                   if a in scores_of and b in scores_of}
    print(name, "truth NDCG@10 differences", differences, flush=True)
    return {"seed": seed, "scenario": scenario, "train_hours": f"00:00-{train_hours:02d}:00",
            "scored_hours": f"{train_hours:02d}:00-{train_hours + scored_hours:02d}:00", "rows_scored": len(scored),
            "arms": arms, "truth_ndcg@10_differences": differences, "training": training}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--preset", default="minilm-l2")
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--arms", default=",".join(TRAINED), help="trained arms (oracle and lexical always)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("incremental.progress").setLevel(logging.INFO)  # steps, rate, time left
    cases: dict[str, dict] = {}
    earlier = RESULTS / "truth.json"  # cases and arms measured by an earlier run of the same preset and rate stay
    if earlier.is_file() and (kept := json.loads(earlier.read_text())).get("rate") == args.rate \
            and kept.get("preset") == args.preset:
        cases.update(kept["cases"])
    for name in args.cases.split(","):  # recorded after each case: a run stopped early keeps what it measured
        fresh = run_case(name, args.preset, args.rate, args.arms.split(","))
        if name in cases:
            for part in ("arms", "truth_ndcg@10_differences", "training"):
                fresh[part] = {**cases[name].get(part, {}), **fresh[part]}
        cases[name] = fresh
        record("truth", {"preset": args.preset, "rate": args.rate, "cases": cases},
               packages=("torch", "transformers"))


if __name__ == "__main__":
    main()
