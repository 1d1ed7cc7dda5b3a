"""One arm's hour, test then train: score the hour with the model the arm serves, then let the
arm learn from it through the pipeline's own functions, measuring what learning cost.

The reference arms (the oracle, the lexical floor) have no model: they score and learn nothing
(`step_reference`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.continual.homes import count_pages
from benchmarks.continual.lineage import served_lineage, version_run
from benchmarks.continual.plan import HOUR, Arm, Plan
from benchmarks.continual.truth import as_probability, group_ndcg, lexical_scores
from incremental.config import Settings
from incremental.handover import Registered
from incremental.hours import Hour, parse_hour


# --- measuring one step -------------------------------------------------------------------------
def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def _peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measured(fn: Callable[[], Any]) -> tuple[Any, float, float | None]:
    """(result, wall seconds, peak RSS in MiB during the call)."""
    _reset_peak_rss()
    began = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - began, _peak_rss_mb()


# --- scoring the served model --------------------------------------------------------------------
class Scorer:
    """The served model of one arm, loaded once per version; anchor scores kept per version."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.version: str | None = None
        self.model: Any = None
        self.anchor_scores: dict[str, Any] = {}

    def score(self, version: str, frame: Any) -> Any:
        from incremental.model import ranker as rk
        from incremental.registry import tracking

        if version != self.version:
            self.model = rk.load_dir(tracking.version_model_dir(self.settings, version))
            self.version = version
        model, tokenizer = self.model
        return rk.score_frame(model, tokenizer, frame, max_length=self.settings.training.max_length,
                              device=rk.pick_device())

    def anchor(self, version: str, frame: Any) -> Any:
        if version not in self.anchor_scores:
            self.anchor_scores[version] = self.score(version, frame)
        return self.anchor_scores[version]


def _trim(evaluated: dict[str, Any]) -> dict[str, Any]:
    keys = ("rows", "ctr", "auc", "ndcg@10", "logloss", "ece")
    out = {k: evaluated.get(k) for k in keys}
    out["per_category"] = {c: {k: m.get(k) for k in keys} for c, m in evaluated.get("per_category", {}).items()}
    return out


def prequential(frame: Any, scores: Any, truth: Any, *, calibrated: bool = True) -> dict[str, Any]:
    """The click metrics of `scores` on the hour's rows, and NDCG@10 against the truth (graded
    gains, `metrics.ndcg_against`) with how many rows the truth knew. A scorer that is no click
    model (`calibrated` False: the oracle, the lexical arm) has no log loss or ECE."""
    from incremental.judge import metrics

    out = _trim(metrics.evaluate(frame, scores))
    if not calibrated:
        out["logloss"] = out["ece"] = None
        for m in out["per_category"].values():
            m["logloss"] = m["ece"] = None
    if truth is not None:
        out["truth_ndcg@10"] = metrics.ndcg_against(frame, scores, truth)
        out["truth_groups"] = group_ndcg(frame, scores, truth)  # for the paired comparisons; not kept in the results
        out["truth_rows"] = int(np.isfinite(truth).sum())
    return out


def _anchor(out: dict[str, Any], anchor_frame: Any, scores: Any) -> dict[str, Any]:
    from incremental.judge import metrics

    anchor = metrics.evaluate(anchor_frame, scores)
    out["anchor_auc"] = anchor["auc"]
    out["anchor_auc_per_category"] = {c: m["auc"] for c, m in anchor["per_category"].items()}
    return out


def score_served(scorer: Scorer, version: str, frame: Any, anchor_frame: Any, truth: Any = None) -> dict[str, Any]:
    """Prequential metrics of the served model on the hour (truth NDCG@10 where `truth` is given:
    one gain per row), and its anchor AUC (overall, per category)."""
    out: dict[str, Any] = {"prequential": None}
    if frame is not None and len(frame):
        out["prequential"] = prequential(frame, scorer.score(version, frame), truth)
    return _anchor(out, anchor_frame, scorer.anchor(version, anchor_frame))


def reference_scores(arm: Arm, frame: Any, truth: Any, titles: set[str]) -> np.ndarray:
    """The oracle's (the truth; unknown rows 0) or the lexical arm's scores, as [0, 1] numbers."""
    if arm.scorer == "oracle":
        return np.nan_to_num(np.asarray(truth, dtype=np.float64), nan=0.0)
    if arm.scorer == "lexical":
        return as_probability(lexical_scores(titles, frame))
    raise ValueError(f"arm {arm.name}: no reference scorer {arm.scorer!r}")


def step_reference(arm: Arm, hour: Hour, frame: Any, truth: Any, anchor_frame: Any, anchor_truth: Any,
                   titles: set[str]) -> dict[str, Any]:
    """An arm with no model (oracle, lexical): score the hour and the anchor; nothing to learn
    (the lexical arm's IDF is refitted on `titles`, those of the hours before, at every hour:
    its learn seconds)."""
    began = time.perf_counter()
    out: dict[str, Any] = {"hour": hour.isoformat(), "arm": arm.name, "served_version": None,
                           "served_interval_end": None, "served_trained_through": None, "prequential": None,
                           "scorer": arm.scorer, "fitted_titles": len(titles) if arm.scorer == "lexical" else None}
    if frame is not None and len(frame):
        out["prequential"] = prequential(frame, reference_scores(arm, frame, truth, titles), truth, calibrated=False)
    _anchor(out, anchor_frame, reference_scores(arm, anchor_frame, anchor_truth, titles))
    out.update({"version": None, "decision": None, "overridden": False, "examples": 0, "train_seconds": 0.0,
                "learn_seconds": time.perf_counter() - began, "peak_rss_mb": None, "champion_after": None,
                "promoted": False, "pages": 0})
    return out


# --- how an arm learns: the pipeline's own functions ------------------------------------------
def run_cost(settings: Settings, version: str | None) -> dict[str, Any]:
    """Steps x batch size and the training loop's seconds, from the version's MLflow run."""
    if version is None:
        return {"examples": 0, "train_seconds": 0.0}
    run = version_run(settings, version)
    steps = run.data.metrics.get("steps", 0.0)
    batch = int(run.data.params.get("training.batch_size", settings.training.batch_size))
    return {"examples": int(steps * batch), "train_seconds": run.data.metrics.get("train_seconds", 0.0)}


def _force(settings: Settings, arm: Arm, result: Registered) -> bool:
    """Serve the arm's new version even if the gate rejected it (recorded as an override)."""
    from incremental.registry import champion as registry

    if arm.force_reason and result.version and result.champion != result.version:
        registry.promote(settings, result.version, arm.force_reason, who="benchmark")
        return True
    return result.override is not None


def learn(arm: Arm, settings: Settings, plan: Plan, hour: Hour, due: bool) -> dict[str, Any]:
    """The arm learns from `hour` (after it was scored); returns version, decision, override."""
    from incremental import pipeline, retrain

    if arm.learns == "none":
        return {"version": None, "decision": None, "overridden": False}
    if arm.learns == "hourly":
        run = pipeline.run_hour(settings, hour, force_promote_reason=arm.force_reason)
        if run.registered is None:
            return {"version": None, "decision": "quarantined", "overridden": False}
        # a drift episode's catch-up retrain counts in the cost
        caught = run.catch_up.registered if run.catch_up is not None else None
        return {"version": run.registered.version, "decision": run.registered.decision,
                "overridden": run.registered.override is not None, "mode": run.mode,
                "catch_up_version": caught.version if caught else None,
                "catch_up_decision": caught.decision if caught else None}
    pipeline.extract_step(settings, hour)
    status = pipeline.validate_step(settings, hour).status
    if not due:
        return {"version": None, "decision": f"not due ({status})", "overridden": False}
    start = parse_hour(plan.start)
    result = retrain.full_retrain(settings, start, hour + HOUR, anchor_size=plan.anchor_size)
    return {"version": result.version, "decision": result.decision, "overridden": _force(settings, arm, result)}


def step_arm(arm: Arm, settings: Settings, scorer: Scorer, plan: Plan, hour: Hour, due: bool,
             frame: Any, anchor_frame: Any, truth: Any = None) -> dict[str, Any]:
    """Test, then train: score the hour with the served model, then let the arm learn from it."""
    from incremental.registry import tracking

    client = tracking.configure(settings)
    served = tracking.champion_version(client, settings.model_name)
    rec: dict[str, Any] = {"hour": hour.isoformat(), "arm": arm.name, "served_version": served,
                           **served_lineage(settings, served)}
    if served is not None:
        rec.update(score_served(scorer, served, frame, anchor_frame, truth))
    learned, seconds, rss = measured(lambda: learn(arm, settings, plan, hour, due))
    rec.update(learned)
    costs = [run_cost(settings, v) for v in (learned["version"], learned.get("catch_up_version")) if v]
    rec.update({"examples": sum(c["examples"] for c in costs),
                "train_seconds": sum(c["train_seconds"] for c in costs)})
    rec["learn_seconds"] = seconds if arm.learns != "none" else 0.0
    rec["peak_rss_mb"] = rss if arm.learns != "none" else None
    rec["champion_after"] = tracking.champion_version(tracking.configure(settings), settings.model_name)
    rec["promoted"] = rec["champion_after"] != served
    rec["pages"] = count_pages(settings)
    return rec
