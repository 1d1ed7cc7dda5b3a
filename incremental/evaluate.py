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

from incremental import anchor, gate, lake, metrics, tracking
from incremental import model as ranker
from incremental.config import Settings


def _score(model_dir: Path, frame: pd.DataFrame, settings: Settings) -> np.ndarray:
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
    return {
        "holdout_auc": candidate["holdout"]["auc"],
        "holdout_logloss": candidate["holdout"]["logloss"],
        "anchor_auc": candidate["anchor"]["auc"],
        "anchor_ndcg@10": candidate["anchor"]["ndcg@10"],
        "worst_category_auc": worst,
    }


def evaluate_candidate(settings: Settings, trained: dict[str, Any]) -> dict[str, Any]:
    holdout = pd.read_parquet(trained["holdout_path"])
    anchor_frame, info = anchor.load(settings.lake)

    candidate_dir = Path(trained["candidate_dir"])
    holdout_scores = _score(candidate_dir, holdout, settings)
    anchor_scores = _score(candidate_dir, anchor_frame, settings)
    candidate = {
        "holdout": metrics.evaluate(holdout, holdout_scores),
        "anchor": {**metrics.evaluate(anchor_frame, anchor_scores), "sha256": info.sha256},
        "anchor_by_hour": by_source_hour(anchor_frame, anchor_scores),
    }

    parent = trained.get("parent_version")
    champion = None
    if parent:
        parent_dir = tracking.version_model_dir(settings, parent)
        parent_anchor = anchor.cached_scores(settings.lake, parent, info.sha256,
                                             lambda: _score(parent_dir, anchor_frame, settings),
                                             rows=len(anchor_frame))
        champion = {
            "version": parent,
            "holdout": metrics.evaluate(holdout, _score(parent_dir, holdout, settings)),
            "anchor": {**metrics.evaluate(anchor_frame, parent_anchor), "sha256": info.sha256},
            "anchor_by_hour": by_source_hour(anchor_frame, parent_anchor),
        }

    decision = gate.decide(candidate, champion, settings.gate)
    interval_start = trained["hour"]
    evaluation = {
        "interval_start": interval_start,
        "interval_end": trained["interval_end"],
        "kind": trained.get("kind", "hourly"),
        "run_id": trained["run_id"],
        "parent_version": parent,
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
