"""Score a candidate and the model it was trained from, on the fresh holdout and the anchor set.

The anchor set (`incremental.anchor`) is the forgetting benchmark: the same frozen rows for
every model, so each model's per-source-hour AUC on it forms one row of the accuracy matrix
R[model][source hour]. The champion's anchor scores are cached per (version, anchor hash):
an hourly run scores only the candidate there. The gate (`incremental.gate.decide`) then
turns both metric sets into a decision. The whole evaluation is written as JSON under
INCREMENTAL_HOME/evaluations/ and returned; only its path and key figures travel on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from incremental import anchor, compare, gate, lake, metrics, tracking
from incremental import model as ranker
from incremental.config import Settings


def score_dir(model_dir: Path, frame: pd.DataFrame, settings: Settings) -> np.ndarray:
    """Click probabilities of the ranker saved in `model_dir` for the rows of `frame`."""
    model, tokenizer = ranker.load_dir(model_dir)
    return ranker.score_frame(model, tokenizer, frame, max_length=settings.training.max_length,
                              device=ranker.pick_device())


def by_source_hour(frame: pd.DataFrame, scores: np.ndarray) -> dict[str, float]:
    """One row of R: AUC per anchor source hour."""
    hours = pd.to_datetime(frame[anchor.SOURCE_HOUR], utc=True)
    out = {}
    for hour, index in sorted(hours.groupby(hours).indices.items()):
        out[f"{hour:%Y-%m-%dT%H:%MZ}"] = metrics.roc_auc(frame["clicked"].to_numpy()[index], scores[index])
    return out


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def key_metrics(candidate: dict[str, Any]) -> dict[str, float]:
    per_category = candidate["anchor"].get("per_category", {})
    worst = min((m["auc"] for m in per_category.values() if math.isfinite(m["auc"])), default=math.nan)
    relative = candidate.get("holdout_vs_champion", {})
    return {
        "holdout_auc": candidate["holdout"]["auc"],
        "holdout_ndcg@10": candidate["holdout"]["ndcg@10"],
        "holdout_ndcg_diff": relative.get("ndcg@10", {}).get("diff", math.nan),
        "holdout_auc_diff": relative.get("auc", {}).get("diff", math.nan),
        "holdout_logloss": candidate["holdout"]["logloss"],
        "anchor_auc": candidate["anchor"]["auc"],
        "anchor_ndcg@10": candidate["anchor"]["ndcg@10"],
        "worst_category_auc": worst,
    }


def _anchor_sections(frame: pd.DataFrame, scores: np.ndarray, sha256: str, changed: list[str]) -> dict[str, Any]:
    """The anchor metrics, all rows and (the forgetting benchmark proper) the unchanged slices."""
    keep = ~frame["category"].astype(str).isin(changed).to_numpy()
    return {
        "anchor": {**metrics.evaluate(frame, scores), "sha256": sha256},
        "anchor_unchanged": {**metrics.evaluate(frame[keep], scores[keep]), "sha256": sha256,
                             "excluded_slices": sorted(changed)},
        "anchor_by_hour": by_source_hour(frame, scores),
    }


def evaluate_candidate(settings: Settings, trained: dict[str, Any],
                       context: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score the candidate and the champion it must beat; `context` is the drift context
    (mode, anomalous evidence, changed slices) that the gate reads."""
    context = context or {"mode": "normal", "anomalous": [], "changed_slices": []}
    changed = list(context.get("changed_slices", []))
    holdout = pd.read_parquet(trained["holdout_path"])
    anchor_frame, info = anchor.load(settings.lake)

    candidate_dir = Path(trained["candidate_dir"])
    holdout_scores = score_dir(candidate_dir, holdout, settings)
    anchor_scores = score_dir(candidate_dir, anchor_frame, settings)
    candidate = {"holdout": metrics.evaluate(holdout, holdout_scores),
                 **_anchor_sections(anchor_frame, anchor_scores, info.sha256, changed)}

    # The champion to beat: the one in production when training started (for an update of the
    # shadow chain that is not the model it warm-started from).
    parent = trained.get("compare_with", trained.get("parent_version"))
    champion = None
    if parent:
        parent_dir = tracking.version_model_dir(settings, parent)
        parent_anchor = anchor.cached_scores(settings.lake, parent, info.sha256,
                                             lambda: score_dir(parent_dir, anchor_frame, settings),
                                             rows=len(anchor_frame))
        parent_holdout = score_dir(parent_dir, holdout, settings)
        champion = {"version": parent, "holdout": metrics.evaluate(holdout, parent_holdout),
                    **_anchor_sections(anchor_frame, parent_anchor, info.sha256, changed)}
        candidate["holdout_vs_champion"] = compare.paired_bootstrap(
            holdout, holdout_scores, parent_holdout, samples=settings.gate.bootstrap_samples,
            confidence=settings.gate.confidence, seed=settings.training.seed)

    decision = gate.decide(candidate, champion, settings.gate, context)
    interval_start = trained["hour"]
    evaluation = {
        "interval_start": interval_start,
        "interval_end": trained["interval_end"],
        "kind": trained.get("kind", "hourly"),
        "run_id": trained["run_id"],
        "parent_version": trained.get("parent_version"),
        "compared_with": parent,
        "mode": context.get("mode", "normal"),
        "drift": context,
        "anchor": info.to_dict(),
        "candidate": candidate,
        "champion": champion,
        "decision": decision.to_dict(),
        "key_metrics": key_metrics(candidate),
        "thresholds": settings.gate.model_dump(),
    }
    folder = settings.home / "evaluations"
    path = folder / f"{trained['run_id']}.json"
    lake.atomic_write_json(path, _strict(evaluation))
    evaluation["path"] = str(path)
    return evaluation


def _strict(value: Any) -> Any:
    """JSON without NaN/inf (null instead), so any JSON reader can open the evaluation."""
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, np.generic):
        return _strict(value.item())
    return value
