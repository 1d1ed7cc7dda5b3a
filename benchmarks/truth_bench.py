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
  the window's logs, `incremental.model.propensity`);
- weak supervision from BM25 (Dehghani et al. 2017, "Neural ranking models with weak supervision"),
  the same first model but taught BM25's ordering on the window's own training rows:
  `bm25_warm` first fits BM25 for `WARM_STEPS` steps, then clicks for the rest of `bce`'s step
  budget; `bm25_warm_long` the same warm phase, then `bce`'s whole click schedule (a longer run);
  `bm25_mix` one phase of `bce`'s length on a soft label, the mean of the click and the BM25
  target. The BM25 target is BM25 put on the click scale: P(click | BM25 score) from a one-feature
  logistic regression on the training rows (`bm25_targets`), so the warm phase's loss and output
  scale are the click phase's own (pointwise BCE, here on soft labels) and the click phase starts
  from a model that orders like BM25 without first having to re-scale its logits.
  `bm25_mix_frozen_words` is `bm25_mix` with the word-piece embeddings left as they are, as an
  hourly update leaves them (`training.freeze_word_embeddings`), here for a first model.
  `bm25_mix_fp32` is `bm25_mix` trained in float32 throughout; since 2026-12-06 the others train
  with the forward pass in bfloat16 on hardware that has it (`training.bf16_autocast`; each arm's
  `autocast` is recorded, and figures recorded before then are float32).

Each trained arm's truth NDCG@10 is paired with `lexical`'s (and the BM25 arms' with `bce`'s) on
the same (session, query) groups, with a 90% bootstrap interval over sessions
(`benchmarks.continual.truth.paired_truth`).

The case `demo` is `make demo`'s own traffic (seed 7, the drift scenario from 09:00, bootstrap on
00:00-06:00, scored on 06:00-09:00, before the drift). Results: benchmarks/results/truth.json.

    .venv/bin/python benchmarks/truth_bench.py [--cases demo,steady-0,steady-1] [--preset minilm-l2]
        [--arms bce,pbm,bm25_warm,bm25_warm_long,bm25_mix]

Cases and arms an earlier run recorded (same preset and rate) stay in the file unless measured again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _record import RESULTS, record  # noqa: E402

from benchmarks.continual.truth import group_ndcg, paired_truth  # noqa: E402
from incremental.config import load_settings  # noqa: E402
from incremental.judge import metrics
from incremental.judge.lexical import LexicalScorer  # noqa: E402
from incremental.model import (
    propensity,
    replay,  # noqa: E402
)
from incremental.model import ranker as rk  # noqa: E402
from incremental.model.fit import FitData, fit, make_trainer, seed_everything  # noqa: E402
from incremental.model.weak_labels import fit_calibration  # noqa: E402
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


WARM_STEPS = 100  # the BM25 phase of the warm-started arms: a third of bce's 300 steps
TRAINED: dict[str, tuple[str, dict[str, object]]] = {  # arm: (position bias, how BM25 enters)
    "bce": ("none", {}),
    "pbm": ("pbm", {}),
    "bm25_warm": ("none", {"warm_steps": WARM_STEPS, "click_steps": "rest"}),
    "bm25_warm_long": ("none", {"warm_steps": WARM_STEPS, "click_steps": "all"}),
    "bm25_mix": ("none", {"mix": 0.5}),
    "bm25_mix_frozen_words": ("none", {"mix": 0.5, "frozen_words": True}),
    "bm25_mix_fp32": ("none", {"mix": 0.5, "fp32": True}),
}


def bm25_targets(window: pd.DataFrame, train: pd.DataFrame) -> tuple[np.ndarray, dict[str, float]]:
    """BM25 of each training row (IDF on the window's distinct titles, as the `lexical` arm), put on
    the click scale: sigmoid(a x BM25 + b), a and b fitted by logistic regression of the clicks on
    BM25 over the same rows. Monotone in BM25 (a > 0), so it orders each session as BM25 does."""
    scorer = LexicalScorer.fit(window["title"].drop_duplicates())
    bm25 = scorer.score(train["query"].to_numpy(), train["title"].to_numpy())
    curve = fit_calibration(bm25, train["clicked"].to_numpy())  # the product's fit (one curve, all rows)
    a, b = curve.slope, curve.intercept
    targets = 1.0 / (1.0 + np.exp(-(a * bm25 + b)))
    return targets.astype(np.float32), {"slope": round(a, 4), "intercept": round(b, 4),
                                        "target_mean": round(float(targets.mean()), 4),
                                        "click_rate": round(float(train["clicked"].mean()), 4)}


def train_first_model(settings, window: pd.DataFrame, position_bias: str, *, weak: dict[str, object] | None = None,
                      **overrides) -> tuple[object, object, dict]:
    """From the base weights on `window`, as `incremental bootstrap` trains (training settings `overrides` on top).

    `weak` (the BM25 arms): {"warm_steps": n, "click_steps": "rest" | "all"} first trains n steps on
    the BM25 targets alone (no early stopping: its rows judge clicks), then clicks for the rest of
    the step budget or for all of it, with a fresh schedule; {"mix": w} trains the usual schedule on
    w x BM25 target + (1 - w) x click."""
    weak = dict(weak or {})
    frozen_words = bool(weak.pop("frozen_words", False))
    if weak.pop("fp32", False):  # no bfloat16 autocast in training, as before 2026-12-06 on this CPU
        overrides["bf16_autocast"] = False
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
    info: dict[str, object] = {"schedule_steps": steps}
    if frozen_words:  # as an hourly update leaves them (training.freeze_word_embeddings), here for a first model
        model.get_input_embeddings().weight.requires_grad_(False)
        info["frozen_words"] = True
    started = time.perf_counter()
    new_head = True
    if weak:
        targets, info["bm25_target"] = bm25_targets(window, train)
        if "mix" in weak:
            w = float(weak["mix"])  # type: ignore[arg-type]
            data = dataclasses.replace(data, train_labels=w * torch.from_numpy(targets) + (1 - w) * data.train_labels)
            info["mix"] = w
        else:
            warm = int(weak["warm_steps"])  # type: ignore[call-overload]
            bm25 = dataclasses.replace(data, train_labels=torch.from_numpy(targets),
                                       stopping_labels=np.zeros(0))  # nothing to stop on: a fixed phase
            warm_state = fit(make_trainer(model, t, warm, new_head=True), bm25, t, max_steps=warm,
                             label="BM25 warm start")
            info["warm_steps"] = warm_state.step
            info["warm_loss"] = round(warm_state.last_loss, 4)
            steps = max(1, steps - warm) if weak["click_steps"] == "rest" else steps
            new_head = False
    trainer = make_trainer(model, t, steps, new_head=new_head)
    state = fit(trainer, data, t, max_steps=steps, label=f"{position_bias} first model")
    info.update({"autocast": "bf16" if trainer.autocast else "off", "click_steps": steps, "steps": state.step,
                 "best_step": state.best_step, "train_rows": len(train),
                 "seconds": round(time.perf_counter() - started, 1), "examination": exam.to_dict()})
    return trainer.model.to("cpu").eval(), tokenizer, info


def difference(a: dict, b: dict) -> dict[str, object]:
    """Truth NDCG@10 of arm a minus arm b (`group_ndcg` of each), 90% interval over sessions."""
    out = paired_truth([a], [b])
    return {"difference": round(out["diff"], 4), "groups": out["groups"],
            "interval_90": [round(out["lo"], 4), round(out["hi"], 4)]}


def run_case(name: str, preset: str, rate: int, trained: list[str]) -> dict:
    seed, scenario, drift, train_hours, scored_hours = CASES[name]
    os.environ["INCREMENTAL_BASE_MODEL"] = preset
    settings = load_settings()
    frame = simulated(seed, scenario, drift, train_hours + scored_hours, rate)
    window = frame[frame["hour"] < train_hours].reset_index(drop=True)
    scored = frame[(frame["hour"] >= train_hours) & (frame["hour"] < train_hours + scored_hours)].reset_index(drop=True)
    gains = scored["relevance"].to_numpy(dtype=np.float64)
    oracle = judged(scored, scored["relevance"].to_numpy())
    lexical = LexicalScorer.fit(window["title"].drop_duplicates())
    lexical_scores = lexical.score(scored["query"].to_numpy(), scored["title"].to_numpy())
    arms = {"oracle": oracle, "lexical": judged(scored, lexical_scores, oracle["click_auc"])}
    groups = {"lexical": group_ndcg(scored, lexical_scores, gains)}
    training = {}
    for arm in trained:
        bias, weak = TRAINED[arm]
        model, tokenizer, info = train_first_model(settings, window, bias, weak=weak)
        scores = rk.score_frame(model, tokenizer, scored, max_length=settings.training.max_length)
        arms[arm] = judged(scored, scores, oracle["click_auc"])
        groups[arm] = group_ndcg(scored, scores, gains)
        training[arm] = info
        print(name, arm, arms[arm], {k: v for k, v in info.items() if k != "examination"}, flush=True)
    print(name, "oracle", arms["oracle"], "lexical", arms["lexical"], flush=True)
    differences = {f"{a}_minus_{b}": difference(groups[a], groups[b])
                   for a in trained for b in ("lexical", "bce", "bm25_mix") if a != b and b in groups}
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
