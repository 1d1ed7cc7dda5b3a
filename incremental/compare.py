"""Candidate against champion on the same rows: paired bootstrap intervals over sessions.

The relative gate (`incremental.gate`) asks one question of the fresh holdout: is the candidate
better, no different, or worse than the champion *on the same rows*? Rows of one session are
not independent (one query, one page, clicks that compete), so the unit of resampling is the
session: each bootstrap replicate draws sessions with replacement and recomputes both models'
metrics on the rows of the drawn sessions, the same draw for both (paired). The interval of
the difference (candidate minus champion) then says:

- ``lo > 0``: significantly better;
- ``hi < 0``: significantly worse;
- otherwise: within noise.

NDCG@10 is a mean over (session, query) groups, so its replicates are weighted means of the
per-group values; AUC is not a mean over sessions and is recomputed on every replicate's rows.
Deterministic for a given ``seed``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from incremental import metrics

BETTER, WORSE, NOISE = "better", "worse", "within noise"


def _verdict(lo: float, hi: float) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "undefined"
    return BETTER if lo > 0 else WORSE if hi < 0 else NOISE


def _interval(diffs: np.ndarray, point: float, confidence: float) -> dict[str, Any]:
    finite = diffs[np.isfinite(diffs)]
    if not math.isfinite(point) or finite.size < 0.9 * diffs.size or finite.size == 0:
        return {"diff": point, "lo": math.nan, "hi": math.nan, "verdict": "undefined"}
    alpha = (1.0 - confidence) / 2.0
    lo, hi = (float(x) for x in np.quantile(finite, [alpha, 1.0 - alpha]))
    return {"diff": point, "lo": lo, "hi": hi, "verdict": _verdict(lo, hi)}


def _sessions(frame: pd.DataFrame) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(frame["session_id"].astype(str), sort=False)
    return codes, len(uniques)


def _ndcg_diffs(frame: pd.DataFrame, candidate: np.ndarray, champion: np.ndarray, session: np.ndarray,
                draws: np.ndarray) -> tuple[float, np.ndarray]:
    """Point difference and replicate differences of mean NDCG@10 over (session, query) groups."""
    groups = frame.groupby(["session_id", "query"], sort=False, dropna=False).ngroup().to_numpy()
    gains = frame["clicked"].to_numpy(dtype=np.float64)
    cand = metrics.ndcg_per_group(gains, candidate, groups)
    champ = metrics.ndcg_per_group(gains, champion, groups)
    # the session of each group (a group lies within one session)
    group_session = np.zeros(len(cand), dtype=np.int64)
    group_session[groups] = session
    defined = ~np.isnan(cand) & ~np.isnan(champ)
    if not defined.any():
        return math.nan, np.full(len(draws), math.nan)
    diff = np.where(defined, np.nan_to_num(cand - champ), 0.0)
    n_sessions = draws.shape[1]
    per_session_sum = np.bincount(group_session, weights=diff, minlength=n_sessions)
    per_session_n = np.bincount(group_session, weights=defined.astype(np.float64), minlength=n_sessions)
    counts = np.stack([np.bincount(d, minlength=n_sessions) for d in draws])  # replicate x session
    totals, ns = counts @ per_session_sum, counts @ per_session_n
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = np.where(ns > 0, totals / ns, np.nan)
    return float(diff[defined].mean()), reps


def _auc_diffs(frame: pd.DataFrame, candidate: np.ndarray, champion: np.ndarray, session: np.ndarray,
               draws: np.ndarray) -> tuple[float, np.ndarray]:
    labels = frame["clicked"].to_numpy(dtype=np.float64)
    point = metrics.roc_auc(labels, candidate) - metrics.roc_auc(labels, champion)
    rows_of = pd.Series(np.arange(len(frame))).groupby(session).indices
    reps = np.empty(len(draws))
    for b, drawn in enumerate(draws):
        idx = np.concatenate([rows_of[s] for s in drawn])
        reps[b] = metrics.roc_auc(labels[idx], candidate[idx]) - metrics.roc_auc(labels[idx], champion[idx])
    return point, reps


def paired_bootstrap(frame: pd.DataFrame, candidate: Any, champion: Any, *, samples: int = 1000,
                     confidence: float = 0.9, seed: int = 0) -> dict[str, Any]:
    """Intervals of candidate minus champion for NDCG@10 and AUC on the same rows of `frame`.

    Returns ``{"sessions", "rows", "samples", "confidence", "ndcg@10": {"diff", "lo", "hi",
    "verdict"}, "auc": {...}}``; a metric that cannot be computed has nan bounds and the
    verdict ``"undefined"`` (the gate never passes it as "better").
    """
    candidate = np.asarray(candidate, dtype=np.float64).reshape(-1)
    champion = np.asarray(champion, dtype=np.float64).reshape(-1)
    if not len(frame) == len(candidate) == len(champion):
        raise ValueError(f"{len(frame)} rows, {len(candidate)} candidate and {len(champion)} champion scores")
    out: dict[str, Any] = {"rows": int(len(frame)), "samples": samples, "confidence": confidence}
    if len(frame) == 0:
        empty = {"diff": math.nan, "lo": math.nan, "hi": math.nan, "verdict": "undefined"}
        return {**out, "sessions": 0, "ndcg@10": dict(empty), "auc": dict(empty)}
    frame = frame.reset_index(drop=True)
    session, n_sessions = _sessions(frame)
    draws = np.random.default_rng(seed).integers(0, n_sessions, size=(samples, n_sessions))
    out["sessions"] = n_sessions
    point, reps = _ndcg_diffs(frame, candidate, champion, session, draws)
    out["ndcg@10"] = _interval(reps, point, confidence)
    point, reps = _auc_diffs(frame, candidate, champion, session, draws)
    out["auc"] = _interval(reps, point, confidence)
    return out


def category_mean_bootstrap(frame: pd.DataFrame, candidate: Any, baseline: Any, categories: list[str], *,
                            samples: int = 1000, confidence: float = 0.9, seed: int = 0) -> dict[str, Any]:
    """The mean over `categories` of candidate minus baseline per-category AUC, with a paired
    bootstrap interval over sessions: the forgetting goal's own measure (each category counts
    once, whatever its size; pairs across categories, which a pooled AUC also counts, do not).

    Returns ``{"rows", "sessions", "samples", "confidence", "categories": {category: {"rows",
    "candidate", "baseline", "diff"}}, "diff", "lo", "hi", "verdict"}``; a category whose AUC is
    undefined on its rows (one class) is left out of the mean and listed with nan figures; so is a
    category that one bootstrap draw leaves with one class, in that draw.
    """
    candidate = np.asarray(candidate, dtype=np.float64).reshape(-1)
    baseline = np.asarray(baseline, dtype=np.float64).reshape(-1)
    if not len(frame) == len(candidate) == len(baseline):
        raise ValueError(f"{len(frame)} rows, {len(candidate)} candidate and {len(baseline)} baseline scores")
    keep = frame["category"].astype(str).isin(categories).to_numpy()
    frame, candidate, baseline = frame[keep].reset_index(drop=True), candidate[keep], baseline[keep]
    labels = frame["clicked"].to_numpy(dtype=np.float64)
    category = frame["category"].astype(str).to_numpy()
    per = {}
    for c in sorted(categories):
        rows = category == c
        cand, base = metrics.roc_auc(labels[rows], candidate[rows]), metrics.roc_auc(labels[rows], baseline[rows])
        per[c] = {"rows": int(rows.sum()), "candidate": cand, "baseline": base, "diff": cand - base}
    counted = [c for c in per if math.isfinite(per[c]["diff"])]
    out: dict[str, Any] = {"rows": int(len(frame)), "samples": samples, "confidence": confidence, "categories": per}
    if not counted:
        return {**out, "sessions": 0, "diff": math.nan, "lo": math.nan, "hi": math.nan, "verdict": "undefined"}
    session, n_sessions = _sessions(frame)
    draws = np.random.default_rng(seed).integers(0, n_sessions, size=(samples, n_sessions))
    rows_of = pd.Series(np.arange(len(frame))).groupby(session).indices
    reps = np.empty(samples)
    for b, drawn in enumerate(draws):
        idx = np.concatenate([rows_of[s] for s in drawn])
        drawn_category = category[idx]  # once per draw, not once per category
        diffs = []
        for c in counted:
            rows = idx[drawn_category == c]
            diffs.append(metrics.roc_auc(labels[rows], candidate[rows]) - metrics.roc_auc(labels[rows], baseline[rows]))
        reps[b] = np.nanmean(diffs) if np.isfinite(diffs).any() else math.nan  # a draw may leave one class
    point = float(np.mean([per[c]["diff"] for c in counted]))
    return {**out, "sessions": n_sessions, **_interval(reps, point, confidence)}
