"""The verdict on a trained candidate, and carrying it out: the two steps that an hourly update
(`incremental.pipeline`) and a retrain from the base weights (`incremental.retrain`) share.

    evaluate_step: score the candidate (and its parent) on the fresh holdout and the anchor set; the gate
    register_step: a version for it; approved -> champion (compare-and-set); its report in MLflow

Each takes the settings, the hour and what the step before handed on (`incremental.handover`), and
returns a small typed value, as the pipeline's other steps do.
"""

from __future__ import annotations

import json
from typing import TypedDict

from incremental.config import Settings
from incremental.handover import Evaluated, Registered, Trained
from incremental.hours import HOUR, Hour
from incremental.registry import links, tracking


class MlflowUrls(TypedDict, total=False):
    mlflow_run_url: str
    model_version_url: str


def mlflow_urls(settings: Settings, run_id: str | None, version: str | None) -> MlflowUrls:
    """The MLflow UI's pages of the run and the version, where given."""
    urls: MlflowUrls = {}
    if run_id:
        client = tracking.configure(settings)
        experiment = client.get_run(run_id).info.experiment_id
        urls["mlflow_run_url"] = links.run_url(settings.mlflow_ui_url, run_id, experiment)
    if version:
        urls["model_version_url"] = links.model_version_url(settings.mlflow_ui_url, settings.model_name, version)
    return urls


def evaluate_step(settings: Settings, hour: Hour, trained: Trained) -> Evaluated:
    """Score the candidate (and its parent) on the fresh holdout and the anchor set; apply the gate."""
    from incremental.judge import evaluate

    if trained.skipped is not None:
        return Evaluated(hour=trained.hour, skipped=trained.skipped)
    if trained.reused_version is not None:
        return Evaluated(hour=trained.hour, reused_version=trained.reused_version)
    evaluation = evaluate.evaluate_candidate(settings, trained)
    return Evaluated(hour=trained.hour, run_id=trained.run_id, evaluation_uri=evaluation["uri"],
                     decision=evaluation["decision"]["decision"], reasons=tuple(evaluation["decision"]["reasons"]),
                     key_metrics=evaluation["key_metrics"])


def register_step(
    settings: Settings, hour: Hour, trained: Trained, evaluation: Evaluated, *,
    airflow_run_id: str | None = None, force_promote_reason: str | None = None, dry_run: bool = False,
) -> Registered:
    """Register the candidate as a version; approved -> champion (compare-and-set); report to MLflow."""
    from incremental.judge import drift
    from incremental.judge.evaluate import drift_tags, forgot, improved, load_evaluation
    from incremental.registry import champion as registry
    from incremental.registry import review as report

    if trained.skipped is not None:  # nothing trained: no version, the champion unchanged
        return Registered(hour=hour, version=None, decision="skipped", skipped=trained.skipped,
                          reasons=(trained.skipped,), trained_by=trained.trained_by,
                          champion=tracking.champion_version(tracking.configure(settings), settings.model_name))
    if trained.reused_version is not None:
        return _reused(settings, hour, trained, force_promote_reason if not dry_run else None)
    assert trained.run_id is not None and trained.model_uri is not None and trained.data_hash is not None  # a candidate
    full = load_evaluation(settings, trained.run_id)
    decision = full["decision"]
    if dry_run:
        champion = tracking.champion(settings)
        return Registered(hour=hour, version=None, decision=decision["decision"], dry_run=True,
                          reasons=tuple(decision["reasons"]), champion=champion[0] if champion else None,
                          **mlflow_urls(settings, trained.run_id, None))
    registered = registry.register_candidate(
        settings, model_uri=trained.model_uri, run_id=trained.run_id,
        interval_start=trained.hour, interval_end=trained.interval_end or trained.hour + HOUR,
        parent_version=trained.parent_version, expected_champion=trained.compare_with, data_hash=trained.data_hash,
        partition_sha256=trained.partition_sha256, approved=decision["approved"], reasons=decision["reasons"],
        metrics=full["key_metrics"], airflow_run_id=airflow_run_id, anchor_sha256=full.get("anchor", {}).get("sha256"),
        extra_tags=drift_tags(full),
    )
    if not registered.reused:
        drift.after_decision(settings, hour, registered.version, registered.decision, trained.kind,
                             improved=improved(full), forgot=forgot(decision))
    override = None
    if force_promote_reason and registered.decision != "approved":
        override = registry.promote(settings, registered.version, force_promote_reason)
    context = full.get("drift") or {}
    result = Registered(
        hour=hour, version=registered.version, decision=registered.decision, reasons=registered.reasons,
        champion=override.champion if override else registered.champion, reused=registered.reused, override=override,
        mode=full.get("mode", "normal"), changed_slices=tuple(context.get("changed_slices", [])),
        drift_evidence=tuple(context.get("anomalous", []) or context.get("evidence", [])),
        **mlflow_urls(settings, trained.run_id, registered.version))
    if not registered.reused:
        report.log_report(settings, trained.run_id, full, result)
    return result


def _reused(settings: Settings, hour: Hour, trained: Trained, force_promote_reason: str | None) -> Registered:
    """Reprocessing an hour: the version its inputs already made, its decision (and a forced promotion)."""
    from incremental.registry import champion as registry

    assert trained.reused_version is not None
    version = trained.reused_version
    mv = tracking.configure(settings).get_model_version(settings.model_name, version)
    override = registry.promote(settings, version, force_promote_reason) if force_promote_reason else None
    return Registered(hour=hour, version=version, decision=mv.tags.get("decision"),
                      reasons=tuple(json.loads(mv.tags.get("reasons", "[]"))), reused=True, override=override,
                      champion=tracking.champion_version(tracking.configure(settings), settings.model_name),
                      **mlflow_urls(settings, trained.run_id, version))
