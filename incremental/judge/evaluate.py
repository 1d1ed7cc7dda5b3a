"""Score a candidate and the model it was trained from, on the fresh holdout and the anchor set.

The anchor set (`incremental.judge.anchor`) is the forgetting benchmark: the same frozen rows for
every model, so each model's per-source-hour AUC on it forms one row of the accuracy matrix
R[model][source hour]. The champion's anchor scores are cached per (version, anchor hash):
an hourly run scores only the candidate there. The gate (`incremental.judge.gate.decide`) then
turns both metric sets into a decision. The whole evaluation is logged to the candidate's MLflow
run (`evaluation/evaluation.json`, with a local copy under INCREMENTAL_HOME/evaluations/); only
its URI and key figures travel on.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

import mlflow
import numpy as np
import pandas as pd

from incremental.config import GateSettings, Settings
from incremental.data import files
from incremental.hours import HOUR, iso_hour
from incremental.judge import anchor, compare, drift_rule, gate, metrics, score_cache
from incremental.judge.drift_rule import DriftContext
from incremental.judge.strata import SOURCE_HOUR
from incremental.model import ranker
from incremental.registry import tracking

if TYPE_CHECKING:
    from incremental.handover import Trained


def score_dir(model_dir: Path, frame: pd.DataFrame, settings: Settings) -> np.ndarray:
    """Click probabilities of the ranker saved in `model_dir` for the rows of `frame`."""
    model, tokenizer = ranker.load_dir(model_dir)
    return ranker.score_frame(model, tokenizer, frame, max_length=settings.training.max_length,
                              device=ranker.pick_device())


def by_source_hour(frame: pd.DataFrame, scores: np.ndarray) -> dict[str, float]:
    """One row of R: AUC per anchor source hour."""
    hours = pd.to_datetime(frame[SOURCE_HOUR], utc=True)
    out = {}
    for hour, index in sorted(hours.groupby(hours).indices.items()):
        out[iso_hour(hour)] = metrics.roc_auc(frame["clicked"].to_numpy()[index], scores[index])
    return out


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def key_metrics(candidate: dict[str, Any], min_category_rows: int = 1) -> dict[str, float]:
    """The figures `incremental history` and the registry show. The worst category is taken, as the gate's
    check takes it, over the anchor's categories of at least `min_category_rows` rows (a category of three
    rows showed an AUC of 0)."""
    per_category = candidate["anchor"].get("per_category", {})
    worst = min((m["auc"] for m in per_category.values()
                 if math.isfinite(m["auc"]) and m.get("rows", 0) >= min_category_rows), default=math.nan)
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


# The lexical floor a first model is judged against (`lexical_floor`).
LexicalFloor = TypedDict("LexicalFloor", {"scorer": str, "auc": float, "ndcg@10": float,
                                          "candidate_vs_floor": compare.PairedBootstrap})


class AnchorIntervals(compare.PairedBootstrap):
    """The forgetting checks' intervals on the anchor's unchanged slices, and per category."""

    per_category: dict[str, compare.PairedBootstrap]


def lexical_floor(holdout: pd.DataFrame, candidate_scores: np.ndarray, settings: Settings) -> LexicalFloor:
    """The floor a first model is judged against: BM25 (`incremental.judge.lexical`, no training, no
    clicks: its IDF fitted on the distinct titles of the holdout, rows of the same hours) on the same holdout, and the paired interval of
    candidate minus floor over sessions. A constant AUC floor tuned on one data set says nothing
    about another (on a real judgment set the human grades themselves reach click AUC 0.65)."""
    from incremental.judge.lexical import LexicalScorer

    scorer = LexicalScorer.fit(holdout["title"].drop_duplicates())
    floor = scorer.score(holdout["query"].to_numpy(), holdout["title"].to_numpy())
    labels, groups = holdout["clicked"].to_numpy(), holdout[["session_id", "query"]].astype(str).agg("|".join, axis=1)
    g = settings.gate
    return {"scorer": "bm25", "auc": metrics.roc_auc(labels, floor),
            "ndcg@10": metrics.ndcg_at_k(labels, floor, groups.to_numpy()),
            "candidate_vs_floor": compare.paired_bootstrap(holdout, candidate_scores, floor,
                                                           samples=g.bootstrap_samples, confidence=g.confidence,
                                                           seed=settings.training.seed, by_product=by_product(g))}


def by_product(gate: GateSettings) -> bool:
    return gate.bootstrap_units == "sessions_and_products"


def anchor_intervals(frame: pd.DataFrame, candidate: np.ndarray, champion: np.ndarray, changed: list[str],
                     settings: Settings) -> AnchorIntervals:
    """The forgetting checks' noise margin: paired intervals of candidate minus champion over the
    anchor sessions of the unchanged slices, overall and per category large enough to be judged."""
    g = settings.gate

    def interval(rows: np.ndarray) -> compare.PairedBootstrap:
        # sessions only: the anchor is a frozen set whose products are the benchmark itself, not a
        # sample of the products to come (and resampling them cost the forgetting checks their power)
        return compare.paired_bootstrap(frame[rows], candidate[rows], champion[rows], samples=g.bootstrap_samples,
                                        confidence=g.confidence, seed=settings.training.seed, by_product=False)

    category = frame["category"].astype(str).to_numpy()
    per_category = {c: interval(category == c) for c in sorted(set(category) - set(changed))
                    if (category == c).sum() >= g.min_category_rows}
    return {**interval(~np.isin(category, changed)), "per_category": per_category}


def baseline_budget(settings: Settings, info: anchor.AnchorInfo, frame: pd.DataFrame,
                    scores: np.ndarray) -> dict[str, Any]:
    """The cumulative forgetting budget's figures: the candidate against the anchor's baseline
    (the champion when the anchor was frozen or rolled) on the protected categories large enough
    to judge. Per-update limits alone let small losses add up over promoted updates (a ratchet:
    0.040 mean AUC lost on the medium benchmark's unchanged categories, each update within its limit)."""
    baseline_version = info.baseline_version
    if not baseline_version:
        return {"applicable": False, "why": "no champion when the anchor was frozen: no baseline to hold candidates to"}
    category = frame["category"].astype(str)
    protected = info.protected_categories if info.protected_categories is not None else sorted(set(category))
    sizes = category.value_counts()
    judged = [c for c in protected if sizes.get(c, 0) >= settings.gate.min_category_rows]
    out: dict[str, Any] = {"baseline_version": baseline_version, "protected": list(protected)}
    if not judged:
        return {**out, "applicable": False,
                "why": f"no protected category has {settings.gate.min_category_rows}+ anchor rows"}
    baseline = score_cache.cached_scores(
        settings.lake, tracking.version_key(settings, baseline_version), info.sha256,
        lambda: score_dir(tracking.version_model_dir(settings, baseline_version), frame, settings),
        rows=len(frame))
    g = settings.gate
    return {**out, "applicable": True,
            **compare.category_mean_bootstrap(frame, scores, baseline, judged, samples=g.bootstrap_samples,
                                              confidence=g.confidence, seed=settings.training.seed)}


EVALUATION_ARTIFACT = "evaluation/evaluation.json"


def _read_holdout(uri: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory(prefix="holdout-") as tmp:
        return pd.read_parquet(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))


def candidate_dir(settings: Settings, run_id: str, model_uri: str) -> Path:
    """The candidate's Hugging Face directory on this worker: downloaded once from its run.

    Published whole with one rename, and never removed once there: two processes judging the same
    candidate at once (two runs of one hour) both end up reading the same complete directory; the
    one that loses the race drops its own copy. (Removing and moving it in place made the other
    process read a half-moved directory: "no file named model.safetensors".)"""
    cache = settings.home / "candidates" / f"run-{run_id}"
    if (cache / "config.json").is_file():
        return cache
    tracking.configure(settings)
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{cache.name}-", dir=cache.parent))
    try:
        found = tracking.download_model_dir(model_uri, staging / "download")
        if cache.is_dir() and not (cache / "config.json").is_file():
            shutil.rmtree(cache, ignore_errors=True)  # a copy left half-written by an older version of this code
        try:
            os.replace(found, cache)
        except OSError:
            if not (cache / "config.json").is_file():  # not another process's complete copy: a real error
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cache


class Evaluation(TypedDict):
    """A candidate's evaluation (`evaluation/evaluation.json` in its run): the figures the gate
    decided on, the decision, the thresholds applied. Strict JSON (`strict_json`: nan is null)."""

    interval_start: str  # ISO hours: the window the candidate was trained on
    interval_end: str
    kind: str  # "hourly" | "full_retrain" | "catch_up"
    run_id: str
    parent_version: str | None
    compared_with: str | None  # the champion it was judged against (None: a first model)
    mode: str
    drift: DriftContext
    anchor: dict[str, Any]  # the anchor set's record (`anchor.AnchorInfo`)
    candidate: dict[str, Any]  # its metrics (fresh holdout, anchor), its intervals against the champion or floor
    champion: dict[str, Any] | None  # the champion's metrics on the same rows
    decision: gate.DecisionRecord  # approved, every check, the reasons
    key_metrics: dict[str, float | None]
    thresholds: dict[str, Any]  # `GateSettings`
    uri: NotRequired[str]  # runs:/<run_id>/evaluation/evaluation.json (not stored in it)


def load_evaluation(settings: Settings, run_id: str) -> Evaluation:
    """A run's evaluation: the local copy when this worker wrote it, else the run's artifact."""
    local = settings.home / "evaluations" / f"{run_id}.json"
    if local.is_file():
        return cast(Evaluation, json.loads(local.read_text()))
    tracking.configure(settings)
    return cast(Evaluation, mlflow.artifacts.load_dict(f"runs:/{run_id}/{EVALUATION_ARTIFACT}"))


def evaluate_candidate(settings: Settings, trained: Trained) -> Evaluation:
    """Score the candidate and the champion it must beat; its drift context (mode, anomalous
    evidence, changed slices) is what the gate reads. The candidate and its holdout are read back
    by URI from the training run, so this may run on another worker."""
    if trained.run_id is None or trained.model_uri is None or trained.holdout_uri is None:
        raise ValueError(f"hour {iso_hour(trained.hour)} has no candidate to evaluate (reused or skipped)")
    context: DriftContext = trained.drift or {"mode": "normal", "anomalous": [], "changed_slices": []}
    changed = list(context.get("changed_slices", []))
    tracking.configure(settings)
    holdout = _read_holdout(trained.holdout_uri)
    anchor_frame, info = anchor.load(settings.lake)

    candidate_dir_ = candidate_dir(settings, trained.run_id, trained.model_uri)
    holdout_scores = score_dir(candidate_dir_, holdout, settings)
    # kept under its run: once it is the champion, the next hours compare with these scores
    anchor_scores = score_cache.cached_scores(settings.lake, tracking.run_key(trained.run_id), info.sha256,
                                              lambda: score_dir(candidate_dir_, anchor_frame, settings),
                                              rows=len(anchor_frame))
    candidate = {"holdout": metrics.evaluate(holdout, holdout_scores),
                 **_anchor_sections(anchor_frame, anchor_scores, info.sha256, changed)}

    # The champion to beat: the one in production when training started (for an update of the
    # shadow chain that is not the model it warm-started from).
    parent = trained.compare_with
    champion = None
    if parent:
        parent_dir = tracking.version_model_dir(settings, parent)
        parent_anchor = score_cache.cached_scores(settings.lake, tracking.version_key(settings, parent), info.sha256,
                                                  lambda: score_dir(parent_dir, anchor_frame, settings),
                                                  rows=len(anchor_frame))
        parent_holdout = score_dir(parent_dir, holdout, settings)
        champion = {"version": parent, "holdout": metrics.evaluate(holdout, parent_holdout),
                    **_anchor_sections(anchor_frame, parent_anchor, info.sha256, changed)}
        candidate["holdout_vs_champion"] = compare.paired_bootstrap(
            holdout, holdout_scores, parent_holdout, samples=settings.gate.bootstrap_samples,
            confidence=settings.gate.confidence, seed=settings.training.seed, by_product=by_product(settings.gate))
        candidate["anchor_vs_champion"] = anchor_intervals(anchor_frame, anchor_scores, parent_anchor, changed,
                                                           settings)
        candidate["anchor_vs_baseline"] = baseline_budget(settings, info, anchor_frame, anchor_scores)
    else:  # a first model: judged against a floor fitted on its own data, not a constant
        candidate["lexical_floor"] = lexical_floor(holdout, holdout_scores, settings)

    if champion is not None and not context.get("judged", True) and not context.get("anomalous"):
        context = {**context, "anomalous": drift_rule.anchor_evidence(champion["holdout"], champion["anchor"],
                                                                       settings.drift)}
    decision = gate.decide(candidate, champion, settings.gate, context)
    evaluation: Evaluation = strict_json({
        "interval_start": iso_hour(trained.hour),
        "interval_end": iso_hour(trained.interval_end or trained.hour + HOUR),
        "kind": trained.kind,
        "run_id": trained.run_id,
        "parent_version": trained.parent_version,
        "compared_with": parent,
        "mode": context.get("mode", "normal"),
        "drift": context,
        "anchor": info.to_dict(),
        "candidate": candidate,
        "champion": champion,
        "decision": decision.to_dict(),
        "key_metrics": key_metrics(candidate, settings.gate.min_category_rows),
        "thresholds": settings.gate.model_dump(),
    })
    files.atomic_write_json(settings.home / "evaluations" / f"{trained.run_id}.json", evaluation)
    tracking.configure(settings).log_dict(trained.run_id, {**evaluation}, EVALUATION_ARTIFACT)
    evaluation["uri"] = f"runs:/{trained.run_id}/{EVALUATION_ARTIFACT}"
    return evaluation


# --- what an evaluation says, for the registration --------------------------------------------------
def improved(evaluation: Evaluation) -> bool:
    """The candidate is significantly better than the champion on its fresh holdout (NDCG@10 or AUC)."""
    relative = (evaluation.get("candidate") or {}).get("holdout_vs_champion") or {}
    return any((relative.get(m) or {}).get("verdict") == "better" for m in ("ndcg@10", "auc"))


def forgot(decision: gate.DecisionRecord) -> bool:
    """A forgetting check failed: the candidate broke what still holds on the anchor set."""
    return any(c["name"].startswith("anchor_") and not c["passed"] for c in decision.get("checks", []))


def drift_tags(evaluation: Evaluation) -> dict[str, str]:
    """What a reviewer needs on the version: the mode, the drift evidence, the slices judged changed."""
    context = evaluation.get("drift") or {}
    return {"mode": evaluation.get("mode", "normal"), "kind": evaluation.get("kind", "hourly"),
            "compared_with": str(evaluation.get("compared_with") or ""),
            "changed_slices": ",".join(context.get("changed_slices", [])),
            "drift_evidence": " | ".join(context.get("anomalous", []) or context.get("evidence", []))[:4000]}


def strict_json(value: Any) -> Any:
    """JSON without NaN/inf (null instead) or numpy scalars, so any JSON reader can open it."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, np.generic):
        return strict_json(value.item())
    return value
