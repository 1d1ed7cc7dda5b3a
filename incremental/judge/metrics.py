"""Ranking and calibration metrics: AUC, NDCG@10, log loss, ECE, overall and per category.

Pure functions on numpy arrays and pandas frames; the package's one AUC is `roc_auc` here (the
tests cross-check these against scikit-learn, which the package itself does not import). Scores are
click *probabilities* in [0, 1] (the sigmoid of the ranker's logit). The forgetting measures read
these metrics across a run's models: `incremental.judge.forgetting`.

Conventions shared by every metric here
---------------------------------------
- Labels are binarised as ``clicked > 0`` for AUC, log loss and calibration; NDCG uses the click
  counts themselves as graded gains.
- A metric that cannot be computed is ``nan``, never a made-up number: no rows, a single class
  for AUC, no group with a click for NDCG, or any non-finite score (a diverged model). The gate
  rejects every non-finite metric, so ``nan`` is fail-closed.
- A finite score outside [0, 1] is a programming error (logits passed where probabilities were
  expected) and raises ``ValueError``.

Definitions
-----------
ROC AUC
    The Mann-Whitney statistic: the probability that a random clicked row scores above a random
    unclicked one, ties counted one half. Computed from average ranks (tied scores share the
    mean of their ranks), so it equals ``sklearn.metrics.roc_auc_score``.

NDCG@k (k = 10 by default), grouped per (session_id, query)
    ``DCG@k = sum_{r < k} gain_r / log2(r + 2)`` with linear gains (the clicks) and 0-based
    rank r; ``NDCG@k = DCG@k / IDCG@k``, IDCG@k being the DCG@k of the rows sorted by gain.
    **Ties in scores** use the tie-averaged DCG of McSherry & Najork (2008, "Computing
    information retrieval performance measures efficiently in the presence of tied scores"):
    the rows of a tie block that occupies ranks [a, b) each contribute the block's *mean* gain
    times the discounts of those ranks that fall below k. This equals the expected DCG over all
    orderings of the tied rows, so it depends on neither the input order nor a tie-breaking
    rule, and a constant scorer gets the NDCG of a random ranking rather than a lucky or
    unlucky one. (Same as ``sklearn.metrics.ndcg_score(..., ignore_ties=False)`` per group.)
    **Groups with no click** (IDCG = 0) have no defined NDCG and are left out of the mean;
    single-row groups with a click count (they score 1 for every model). The overall value is
    the unweighted mean over groups.

Log loss
    ``-mean(y log p + (1 - y) log(1 - p))`` with p clipped to ``[eps, 1 - eps]``,
    ``eps = 1e-15`` (a confident mistake costs at most ``-log(1e-15) = 34.5``).

Expected calibration error (ECE)
    ``sum_b (n_b / n) |mean(y in b) - mean(p in b)|`` over **10 equal-width bins** of the
    predicted probability: bin b holds ``b/10 <= p < (b+1)/10`` (p = 1 in the last bin).
    Empty bins contribute nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

NDCG_K = 10
ECE_BINS = 10
LOGLOSS_EPS = 1e-15

__all__ = [
    "ECE_BINS",
    "LOGLOSS_EPS",
    "NDCG_K",
    "evaluate",
    "expected_calibration_error",
    "log_loss",
    "ndcg_against",
    "ndcg_at_k",
    "ndcg_per_group",
    "roc_auc",
]


# --------------------------------------------------------------------------- helpers


def _scores(scores: Any, n: int | None = None) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{arr.shape[0]} scores for {n} rows")
    return arr


def _probabilities(scores: Any, n: int) -> np.ndarray | None:
    """Scores as float64 probabilities; None when any is non-finite (the metric is then nan)."""
    p = _scores(scores, n)
    if not np.all(np.isfinite(p)):
        return None
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError(
            f"scores must be probabilities in [0, 1], got range [{p.min():.4g}, {p.max():.4g}]"
            " (logits passed where probabilities were expected?)"
        )
    return p


def _binary(labels: Any) -> np.ndarray:
    return np.asarray(labels, dtype=np.float64).reshape(-1) > 0


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    n = x.shape[0]
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new_block = np.empty(n, dtype=bool)
    if n:
        new_block[0] = True
        new_block[1:] = xs[1:] != xs[:-1]
    starts = np.flatnonzero(new_block)
    ends = np.append(starts[1:], n)
    mean_rank = (starts + 1 + ends) / 2.0  # mean of start+1 .. end
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = mean_rank[np.cumsum(new_block) - 1]
    return ranks


# --------------------------------------------------------------------------- metrics


def roc_auc(labels: Any, scores: Any) -> float:
    """ROC AUC with ties counted one half (average ranks); nan with one class or a non-finite score."""
    y = _binary(labels)
    s = _scores(scores, y.shape[0])
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0 or not np.all(np.isfinite(s)):
        return math.nan
    ranks = _average_ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def ndcg_per_group(gains: Any, scores: Any, groups: Any, k: int = NDCG_K) -> np.ndarray:
    """Tie-averaged NDCG@k of each group (in order of first appearance); nan for a group with no gain.

    `groups` is one key per row (any hashable values, e.g. the output of
    ``frame.groupby([...]).ngroup()``). See the module docstring for the definition.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    g = np.asarray(gains, dtype=np.float64).reshape(-1)
    n = g.shape[0]
    s = _scores(scores, n)
    if isinstance(groups, (pd.Series, pd.Index)) or (isinstance(groups, np.ndarray) and groups.ndim == 1):
        keys = groups
    else:
        keys = pd.Series(list(groups), dtype=object)  # any hashable keys, tuples included
    codes, uniques = pd.factorize(keys, use_na_sentinel=False)
    if codes.shape[0] != n:
        raise ValueError(f"{codes.shape[0]} group keys for {n} rows")
    n_groups = len(uniques)
    if n_groups == 0:
        return np.empty(0)
    if np.any(g < 0) or not np.all(np.isfinite(g)):
        raise ValueError("gains (clicks) must be finite and non-negative")
    if not np.all(np.isfinite(s)):
        return np.full(n_groups, math.nan)

    def ranks_within(order: np.ndarray) -> np.ndarray:
        c = codes[order]
        first = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
        start_of = np.repeat(first, np.diff(np.append(first, n)))
        return np.arange(n) - start_of

    def discount(rank: np.ndarray) -> np.ndarray:
        return np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)

    # DCG with tie blocks: rows sorted by group, then score descending.
    order = np.lexsort((-s, codes))
    c, sc, gs = codes[order], s[order], g[order]
    d = discount(ranks_within(order))
    new_block = np.r_[True, (c[1:] != c[:-1]) | (sc[1:] != sc[:-1])]
    block = np.cumsum(new_block) - 1
    n_blocks = int(block[-1]) + 1
    block_gain = np.bincount(block, weights=gs, minlength=n_blocks)
    block_size = np.bincount(block, minlength=n_blocks)
    block_discount = np.bincount(block, weights=d, minlength=n_blocks)
    block_group = c[new_block]
    dcg = np.bincount(block_group, weights=block_gain / block_size * block_discount, minlength=n_groups)

    # Ideal DCG: rows sorted by gain descending (ties in gain do not matter).
    ideal = np.lexsort((-g, codes))
    idcg = np.bincount(codes[ideal], weights=g[ideal] * discount(ranks_within(ideal)), minlength=n_groups)

    out = np.full(n_groups, math.nan)
    ok = idcg > 0
    out[ok] = dcg[ok] / idcg[ok]
    return out


def ndcg_at_k(gains: Any, scores: Any, groups: Any, k: int = NDCG_K) -> float:
    """Mean tie-averaged NDCG@k over the groups with at least one click; nan when there is none."""
    per_group = ndcg_per_group(gains, scores, groups, k)
    defined = per_group[~np.isnan(per_group)]
    return float(defined.mean()) if defined.size else math.nan


def ndcg_against(
    frame: pd.DataFrame,
    scores: Any,
    gains: Any,
    *,
    group_cols: Sequence[str] = ("session_id", "query"),
    k: int = NDCG_K,
) -> float:
    """NDCG@k of `scores` against graded `gains` other than the clicks (e.g. a hidden or judged
    relevance), grouped per (session, query) like `evaluate`'s: the same tie-averaged, linear-gain
    definition, the mean over groups with some gain. Rows whose gain is unknown (nan) are left
    out; nan when no row is known or any score is non-finite. Scores need not be probabilities.
    """
    g = np.asarray(gains, dtype=np.float64).reshape(-1)
    s = _scores(scores, len(frame))
    if g.shape[0] != len(frame):
        raise ValueError(f"{g.shape[0]} gains for {len(frame)} rows")
    known = np.isfinite(g)
    if not known.any():
        return math.nan
    groups = frame.reset_index(drop=True).loc[known, list(group_cols)]
    codes = groups.groupby(list(group_cols), sort=False, dropna=False).ngroup().to_numpy()
    return ndcg_at_k(g[known], s[known], codes, k)


def log_loss(labels: Any, scores: Any, eps: float = LOGLOSS_EPS) -> float:
    """Mean binary cross-entropy with probabilities clipped to [eps, 1 - eps]; nan with no rows."""
    y = _binary(labels)
    p = _probabilities(scores, y.shape[0])
    if p is None or y.shape[0] == 0:
        return math.nan
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def expected_calibration_error(labels: Any, scores: Any, bins: int = ECE_BINS) -> float:
    """ECE over `bins` equal-width probability bins (default 10), weighted by bin size."""
    if bins < 1:
        raise ValueError("bins must be at least 1")
    y = _binary(labels)
    p = _probabilities(scores, y.shape[0])
    if p is None or y.shape[0] == 0:
        return math.nan
    b = np.minimum((p * bins).astype(np.int64), bins - 1)
    count = np.bincount(b, minlength=bins)
    gap = np.abs(np.bincount(b, weights=y.astype(np.float64), minlength=bins)
                 - np.bincount(b, weights=p, minlength=bins))  # n_b * |mean y - mean p|
    return float(gap.sum() / count.sum())


def _metrics(frame: pd.DataFrame, s: np.ndarray, *, label: str, group_cols: Sequence[str],
             k: int, bins: int) -> dict[str, float | int]:
    y = frame[label].to_numpy(dtype=np.float64)
    groups = frame.groupby(list(group_cols), sort=False, dropna=False).ngroup().to_numpy()
    per_group = ndcg_per_group(y, s, groups, k) if len(frame) else np.empty(0)
    return {
        "rows": int(len(frame)),
        "positives": int((y > 0).sum()),
        "ctr": float((y > 0).mean()) if len(frame) else math.nan,
        "mean_score": float(s.mean()) if len(frame) else math.nan,
        "auc": roc_auc(y, s),
        f"ndcg@{k}": ndcg_at_k(y, s, groups, k) if len(frame) else math.nan,
        "ndcg_groups": int((~np.isnan(per_group)).sum()),
        "logloss": log_loss(y, s),
        "ece": expected_calibration_error(y, s, bins),
    }


def evaluate(
    frame: pd.DataFrame,
    scores: Any,
    *,
    label: str = "clicked",
    group_cols: Sequence[str] = ("session_id", "query"),
    category: str = "category",
    k: int = NDCG_K,
    bins: int = ECE_BINS,
) -> dict[str, Any]:
    """All metrics of `scores` (one probability per row of `frame`), overall and per category.

    Returns ``{"rows", "positives", "ctr", "mean_score", "auc", "ndcg@10", "ndcg_groups",
    "logloss", "ece", "per_category": {category: {same keys}}}``. Per category, NDCG ranks
    only that category's rows within each (session, query). A null category is reported as ``"<null>"``. Metrics that
    cannot be computed are nan (see the module docstring); an empty frame gives ``rows = 0``
    and nan metrics.
    """
    s = _scores(scores, len(frame))
    if len(frame):
        _probabilities(s, len(frame))  # raise early on logits; nan scores flow through as nan metrics
    frame = frame.reset_index(drop=True)
    out: dict[str, Any] = _metrics(frame, s, label=label, group_cols=group_cols, k=k, bins=bins)
    per_category: dict[str, dict[str, float | int]] = {}
    if len(frame):
        cats = frame[category].astype(object).where(frame[category].notna(), "<null>").astype(str)
        for name, idx in sorted(cats.groupby(cats, sort=False).indices.items()):
            per_category[name] = _metrics(frame.iloc[idx], s[idx], label=label, group_cols=group_cols,
                                          k=k, bins=bins)
    out["per_category"] = per_category
    return out
