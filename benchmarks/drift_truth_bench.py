"""After a drift, which retrain learns the new regime? Judged by the simulator's hidden relevance.

The `drift` scenario contradicts the past: from hour D the words of the conflicting categories lead
to another category's products (`incremental.sim.traffic`). The pipeline's catch-up retrains once
the drift is declared (K hours later, `drift.sustained_hours`) on what still holds. This benchmark
trains the candidate recipes on the same rows and scores the hours after them, which no recipe saw:

- `champion`: the first model, trained on the hours before the drift (what is served when it hits);
- `base_1pass`: today's catch-up: from the base weights on every hour so far less the rows of the
  changed categories from before the drift (the stale rows), the bootstrap schedule (one pass, at
  least `bootstrap_steps`);
- `base_3pass`: the same with three passes;
- `champion_1pass`: from the champion (not the base weights) on the same rows, one pass;
- `champion_3pass`: the same with three passes;
- `recent_3pass`: from the base weights on the hours since the drift only, three passes;
- `champion_recent_3pass`: from the champion on the hours since the drift only, three passes;
- `oracle` (ranks by the hidden relevance) and `lexical` (BM25 fitted on the titles);
- `hybrid_<recipe>`: the recipe with the lexical term (`training.lexical_term`), started from the
  hybrid champion (`hybrid_champion`, trained like `champion` with the term) or the base weights
  with a new term. Only the champions the asked arms start from are trained.

Per arm: truth NDCG@10 (graded by the hidden relevance) over all scored rows, on the changed
categories and on the unchanged ones (forgetting shows there), and click AUC. The changed
categories are the simulator's own (`drift_mapping`): the best the drift detection could find.
Results: benchmarks/results/drift_truth-seed<seed>.json.

    .venv/bin/python benchmarks/drift_truth_bench.py [--seed 0] [--rate 1000] [--arms base_1pass,...]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import sys
import time
from datetime import timedelta

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(__file__))
from _record import RESULTS, record  # noqa: E402
from truth_bench import T0, judged  # noqa: E402

from incremental.config import load_settings  # noqa: E402
from incremental.judge.lexical import LexicalScorer  # noqa: E402
from incremental.model import propensity, replay  # noqa: E402
from incremental.model import ranker as rk  # noqa: E402
from incremental.model.fit import FitData, fit, make_trainer, seed_everything  # noqa: E402
from incremental.sim.simulate import generate  # noqa: E402
from incremental.sim.traffic import drift_mapping  # noqa: E402

DRIFT_HOUR = 6  # hours 00-05 before the drift
CAUGHT_UP_AFTER = 3  # the catch-up runs on the rows up to D + K (drift.sustained_hours)
SCORED_HOURS = 3
ARMS = ("base_1pass", "base_3pass", "champion_1pass", "champion_3pass", "recent_3pass", "champion_recent_3pass")


def simulated(seed: int, rate: int) -> pd.DataFrame:
    end = T0 + timedelta(hours=DRIFT_HOUR + CAUGHT_UP_AFTER + SCORED_HOURS)
    products, impressions, _ = generate(T0, end, rate=rate, seed=seed, scenario="drift",
                                        drift_at=T0 + timedelta(hours=DRIFT_HOUR))
    frame = impressions.to_pandas().merge(products.select(["product_id", "title", "brand", "category"]).to_pandas(),
                                          on="product_id", how="left")
    frame["hour"] = (pd.to_datetime(frame["ingested_at"], utc=True) - pd.Timestamp(T0)) // pd.Timedelta(hours=1)
    return frame


def train(settings, model, tokenizer, window: pd.DataFrame, passes: float, *, new_head: bool) -> tuple[object, dict]:
    """One retrain as `incremental bootstrap` runs it (bootstrap rate, early stopping on its own sessions)."""
    t = settings.training.model_copy(update={"learning_rate": settings.training.bootstrap_learning_rate,
                                             "l2sp_strength": 0.0})
    seed_everything(t.seed)
    sessions = window["session_id"]
    gate_rows = replay.holdout_mask(sessions, t.holdout_fraction)
    stop_rows = replay.holdout_mask(sessions, t.early_stopping_fraction, salt="early-stopping") & ~gate_rows
    rows, stopping = window[~gate_rows & ~stop_rows], window[stop_rows]
    steps = max(t.bootstrap_steps, math.ceil(passes * len(rows) / t.batch_size))
    data = FitData.from_frames(tokenizer, rows, stopping, t.max_length, propensity.unbiased(len(window)))
    trainer = make_trainer(model, t, steps, new_head=new_head)
    started = time.perf_counter()
    state = fit(trainer, data, t, max_steps=steps, label=f"{passes:g} pass(es) on {len(rows)} rows")
    info = {"schedule_steps": steps, "steps": state.step, "best_step": state.best_step, "train_rows": len(rows),
            "seconds": round(time.perf_counter() - started, 1)}
    if rk.has_lexical_term(trainer.model):
        info["lexical_weight"] = round(float(trainer.model.lexical_weight.item()), 4)
    return trainer.model.to("cpu").eval(), info


def scored_by_part(scored: pd.DataFrame, scores: np.ndarray, changed: pd.Series, oracle_auc: float) -> dict:
    out = judged(scored, scores, oracle_auc)
    for name, mask in (("changed", changed), ("unchanged", ~changed)):
        part = scored[mask.to_numpy()].reset_index(drop=True)
        out[f"truth_ndcg@10_{name}"] = judged(part, scores[mask.to_numpy()])["truth_ndcg@10"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=int, default=1000, help="impressions an hour (the medium preset's: 1000)")
    parser.add_argument("--preset", default="minilm-l2")
    parser.add_argument("--arms", default=",".join(ARMS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("incremental.progress").setLevel(logging.INFO)
    os.environ["INCREMENTAL_BASE_MODEL"] = args.preset
    settings = load_settings()
    frame = simulated(args.seed, args.rate)
    changed_names = set(drift_mapping(args.seed))
    changed = frame["query_category"].isin(changed_names)
    caught_up = DRIFT_HOUR + CAUGHT_UP_AFTER
    scored_mask = frame["hour"] >= caught_up
    scored, scored_changed = frame[scored_mask].reset_index(drop=True), changed[scored_mask].reset_index(drop=True)
    stale = (frame["hour"] < DRIFT_HOUR) & changed
    still_holds = frame[(frame["hour"] < caught_up) & ~stale].reset_index(drop=True)
    recent = frame[(frame["hour"] >= DRIFT_HOUR) & (frame["hour"] < caught_up)].reset_index(drop=True)
    oracle = judged(scored, scored["relevance"].to_numpy())
    lexical = LexicalScorer.fit(frame[frame["hour"] < caught_up]["title"].drop_duplicates())
    arms = {"oracle": scored_by_part(scored, scored["relevance"].to_numpy(), scored_changed, oracle["click_auc"]),
            "lexical": scored_by_part(scored, lexical.score(scored["query"].to_numpy(), scored["title"].to_numpy()),
                                      scored_changed, oracle["click_auc"])}
    training: dict[str, dict] = {}
    earlier = RESULTS / f"drift_truth-seed{args.seed}.json"  # arms measured by an earlier run of the same case stay
    if earlier.is_file() and (kept := json.loads(earlier.read_text())).get("rate") == args.rate \
            and kept.get("preset") == args.preset:
        arms.update({k: v for k, v in kept["arms"].items() if k not in arms})
        training.update(kept.get("training", {}))

    def judge(name: str, model, tokenizer) -> None:
        arms[name] = scored_by_part(scored, rk.score_frame(model, tokenizer, scored,
                                                           max_length=settings.training.max_length),
                                    scored_changed, oracle["click_auc"])
        print(name, arms[name], training.get(name), flush=True)
        record(f"drift_truth-seed{args.seed}", {"preset": args.preset, "rate": args.rate, "seed": args.seed,
                               "hours": {"drift": DRIFT_HOUR, "caught_up": caught_up, "scored": SCORED_HOURS},
                               "changed_categories": sorted(changed_names), "rows_scored": len(scored),
                               "arms": arms, "training": training},
               packages=("torch", "transformers"))

    asked = args.arms.split(",")
    recipes: dict[str, tuple] = {}
    for prefix, lexical in (("", False), ("hybrid_", True)):
        mine = [name[len(prefix):] for name in asked if name.startswith("hybrid_") == lexical]
        if not mine:
            continue
        base, tokenizer = rk.load_base(settings.base_model, seed=settings.training.seed, lexical=lexical)
        champion = None
        if any(name.startswith("champion") for name in mine):
            champion, training[prefix + "champion"] = train(settings, copy.deepcopy(base), tokenizer,
                                                            frame[frame["hour"] < DRIFT_HOUR].reset_index(drop=True),
                                                            1.0, new_head=True)
            judge(prefix + "champion", champion, tokenizer)
        recipes.update({prefix + name: (start, window, passes, new_head, tokenizer) for name, (start, window, passes,
                        new_head) in {"base_1pass": (base, still_holds, 1.0, True),
                                      "base_3pass": (base, still_holds, 3.0, True),
                                      "champion_1pass": (champion, still_holds, 1.0, False),
                                      "champion_3pass": (champion, still_holds, 3.0, False),
                                      "recent_3pass": (base, recent, 3.0, True),
                                      "champion_recent_3pass": (champion, recent, 3.0, False)}.items()})
    for name in asked:
        start, window, passes, new_head, tokenizer = recipes[name]
        model, training[name] = train(settings, copy.deepcopy(start), tokenizer, window, passes, new_head=new_head)
        judge(name, model, tokenizer)


if __name__ == "__main__":
    main()
