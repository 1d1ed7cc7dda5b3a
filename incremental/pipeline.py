"""One hour, stage by stage: the functions the CLI (`incremental run-hour`) and the DAGs call.

    extract_step -> validate_step -> train_step -> evaluate_step -> register_step

Each takes the settings and the hour and returns a small JSON-able dict (paths, run ids,
versions, metrics): that is all that travels between Airflow tasks. Data stays in the lake,
models in MLflow. Reprocessing an hour whose partition was already turned into a model version
returns that version instead of training again (no second version for the same inputs).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from incremental import lake, tracking
from incremental.config import Settings
from incremental.errors import IncrementalError

log = logging.getLogger(__name__)
MLFLOW_UI_URL = os.environ.get("INCREMENTAL_MLFLOW_UI_URL", "http://127.0.0.1:5000")


class PipelineError(IncrementalError, RuntimeError):
    """A stage cannot run on this hour; the message says why."""


def _iso(hour: datetime) -> str:
    return f"{hour:%Y-%m-%dT%H:%MZ}"


def mlflow_urls(settings: Settings, run_id: str | None, version: str | None) -> dict[str, str]:
    urls = {}
    if run_id:
        client = tracking.configure(settings)
        experiment = client.get_run(run_id).info.experiment_id
        urls["mlflow_run_url"] = f"{MLFLOW_UI_URL}/#/experiments/{experiment}/runs/{run_id}"
    if version:
        urls["model_version_url"] = f"{MLFLOW_UI_URL}/#/models/{settings.model_name}/versions/{version}"
    return urls


# --- the stages ----------------------------------------------------------------------------
def extract_step(settings: Settings, start: datetime) -> dict[str, Any]:
    from incremental.extract import extract_hour
    from incremental.warehouse import Warehouse

    start = lake.parse_hour(start)
    manifest = extract_hour(Warehouse(settings.warehouse_url), settings.lake, start)
    return {"hour": _iso(start), "rows": manifest["rows"], "sha256": manifest["sha256"],
            "path": str(lake.partition_dir(settings.lake, start))}


def validate_step(settings: Settings, start: datetime) -> dict[str, Any]:
    from incremental.validate import validate_hour

    start = lake.parse_hour(start)
    report = validate_hour(settings.lake, start, settings.validation)
    return {"hour": _iso(start), "status": report.status, "rows": report.rows, "summary": report.summary(),
            "warnings": [c.message for c in report.warnings], "path": str(report.path),
            "data_docs": str(report.data_docs) if report.data_docs else None}


def train_step(
    settings: Settings, start: datetime, *, overrides: dict[str, Any] | None = None, airflow_run_id: str | None = None
) -> dict[str, Any]:
    """Update the champion on the hour, or find the version this partition already produced."""
    from incremental import registry
    from incremental.train import train_hour

    start = lake.parse_hour(start)
    part = lake.partition(settings.lake, start)
    if part.status != "validated":
        raise PipelineError(f"hour {_iso(start)} is {part.status}, not validated: it cannot be trained on")
    sha = part.manifest["sha256"]
    champion = tracking.champion(settings)  # reuse only what the current champion would make again
    existing = registry.find_processed(settings, start, sha, champion[0] if champion else None)
    if existing is not None and not overrides:
        log.info("hour %s (partition %s) already produced version %s: reusing it", _iso(start), sha[:12],
                 existing.version)
        return {"hour": _iso(start), "reused_version": str(existing.version), "run_id": existing.run_id,
                "partition_sha256": sha}
    result = train_hour(settings, start, airflow_run_id=airflow_run_id, overrides=overrides)
    return {
        "hour": _iso(start),
        "interval_end": _iso(start + lake.HOUR),
        "reused_version": None,
        "run_id": result.run_id,
        "model_uri": result.model_uri,
        "candidate_dir": str(result.candidate_dir),
        "parent_version": result.parent_version,
        "data_hash": result.data_hash,
        "partition_sha256": sha,
        "holdout_path": str(result.holdout_path),
        "resumed_from_step": result.resumed_from_step,
        "train_metrics": {k: float(v) for k, v in result.metrics.items()},
    }


def evaluate_step(settings: Settings, start: datetime, trained: dict[str, Any]) -> dict[str, Any]:
    """Score the candidate (and its parent) on the fresh holdout and the anchor set; apply the gate."""
    from incremental import evaluate

    if trained.get("reused_version"):
        return {"hour": trained["hour"], "reused_version": trained["reused_version"]}
    evaluation = evaluate.evaluate_candidate(settings, trained)
    return {
        "hour": trained["hour"],
        "evaluation_path": evaluation["path"],
        "decision": evaluation["decision"]["decision"],
        "reasons": evaluation["decision"]["reasons"],
        "key_metrics": evaluation["key_metrics"],
    }


def register_step(
    settings: Settings,
    start: datetime,
    trained: dict[str, Any],
    evaluation: dict[str, Any],
    *,
    airflow_run_id: str | None = None,
    force_promote_reason: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Register the candidate as a version; approved -> champion (compare-and-set); report to MLflow."""
    from incremental import registry, report

    start = lake.parse_hour(start)
    if trained.get("reused_version"):
        version = trained["reused_version"]
        mv = tracking.configure(settings).get_model_version(settings.model_name, version)
        out = {"hour": _iso(start), "version": version, "decision": mv.tags.get("decision"),
               "reasons": json.loads(mv.tags.get("reasons", "[]")), "reused": True}
        if force_promote_reason and not dry_run:
            out["override"] = registry.promote(settings, version, force_promote_reason)
        out["champion"] = tracking.champion_version(tracking.configure(settings), settings.model_name)
        return {**out, **mlflow_urls(settings, trained.get("run_id"), version)}

    full = json.loads(Path(evaluation["evaluation_path"]).read_text())
    decision = full["decision"]
    if dry_run:
        return {"hour": _iso(start), "version": None, "decision": decision["decision"], "dry_run": True,
                "reasons": decision["reasons"], "champion": tracking.champion(settings) and tracking.champion(settings)[0],
                **mlflow_urls(settings, trained["run_id"], None)}
    registered = registry.register_candidate(
        settings,
        model_uri=trained["model_uri"],
        run_id=trained["run_id"],
        interval_start=lake.parse_hour(full["interval_start"]),
        interval_end=lake.parse_hour(full["interval_end"]),
        parent_version=trained["parent_version"],
        data_hash=trained["data_hash"],
        partition_sha256=trained.get("partition_sha256"),
        approved=decision["approved"],
        reasons=decision["reasons"],
        metrics=full["key_metrics"],
        airflow_run_id=airflow_run_id,
        anchor_sha256=full.get("anchor", {}).get("sha256"),
    )
    if force_promote_reason and registered["decision"] != "approved":
        registered["override"] = registry.promote(settings, registered["version"], force_promote_reason)
        registered["champion"] = registered["override"]["champion"]
    if not registered["reused"]:
        report.log_report(settings, trained["run_id"], full, registered)
    return {"hour": _iso(start), **registered, **mlflow_urls(settings, trained["run_id"], registered["version"])}


def run_hour(
    settings: Settings,
    start: datetime,
    *,
    overrides: dict[str, Any] | None = None,
    force_promote_reason: str | None = None,
    dry_run: bool = False,
    airflow_run_id: str | None = None,
) -> dict[str, Any]:
    """The whole hour without Airflow: extract -> validate -> train -> evaluate -> register/reject."""
    start = lake.parse_hour(start)
    extracted = extract_step(settings, start)
    validated = validate_step(settings, start)
    if validated["status"] != "validated":
        return {"hour": _iso(start), "status": "quarantined", "rows": extracted["rows"],
                "summary": validated["summary"], "path": validated["path"]}
    trained = train_step(settings, start, overrides=overrides, airflow_run_id=airflow_run_id)
    evaluation = evaluate_step(settings, start, trained)
    registered = register_step(settings, start, trained, evaluation, airflow_run_id=airflow_run_id,
                               force_promote_reason=force_promote_reason, dry_run=dry_run)
    return {"status": "done", "rows": extracted["rows"], "warnings": validated["warnings"], **registered}


def full_retrain(
    settings: Settings, start: datetime, end: datetime, *, airflow_run_id: str | None = None,
    anchor_size: int = 4000, dry_run: bool = False,
) -> dict[str, Any]:
    """Train from the base weights on the validated hours of [start, end), through the same gate.

    Compared with (and compare-and-set against) the champion at the time training started; the
    first champion is judged by value thresholds only. Freezes the anchor set on the window if
    there is none yet, after training succeeded (anchor rows are holdout sessions, which
    training never sees, so the order changes no model).
    """
    from incremental import anchor
    from incremental.train import bootstrap

    start, end = lake.parse_hour(start), lake.parse_hour(end)
    incumbent = tracking.champion(settings)
    result = bootstrap(settings, start, end, airflow_run_id=airflow_run_id)
    if anchor.current(settings.lake) is None:  # only once training worked: a failed bootstrap freezes nothing
        freeze_anchor(settings, start, end, anchor_size, reason="first bootstrap: no anchor yet", refresh=False)
    trained = {
        "hour": _iso(start),
        "interval_end": _iso(end),
        "reused_version": None,
        "run_id": result.run_id,
        "model_uri": result.model_uri,
        "candidate_dir": str(result.candidate_dir),
        "parent_version": incumbent[0] if incumbent else None,  # what it must beat and replace
        "data_hash": result.data_hash,
        "partition_sha256": None,
        "holdout_path": str(result.holdout_path),
        "kind": "full_retrain",
        "train_metrics": {k: float(v) for k, v in result.metrics.items()},
    }
    evaluation = evaluate_step(settings, start, trained)
    return register_step(settings, start, trained, evaluation, airflow_run_id=airflow_run_id, dry_run=dry_run)


def freeze_anchor(settings: Settings, start: datetime, end: datetime, size: int, reason: str,
                  refresh: bool = False) -> dict[str, Any]:
    from incremental import anchor

    info = anchor.freeze(settings.lake, lake.parse_hour(start), lake.parse_hour(end), size,
                         seed=settings.training.seed, reason=reason, refresh=refresh,
                         holdout_fraction=settings.training.holdout_fraction)
    return {"sha256": info.sha256, "rows": info.rows, "reason": reason, "path": str(anchor.anchor_dir(settings.lake))}
