"""What a full retrain should stop on: the reference arm's training, measured against the truth.

The `medium` preset's reference (`full_retrain` "to convergence": `bootstrap_steps: 5000`,
`bootstrap_epochs: 3`, early stopping on the loss with a patience of 2 evaluations 50 steps apart)
collapsed on its first retrain (the close of hour 07, seed 0: click AUC 0.50-0.57 on the next
hours; benchmarks/results/continual/continual-medium-steady-truth-partial.md). Its learning-rate
schedule spans the 5,000-step cap (warm-up: 500 steps) while early stopping ends it inside the
warm-up. Variants, each trained from the base weights on hours 00-07 of the medium preset's traffic
(1,000 impressions an hour) as `retrain.full_retrain` does, then scored on hours 08-11, which it
never saw (click AUC, click NDCG@10, truth NDCG@10 against the simulator's hidden relevance):

- `cap5000-loss`: the preset today (a 5,000-step schedule, stop on the loss);
- `epochs3-loss`: the schedule sized to 3 passes (`bootstrap_steps` low), stop on the loss;
- `epochs3-auc`: the same, stop on the click AUC of the early-stopping rows;
- `epochs3-none`: the same, no early stopping (3 full passes).

    .venv/bin/python benchmarks/early_stopping_bench.py [--seeds 0,1] [--variants ...]

Results: benchmarks/results/early_stopping.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _record import record  # noqa: E402
from truth_bench import judged, simulated, train_first_model  # noqa: E402

from incremental.config import load_settings  # noqa: E402
from incremental.judge.lexical import LexicalScorer  # noqa: E402
from incremental.model import ranker as rk  # noqa: E402

TRAIN_HOURS, SCORED_HOURS, RATE = 8, 4, 1000
VARIANTS = {  # name: training overrides over the config's, as the medium preset's reference_training sets them
    "cap5000-loss": {"bootstrap_steps": 5000, "bootstrap_epochs": 3.0, "early_stopping_metric": "loss"},
    "epochs3-loss": {"bootstrap_steps": 1, "bootstrap_epochs": 3.0, "early_stopping_metric": "loss"},
    "epochs3-auc": {"bootstrap_steps": 1, "bootstrap_epochs": 3.0, "early_stopping_metric": "auc"},
    "epochs3-none": {"bootstrap_steps": 1, "bootstrap_epochs": 3.0, "early_stopping_patience": 10**6},
}


def run_seed(seed: int, variants: list[str], preset: str) -> dict:
    os.environ["INCREMENTAL_BASE_MODEL"] = preset
    settings = load_settings()
    frame = simulated(seed, "steady", None, TRAIN_HOURS + SCORED_HOURS, RATE)
    window = frame[frame["hour"] < TRAIN_HOURS].reset_index(drop=True)
    scored = frame[frame["hour"] >= TRAIN_HOURS].reset_index(drop=True)
    oracle = judged(scored, scored["relevance"].to_numpy())
    lexical = LexicalScorer.fit(window["title"].drop_duplicates())
    arms = {"oracle": oracle, "lexical": judged(scored, lexical.score(scored["query"].to_numpy(),
                                                                     scored["title"].to_numpy()), oracle["click_auc"])}
    training = {}
    for name in variants:
        model, tokenizer, info = train_first_model(settings, window, "none", **VARIANTS[name])
        scores = rk.score_frame(model, tokenizer, scored, max_length=settings.training.max_length)
        arms[name], training[name] = judged(scored, scores, oracle["click_auc"]), info
        print(f"seed {seed} {name}: {arms[name]} {info}", flush=True)
    return {"train_hours": f"00-{TRAIN_HOURS - 1:02d}", "scored_hours": f"{TRAIN_HOURS:02d}-{TRAIN_HOURS + SCORED_HOURS - 1:02d}",
            "rate": RATE, "arms": arms, "training": training}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--preset", default="minilm-l2")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("incremental.progress").setLevel(logging.INFO)
    seeds: dict[str, dict] = {}
    for seed in (int(s) for s in args.seeds.split(",")):  # recorded after each seed: a stopped run keeps what it measured
        seeds[str(seed)] = run_seed(seed, args.variants.split(","), args.preset)
        record("early_stopping", {"preset": args.preset, "variants": VARIANTS, "seeds": seeds},
               packages=("torch", "transformers"))


if __name__ == "__main__":
    main()
