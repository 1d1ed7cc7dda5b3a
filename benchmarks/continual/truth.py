"""The truth the prequential benchmark judges rankings against, and its two reference arms.

Clicks are a noisy, position-biased view of relevance; the benchmark knows the relevance itself.
The pipeline never does: the truth is a side file in the benchmark's own work folder
(`TRUTH_FILE`), never in the warehouse or a lake.

- Simulator scenarios (steady, drift): the simulator's hidden relevance of each impression
  (`incremental.sim.traffic`, 0.02 / 0.15 / 0.7 / 0.9: the click probability at position 1),
  regenerated from the same arguments the benchmark simulated the warehouse with (the simulator
  is deterministic by seed), keyed by ``event_id``.
- Judgments scenario: the human grade of each judged (query, product) pair, min-max normalised
  to [0, 1] over the file, the very number `incremental.sim.judgments` draws the clicks from; keyed
  by (query, product_id) (a pair judged more than once gets the mean of its grades).

Truth NDCG@10 is `metrics.ndcg_against`: NDCG@10 per (session, query) with these graded
(linear) gains. The reference arms cost no training:

- ``oracle`` ranks by the truth itself: its truth NDCG is 1 by construction, and its click
  figures (AUC, NDCG@10 on clicks) are the ceiling of what clicks allow a position-blind ranker;
- ``lexical`` ranks by BM25 (`incremental.judge.lexical`), its IDF fitted on the distinct titles of
  the validated hours before the scored one (those an arm could have trained on): the floor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TRUTH_FILE = "truth.parquet"
SIMULATOR_KEYS = ("event_id",)
JUDGMENT_KEYS = ("query", "product_id")


def simulator_truth(start: datetime, end: datetime, *, rate: int, seed: int, scenario: str,
                    drift_at: datetime | None) -> pd.DataFrame:
    """(event_id, relevance) of every impression `simulate` writes for these arguments."""
    from incremental.sim.simulate import generate

    _, impressions, _ = generate(start, end, rate=rate, seed=seed, scenario=scenario, drift_at=drift_at)
    return impressions.select(["event_id", "relevance"]).to_pandas()


def judgment_truth(path: Path, *, query_col: str, title_col: str, grade_col: str, encoding: str = "utf-8",
                   **_: Any) -> pd.DataFrame:
    """(query, product_id, relevance): each judged pair's grade, min-max normalised over the file
    as `import_judgments` does before drawing clicks from it."""
    from incremental.sim.judgments import _product_id, load_pairs

    pairs, _skipped = load_pairs(Path(path), query_col=query_col, title_col=title_col, grade_col=grade_col,
                                 encoding=encoding)
    lo, hi = pairs["grade"].min(), pairs["grade"].max()
    pairs["relevance"] = (pairs["grade"] - lo) / (hi - lo) if hi > lo else 1.0
    pairs["product_id"] = [_product_id(t) for t in pairs["title"]]
    return pairs.groupby(list(JUDGMENT_KEYS), sort=True, as_index=False)["relevance"].mean()


class Truth:
    """The truth table, looked up for the rows of a lake partition."""

    def __init__(self, table: pd.DataFrame):
        self.keys = SIMULATOR_KEYS if "event_id" in table.columns else JUDGMENT_KEYS
        if table.duplicated(list(self.keys)).any():
            raise ValueError(f"the truth has more than one relevance for some {', '.join(self.keys)}")
        self.table = table[[*self.keys, "relevance"]].reset_index(drop=True)

    @classmethod
    def load(cls, path: Path) -> Truth:
        return cls(pd.read_parquet(path))

    def save(self, path: Path) -> dict[str, Any]:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.table.to_parquet(path, index=False)
        return {"file": str(path), "keys": list(self.keys), "rows": len(self.table),
                "source": "the simulator's hidden relevance" if self.keys == SIMULATOR_KEYS
                else "the judgment file's grades, min-max normalised to [0, 1]",
                "levels": sorted({round(float(x), 6) for x in self.table["relevance"]})[:20]}

    def gains(self, frame: pd.DataFrame) -> np.ndarray:
        """The relevance of each row of `frame`, in its order; nan where the truth does not know it."""
        keys = list(self.keys)
        looked = frame[keys].astype(str).merge(self.table, how="left", on=keys, validate="many_to_one")
        return looked["relevance"].to_numpy(dtype=np.float64)


def titles_of(frame: pd.DataFrame | None) -> set[str]:
    """The distinct titles of a partition's rows (none for a quarantined hour)."""
    if frame is None or "title" not in frame:
        return set()
    return {str(t) for t in frame["title"].dropna().unique()}


def lexical_scores(titles: Iterable[str], frame: pd.DataFrame) -> np.ndarray:
    """BM25 of each row's (query, title), IDF fitted on `titles`."""
    from incremental.judge.lexical import LexicalScorer

    return LexicalScorer.fit(sorted(titles)).score(frame["query"].to_numpy(object), frame["title"].to_numpy(object))


def as_probability(scores: np.ndarray) -> np.ndarray:
    """A monotone map of non-negative scores into [0, 1) (s / (1 + s)): ranks, AUC and NDCG are
    unchanged; the metrics code wants probabilities. Missing (nan) scores become 0."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    return s / (1.0 + s)


def finite_or_none(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# --- one arm against another on the truth: paired over sessions ----------------------------------
def group_ndcg(frame: pd.DataFrame, scores: Any, gains: Any) -> dict[str, list[Any]]:
    """Truth NDCG@10 of each (session, query) group of an hour with some known gain, and its
    session: what pairs two arms scored on the same hour (same rows, same group order)."""
    from incremental.judge import metrics

    gains = np.asarray(gains, dtype=np.float64)
    known = np.isfinite(gains)
    rows = frame.reset_index(drop=True)[known]
    keys = rows.groupby(["session_id", "query"], sort=False, dropna=False)
    ndcg = metrics.ndcg_per_group(gains[known], np.asarray(scores, dtype=np.float64)[known], keys.ngroup().to_numpy())
    sessions = keys["session_id"].first().astype(str).to_numpy()
    defined = np.isfinite(ndcg)
    return {"sessions": sessions[defined].tolist(), "ndcg": ndcg[defined].tolist()}


def session_interval(diff: np.ndarray, sessions: np.ndarray, *, samples: int = 1000, confidence: float = 0.9,
                     seed: int = 0) -> dict[str, Any]:
    """Mean of per-group differences with a bootstrap interval that resamples whole sessions (groups
    of one session move together); nan figures when there is nothing to compare."""
    codes = pd.factorize(pd.Series(sessions))[0]
    n = int(codes.max()) + 1 if len(codes) else 0
    if not n:
        return {"diff": math.nan, "lo": math.nan, "hi": math.nan, "groups": 0}
    sums, counts = np.bincount(codes, diff, n), np.bincount(codes, minlength=n).astype(float)
    draws = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    drawn = np.stack([np.bincount(d, minlength=n) for d in draws]).astype(float)
    reps = (drawn @ sums) / (drawn @ counts)
    tail = (1 - confidence) / 2
    return {"diff": float(diff.mean()), "lo": float(np.quantile(reps, tail)), "hi": float(np.quantile(reps, 1 - tail)),
            "groups": int(len(diff))}


def paired_truth(arm: list[dict[str, list[Any]] | None], other: list[dict[str, list[Any]] | None],
                 **interval: Any) -> dict[str, Any]:
    """Truth NDCG@10 of `arm` minus `other` over the hours both scored (each a `group_ndcg`), with a
    bootstrap interval over sessions (`session_interval`'s options: 90% by default)."""
    diffs, sessions = [], []
    for a, b in zip(arm, other, strict=True):
        if a is None or b is None or a["sessions"] != b["sessions"]:
            continue
        diffs.append(np.asarray(a["ndcg"]) - np.asarray(b["ndcg"]))
        sessions.extend(a["sessions"])
    if not diffs:
        return {"diff": math.nan, "lo": math.nan, "hi": math.nan, "groups": 0}
    return session_interval(np.concatenate(diffs), np.asarray(sessions), **interval)
