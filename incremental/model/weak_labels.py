"""Weak supervision from BM25: a training label that is part click, part BM25 (`training.bm25_label_weight`).

Clicks are few and position-biased; BM25 orders a session well where the text still means what it
meant, and knows nothing of clicks. The label a row trains on is

    label = w x P(click | BM25) + (1 - w) x clicked

where P(click | BM25) = sigmoid(a x BM25 + b) puts BM25 on the click scale (a and b from a logistic
regression of the clicks on BM25 over the same training rows, per category where it has enough of
them), so the loss and the output scale stay
the click model's own (pointwise BCE, on soft labels) and the model does not first have to re-scale
its logits. BM25's IDF is fitted on the training rows' distinct titles (`incremental.judge.lexical`).
Only training rows get the label: early stopping and the gate judge clicks.

Measured on the simulator's hidden relevance (Dehghani et al. 2017 for the idea; figures in
docs/benchmarks.md): with w = 0.5 the gated pipeline ranks above BM25 beyond the 90% interval in
steady traffic, where on clicks alone it ranked below; after a drift, one curve for all rows kept
teaching what the drifted words used to mean (worse than clicks alone), a curve per category did not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from incremental.judge.lexical import LexicalScorer

log = logging.getLogger(__name__)

LABEL_COLUMN = "label"  # the training label, where it is not the click itself
MIN_CATEGORY_ROWS, MIN_CATEGORY_CLICKS = 100, 5  # a category's own curve: at least this many rows, clicks and non-clicks


@dataclass(frozen=True)
class Calibration:
    """P(click | BM25) = sigmoid(slope x BM25 + intercept), fitted on the training rows."""

    slope: float
    intercept: float

    def to_dict(self) -> dict[str, float]:
        return {"slope": round(self.slope, 6), "intercept": round(self.intercept, 6)}


def fit_calibration(bm25: np.ndarray, clicked: np.ndarray, iterations: int = 25) -> Calibration:
    """Logistic regression of `clicked` on one feature by Newton's method, with a unit ridge on the
    slope (nothing against thousands of rows) so that rows with no click, all clicks or one BM25 value
    give a finite, flat curve instead of a diverging one."""
    x = np.column_stack([bm25.astype(np.float64), np.ones(len(bm25))])
    y = clicked.astype(np.float64)
    ridge = np.diag([1.0, 1e-6])
    beta = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        hessian = (x * (p * (1 - p))[:, None]).T @ x + ridge
        step = np.linalg.solve(hessian, x.T @ (y - p) - ridge @ beta)
        beta += step
        if np.abs(step).max() < 1e-9:
            break
    return Calibration(float(beta[0]), float(beta[1]))


def with_bm25_labels(rows: pd.DataFrame, weight: float) -> tuple[pd.DataFrame, dict[str, object]]:
    """`rows` with a `label` column mixing click and BM25 (`weight` of BM25), and what was fitted.

    P(click | BM25) is fitted per category where a category has enough rows and clicks to fit it
    (`MIN_CATEGORY_ROWS`, `MIN_CATEGORY_CLICKS`), on all rows elsewhere: where a drift changed what a
    category's words mean, BM25 no longer predicts its clicks there, and its own curve flattens (or
    turns) instead of teaching the old meaning."""
    scorer = LexicalScorer.fit(rows["title"].drop_duplicates())
    bm25 = scorer.score(rows["query"].to_numpy(), rows["title"].to_numpy())
    clicked = rows["clicked"].to_numpy(dtype=np.float64)
    overall = fit_calibration(bm25, clicked)
    slope, intercept = np.full(len(rows), overall.slope), np.full(len(rows), overall.intercept)
    by_category: dict[str, dict[str, float]] = {}
    categories = rows["category"].fillna("").astype(str).to_numpy() if "category" in rows else np.full(len(rows), "")
    for category in np.unique(categories):
        mine = categories == category
        clicks = clicked[mine].sum()
        if mine.sum() >= MIN_CATEGORY_ROWS and min(clicks, mine.sum() - clicks) >= MIN_CATEGORY_CLICKS:
            fitted = fit_calibration(bm25[mine], clicked[mine])
            slope[mine], intercept[mine] = fitted.slope, fitted.intercept
            by_category[str(category)] = fitted.to_dict()
    target = 1.0 / (1.0 + np.exp(-(slope * bm25 + intercept)))
    if overall.slope <= 0:
        log.warning("BM25 does not rise with clicks on these rows (slope %.4f): its label part orders against "
                    "BM25 or not at all", overall.slope)
    labelled = rows.assign(**{LABEL_COLUMN: (weight * target + (1 - weight) * clicked).astype(np.float32)})
    return labelled, {"bm25_label_weight": weight, **overall.to_dict(), "categories": by_category,
                      "click_rate": round(float(clicked.mean()), 6), "bm25_target_mean": round(float(target.mean()), 6)}
