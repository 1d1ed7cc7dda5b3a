"""Ranking and calibration metrics, and the forgetting measures of the accuracy matrix.

Pure functions on numpy arrays and pandas frames; the package's one AUC is `roc_auc` here (the
tests cross-check these against scikit-learn, which the package itself does not import). Scores are click *probabilities* in [0, 1] (the sigmoid of the ranker's logit).

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

The accuracy matrix and forgetting
----------------------------------
``R[i, j]`` is the metric (usually AUC) of model i on the anchor rows from source hour j. Rows
are the successive models in the order they were trained (oldest first, the model being judged
last, row T); columns are anchor source hours (oldest first); unknown entries are ``nan``.

In continual learning (one task per model) the diagonal ``R[i, i]`` is "task i just after it
was learned". Here one model may have seen many hours at once (the bootstrap), hours come
from replay, and the anchor's hours need not coincide with update hours, so **the entry that
plays the diagonal for column j is R[d(j), j] where d(j) is the first model that had seen
hour j**: the first row whose ``trained_through`` (the last source hour the model was trained
on) is at or after hour j. For a plain square array (no ``trained_through``) d(j) = j, the
textbook diagonal.

Backward transfer (Lopez-Paz & Ranzato 2017, GEM)
    ``BWT = 1/(T-1) sum_{i<T} (R[T, i] - R[i, i])``. Adapted: the mean of
    ``R[T, j] - R[d(j), j]`` over the columns j learned *before* the last model
    (``d(j) < T``) where both entries are known. Negative BWT is forgetting; positive is
    backward transfer. When every column is known this is exactly the formula above.

Average forgetting (Chaudhry et al. 2018, RWalk)
    ``f_j = max_{l<T} R[l, j] - R[T, j]``, averaged over ``j < T``. Adapted: the max runs over
    the models that had already seen hour j and came before the last one,
    ``d(j) <= l < T`` (a model that never saw hour j cannot have forgotten it; in our setting
    hours resemble each other, so an earlier model can score well on a later hour without
    having learned it, and counting that as "knowledge lost" would be wrong). Averaged over
    the columns with ``d(j) < T`` and ``R[T, j]`` known. ``f_j`` may be negative (the last
    model is the best yet on hour j); it is not clipped.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

NDCG_K = 10
ECE_BINS = 10
LOGLOSS_EPS = 1e-15

__all__ = [
    "AccuracyMatrix",
    "ECE_BINS",
    "LOGLOSS_EPS",
    "NDCG_K",
    "accuracy_matrix",
    "average_forgetting",
    "backward_transfer",
    "evaluate",
    "expected_calibration_error",
    "forgetting_per_column",
    "forgetting_report",
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


# --------------------------------------------------------------------------- accuracy matrix


@dataclass(frozen=True)
class AccuracyMatrix:
    """R with its labels: rows are models (oldest first), columns source hours (oldest first).

    ``diagonal_row[j]`` is d(j), the first row that had seen column j (-1: none has), the entry
    that plays the diagonal (see the module docstring).
    """

    values: np.ndarray
    rows: tuple[Hashable, ...]
    columns: tuple[Hashable, ...]
    diagonal_row: np.ndarray

    @property
    def last(self) -> int:
        return len(self.rows) - 1

    def eligible(self) -> np.ndarray:
        """Columns learned before the last model: ``0 <= d(j) < T``."""
        d = self.diagonal_row
        return (d >= 0) & (d < self.last)


def _first_row_at_or_after(trained_through: Sequence[Any], columns: Sequence[Any]) -> np.ndarray:
    out = np.full(len(columns), -1, dtype=np.int64)
    for j, col in enumerate(columns):
        for i, through in enumerate(trained_through):
            if through is not None and through >= col:
                out[j] = i
                break
    return out


def _through(trained_through: Mapping[Hashable, Any] | Sequence[Any] | None, rows: Sequence[Any]) -> list[Any]:
    """Per row, the last source hour the model had seen (default: the row keys themselves)."""
    if trained_through is None:
        through = list(rows)
    elif isinstance(trained_through, Mapping):
        through = [trained_through.get(r) for r in rows]
    else:
        through = list(trained_through)
    if len(through) != len(rows):
        raise ValueError(f"trained_through has {len(through)} entries for {len(rows)} models")
    return through


def accuracy_matrix(
    R: Mapping[Any, Mapping[Any, float]] | np.ndarray | Sequence[Sequence[float]],  # keys: sortable
    trained_through: Mapping[Hashable, Any] | Sequence[Any] | None = None,
) -> AccuracyMatrix:
    """Normalise R (a mapping ``model -> {source_hour: metric}`` or a 2-D array, nan unknown).

    Mapping rows are ordered by their keys (model index, or the hour a model was trained
    through) and columns by source hour. `trained_through` gives, per row (a mapping keyed like
    R or a sequence in row order), the last source hour that model had seen; by default the row
    keys themselves are used, which works when models are keyed by the hour they were trained
    through (or, for arrays, row i has seen columns 0..i: the textbook diagonal).
    """
    if isinstance(R, Mapping):
        rows = tuple(sorted(R))
        columns = tuple(sorted({col for row in R.values() for col in row}))
        values = np.array([[float(R[r].get(c, math.nan)) for c in columns] for r in rows], dtype=np.float64)
        values = values.reshape(len(rows), len(columns))
        through = _through(trained_through, rows)
        try:
            diagonal = _first_row_at_or_after(through, columns)
        except TypeError:
            raise ValueError(
                "cannot tell which model first saw each source hour: pass trained_through"
                " (per model, the last source hour it was trained on)"
            ) from None
    else:
        values = np.asarray(R, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError("R must be two-dimensional (models x source hours)")
        rows = tuple(range(values.shape[0]))
        columns = tuple(range(values.shape[1]))
        diagonal = _first_row_at_or_after(_through(trained_through, rows), columns)
    return AccuracyMatrix(values=values, rows=rows, columns=columns, diagonal_row=diagonal)


def _as_matrix(R: Any, trained_through: Any) -> AccuracyMatrix:
    return R if isinstance(R, AccuracyMatrix) else accuracy_matrix(R, trained_through)


def backward_transfer(R: Any, trained_through: Any = None) -> float:
    """BWT (Lopez-Paz & Ranzato 2017): mean of ``R[T, j] - R[d(j), j]`` over columns learned before T.

    Negative means the last model forgot; nan when no column qualifies (e.g. a single model).
    """
    m = _as_matrix(R, trained_through)
    diffs = [
        m.values[m.last, j] - m.values[m.diagonal_row[j], j]
        for j in np.flatnonzero(m.eligible())
    ]
    diffs = [x for x in diffs if np.isfinite(x)]
    return float(np.mean(diffs)) if diffs else math.nan


def forgetting_per_column(R: Any, trained_through: Any = None) -> dict[Hashable, float]:
    """Chaudhry et al. (2018) ``f_j = max_{d(j) <= l < T} R[l, j] - R[T, j]`` per eligible column."""
    m = _as_matrix(R, trained_through)
    out: dict[Hashable, float] = {}
    for j in np.flatnonzero(m.eligible()):
        final = m.values[m.last, j]
        earlier = m.values[m.diagonal_row[j]: m.last, j]
        earlier = earlier[np.isfinite(earlier)]
        if np.isfinite(final) and earlier.size:
            out[m.columns[j]] = float(earlier.max() - final)
    return out


def average_forgetting(R: Any, trained_through: Any = None) -> float:
    """Average forgetting (Chaudhry et al. 2018): the mean of `forgetting_per_column`; nan if empty."""
    per_column = forgetting_per_column(R, trained_through)
    return float(np.mean(list(per_column.values()))) if per_column else math.nan


def forgetting_report(R: Any, trained_through: Any = None) -> dict[str, Any]:
    """BWT, average forgetting, the worst column and per-column forgetting, for a run's report."""
    m = _as_matrix(R, trained_through)
    per_column = forgetting_per_column(m)
    worst = max(per_column, key=lambda c: per_column[c]) if per_column else None
    return {
        "backward_transfer": backward_transfer(m),
        "average_forgetting": average_forgetting(m),
        "max_forgetting": per_column[worst] if worst is not None else math.nan,
        "max_forgetting_column": worst,
        "forgetting": per_column,
        "models": len(m.rows),
        "columns": len(m.columns),
    }
