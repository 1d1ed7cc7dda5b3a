"""A first champion against the truth: click-trained (plain BCE) vs position-bias-aware (PBM), with
the simulator's hidden relevance as the judge, beside the oracle (the ceiling) and BM25 (the floor).

For each case: simulate hours, train a first model from the base weights on the first window as
`incremental bootstrap` does (the fast preset's bootstrap learning rate, one pass over the training
sessions, early stopping on its own sessions), then score the hours after it, which no model saw:

- click AUC and click NDCG@10 (what the pipeline can measure), truth NDCG@10 (graded by the hidden
  relevance, `metrics.ndcg_against`), and the share of the oracle's AUC headroom,
  (AUC - 0.5) / (oracle AUC - 0.5), the demo's goal for its first champion (>= 70%);
- arms: `oracle` (ranks by the hidden relevance), `lexical` (BM25, IDF fitted on the window's
  titles), `bce` (`training.position_bias: none`) and `pbm` (the examination curve estimated from
  the window's logs, `incremental.model.propensity`).

The case `demo` is `make demo`'s own traffic (seed 7, the drift scenario from 09:00, bootstrap on
00:00-06:00, scored on 06:00-09:00, before the drift). Results: benchmarks/results/truth.json.

    .venv/bin/python benchmarks/truth_bench.py [--cases demo,steady-0,steady-1] [--preset minilm-l2]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(__file__))
from _record import record  # noqa: E402

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
    model, tokenizer = rk.load_base(settings.base_model, seed=t.seed)
    data = FitData.from_frames(tokenizer, train, stopping, t.max_length, exam)
    trainer = make_trainer(model, t, steps, new_head=True)
    started = time.perf_counter()
    state = fit(trainer, data, t, max_steps=steps, label=f"{position_bias} first model")
    info = {"schedule_steps": steps, "steps": state.step, "best_step": state.best_step, "train_rows": len(train), "seconds":
            round(time.perf_counter() - started, 1), "examination": exam.to_dict()}
    return trainer.model.to("cpu").eval(), tokenizer, info


def run_case(name: str, preset: str, rate: int) -> dict:
    seed, scenario, drift, train_hours, scored_hours = CASES[name]
    os.environ["INCREMENTAL_BASE_MODEL"] = preset
    settings = load_settings()
    frame = simulated(seed, scenario, drift, train_hours + scored_hours, rate)
    window = frame[frame["hour"] < train_hours].reset_index(drop=True)
    scored = frame[(frame["hour"] >= train_hours) & (frame["hour"] < train_hours + scored_hours)].reset_index(drop=True)
    oracle = judged(scored, scored["relevance"].to_numpy())
    lexical = LexicalScorer.fit(window["title"].drop_duplicates())
    arms = {"oracle": oracle,
            "lexical": judged(scored, lexical.score(scored["query"].to_numpy(), scored["title"].to_numpy()),
                              oracle["click_auc"])}
    training = {}
    for bias in ("none", "pbm"):
        model, tokenizer, info = train_first_model(settings, window, bias)
        scores = rk.score_frame(model, tokenizer, scored, max_length=settings.training.max_length)
        arms["bce" if bias == "none" else "pbm"] = judged(scored, scores, oracle["click_auc"])
        training["bce" if bias == "none" else "pbm"] = info
        print(name, bias, arms["bce" if bias == "none" else "pbm"], flush=True)
    print(name, "oracle", arms["oracle"], "lexical", arms["lexical"], flush=True)
    return {"seed": seed, "scenario": scenario, "train_hours": f"00:00-{train_hours:02d}:00",
            "scored_hours": f"{train_hours:02d}:00-{train_hours + scored_hours:02d}:00", "rows_scored": len(scored),
            "arms": arms, "training": training}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--preset", default="minilm-l2")
    parser.add_argument("--rate", type=int, default=2000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("incremental.progress").setLevel(logging.INFO)  # steps, rate, time left
    cases: dict[str, dict] = {}
    for name in args.cases.split(","):  # recorded after each case: a run stopped early keeps what it measured
        cases[name] = run_case(name, args.preset, args.rate)
        record("truth", {"preset": args.preset, "rate": args.rate, "cases": cases},
               packages=("torch", "transformers"))


if __name__ == "__main__":
    main()
