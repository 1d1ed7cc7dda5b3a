"""The prequential order, checked from MLflow: what each served model was trained on.

Every hour is scored by the model an arm served before it; `verify_lineage` re-reads, from each
served version's MLflow run (its lineage tags), that the version was trained only on rows
ingested before the hour it scored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from benchmarks.continual.homes import arm_settings
from benchmarks.continual.plan import HOUR, Plan
from incremental.config import Settings


def _tag_hours(tag: str, fields: int) -> list[datetime]:
    """Hours of a `lineage.partitions` ("hour:sha", fields=1) or `lineage.replay_partitions`
    ("hour:sha:sampled", fields=2) tag."""
    hours = []
    for entry in filter(None, (tag or "").split(",")):
        hours.append(datetime.fromisoformat(entry.rsplit(":", fields)[0]))
    return hours


def version_run(settings: Settings, version: str) -> Any:
    """The MLflow run that made a registered version (every version here is registered from one)."""
    from incremental.registry import tracking

    client = tracking.configure(settings)
    run_id = client.get_model_version(settings.model_name, version).run_id
    if run_id is None:
        raise ValueError(f"version {version} of {settings.model_name} was not made by an MLflow run")
    return client.get_run(run_id)


def served_lineage(settings: Settings, version: str | None) -> dict[str, Any]:
    """From the served version's MLflow run: its interval end and the last hour it trained on."""
    if version is None:
        return {"served_interval_end": None, "served_trained_through": None}
    tags = version_run(settings, version).data.tags
    hours = (_tag_hours(tags.get("lineage.partitions", ""), 1)
             + _tag_hours(tags.get("lineage.replay_partitions", ""), 2))
    return {"served_interval_end": tags.get("interval_end"),
            "served_trained_through": (max(hours) + HOUR).isoformat() if hours else None}


def verify_lineage(plan: Plan, records: list[dict[str, Any]]) -> list[str]:
    """Prequential order, re-read from each arm's MLflow: the version that scored hour h was
    trained only on rows ingested before h. Returns the violations (empty: the order holds)."""
    problems = []
    for rec in records:
        if rec.get("served_version") is None or rec.get("prequential") is None:
            continue
        settings = arm_settings(plan, rec["arm"])
        lineage = served_lineage(settings, rec["served_version"])
        hour = datetime.fromisoformat(rec["hour"])
        for key in ("served_interval_end", "served_trained_through"):
            value = lineage[key]
            if value is None or datetime.fromisoformat(value) > hour:
                problems.append(f"{rec['arm']} hour {rec['hour']}: served v{rec['served_version']} has {key} {value}")
    return problems
