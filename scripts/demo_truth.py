"""The demo's champions against the truth: the simulator knows what the logs hide.

`make demo` simulates its traffic from a seed, so the hidden relevance of every impression can be
generated again (`incremental.sim.simulate.generate`, the same arguments as scripts/demo.sh). For each
hour after the bootstrap this scores the rows with the first champion and with the champion at
the end, and prints them beside the ceiling (ranking by the hidden relevance) and the floor (BM25
fitted on the bootstrap window's titles):

- truth NDCG@10: graded by the hidden relevance (the ceiling's is 1 by construction);
- click AUC and the share of the ceiling's AUC headroom, (AUC - 0.5) / (ceiling AUC - 0.5).

Only the demo's simulated data has a truth to compare with; the pipeline itself never reads it.

    python scripts/demo_truth.py --start 2026-01-01T00:00 --end 2026-01-01T13:00 --rate 2000 --seed 7 \
        --drift-at 2026-01-01T09:00 --bootstrap-end 2026-01-01T06:00
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from incremental.config import load_settings
from incremental.hours import parse_hour
from incremental.judge import metrics
from incremental.judge.lexical import LexicalScorer
from incremental.model import ranker as rk
from incremental.registry import tracking
from incremental.registry.history import history
from incremental.sim.simulate import generate


def truth_frame(args: argparse.Namespace) -> pd.DataFrame:
    start, end = parse_hour(args.start), parse_hour(args.end)
    products, impressions, _ = generate(start, end, rate=args.rate, seed=args.seed, scenario="drift",
                                        drift_at=parse_hour(args.drift_at))
    frame = impressions.to_pandas().merge(products.select(["product_id", "title", "brand", "category"]).to_pandas(),
                                          on="product_id", how="left")
    frame["hour"] = pd.to_datetime(frame["ingested_at"], utc=True).dt.floor("h")
    return frame[frame["hour"] < pd.Timestamp(end)]  # late rows of the last hours land after the window


def figures(frame: pd.DataFrame, scores: np.ndarray, ceiling_auc: float) -> str:
    auc = metrics.roc_auc(frame["clicked"].to_numpy(), scores)
    truth = metrics.ndcg_against(frame, scores, frame["relevance"].to_numpy())
    share = (auc - 0.5) / (ceiling_auc - 0.5)
    return f"{truth:6.3f} {auc:6.3f} {share:6.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in ("--start", "--end", "--drift-at", "--bootstrap-end"):
        parser.add_argument(name, required=True)
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # piped, print was block-buffered: a user saw 102 s of nothing
    settings = load_settings()
    print(f"regenerating the hidden relevance of {args.start} .. {args.end} (seed {args.seed}) and loading the "
          "champions; then one line an hour")
    frame = truth_frame(args)
    after = parse_hour(args.bootstrap_end)
    window = frame[frame["hour"] < pd.Timestamp(after)]
    floor = LexicalScorer.fit(window["title"].drop_duplicates())
    # the first version that served (approved, or promoted by a person), and the one serving now
    first = next((str(r["version"]) for r in history(settings) if r.get("champion_periods")), None)
    last = tracking.champion(settings)
    models = {f"first champion v{first}": first} if first else {}
    if last and last[0] != first:
        models[f"final champion v{last[0]}"] = last[0]
    loaded = {label: rk.load_dir(tracking.version_model_dir(settings, v)) for label, v in models.items()}
    print("hour      drift   ceiling (truth NDCG, click AUC) | lexical floor | "
          + " | ".join(loaded) + "   (each: truth NDCG@10, click AUC, share of the ceiling's AUC headroom)")
    for hour, rows in frame[frame["hour"] >= pd.Timestamp(after)].groupby("hour"):
        rows = rows.reset_index(drop=True)
        ceiling_auc = metrics.roc_auc(rows["clicked"].to_numpy(), rows["relevance"].to_numpy())
        cells = [f"{1.0:6.3f} {ceiling_auc:6.3f}",
                 figures(rows, floor.score(rows["query"].to_numpy(), rows["title"].to_numpy()), ceiling_auc)]
        for model, tokenizer in loaded.values():
            cells.append(figures(rows, rk.score_frame(model, tokenizer, rows, max_length=settings.training.max_length),
                                 ceiling_auc))
        drifted = "after" if hour >= pd.Timestamp(parse_hour(args.drift_at)) else "before"
        print(f"{hour:%H:%M}     {drifted:<7} " + " | ".join(cells))
    if len(loaded) > 1:
        print("the final champion learned the drifted regime: on the hours before the drift it is judged by the truth "
              "the drift replaced, so it ranks below the first champion there")


if __name__ == "__main__":
    main()
