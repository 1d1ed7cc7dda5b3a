"""The registry workflow on a real SQLite-backed MLflow: CAS promotion, idempotency, promote, rollback."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import mlflow
import pandas as pd
import pytest

from incremental.config import Settings
from incremental.hours import Hour
from incremental.registry import champion as registry
from incremental.registry import tracking
from incremental.registry.history import format_history, history

H0 = Hour(2026, 2, 1, 0, tzinfo=UTC)


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list[float]:
        return [0.5] * len(model_input)


def log_run(settings: Settings) -> tuple[str, str]:
    """A run with a ranker-shaped pyfunc: a `model_dir` with a config and weights, which promote and
    rollback check before they move the alias (`registry.check_loadable`)."""
    tracking.get_or_create_experiment(settings)
    mlflow.set_experiment(tracking.UPDATES_EXPERIMENT)
    model_dir = settings.home / "model_dir"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text("{}")
    (model_dir / "model.safetensors").write_bytes(b"weights")
    with mlflow.start_run() as run:
        mlflow.pyfunc.log_model(name="model", python_model=Constant(), artifacts={"model_dir": str(model_dir)},
                                pip_requirements=["mlflow"])
    return run.info.run_id, f"runs:/{run.info.run_id}/model"


def candidate(settings: Settings, hour: int, parent: str | None, approved: bool = True, data_hash: str = "d"):
    run_id, uri = log_run(settings)
    start = H0 + timedelta(hours=hour)
    return registry.register_candidate(
        settings, model_uri=uri, run_id=run_id, interval_start=start, interval_end=start + timedelta(hours=1),
        parent_version=parent, data_hash=f"{data_hash}{hour}", approved=approved,
        reasons=["all checks passed"] if approved else ["anchor AUC dropped 0.08 > 0.02"],
        metrics={"holdout_auc": 0.71, "anchor_auc": 0.69}, airflow_run_id="manual__x",
    )


def test_stale_is_said_the_same_at_registration_and_on_completing_an_interrupted_one(settings: Settings) -> None:
    """The champion moved on: rejected as stale, in one wording, whether found when the version is
    registered or when an interrupted registration is completed (the next run with the same key)."""
    candidate(settings, 0, None)
    assert candidate(settings, 1, "1").champion == "2"
    said = registry.stale_reason("1", "1", "2")
    assert said == "stale: trained from version 1 but the champion is now 2; retrain from the current champion"
    assert candidate(settings, 1, "1", data_hash="late").reasons[-1] == said  # found at registration

    # an approved version whose registration stopped before the champion move (the process died)
    waiting = candidate(settings, 1, "1", approved=False, data_hash="cut").version
    client = tracking.configure(settings)
    for tag, value in (("decision", "approved"), ("reasons", '["all checks passed"]'),
                       (registry.REGISTRATION_TAG, "pending")):
        client.set_model_version_tag(settings.model_name, waiting, tag, value)
    completed = candidate(settings, 1, "1", data_hash="cut")  # the rerun completes it
    assert (completed.version, completed.decision, completed.reasons[-1]) == (waiting, "rejected", said)
    assert registry.stale_reason("2", "1", None).startswith("stale: judged against version 2 but the champion is now none")


def test_compare_and_set_idempotency_promote_and_rollback(settings: Settings) -> None:
    first = candidate(settings, 0, None)
    assert first == registry.Registration(version="1", decision="approved", reasons=("all checks passed",),
                                          champion="1", reused=False)

    # two candidates trained from the same parent: only the first can become champion
    a = candidate(settings, 1, "1")
    b = candidate(settings, 1, "1", data_hash="other")
    assert a.decision == "approved" and a.champion == "2"
    assert b.decision == "rejected" and b.champion == "2"
    assert any(r.startswith("stale: trained from version 1 but the champion is now 2") for r in b.reasons)

    # the same (interval, parent, data hash) again: the existing version, no new one
    again = candidate(settings, 1, "1")
    assert again.reused and again.version == "2"
    assert len(history(settings)) == 3

    rejected = candidate(settings, 2, "2", approved=False)
    assert rejected.decision == "rejected" and rejected.champion == "2"

    rolled = registry.rollback(settings, reason="bad clicks upstream")
    assert rolled.to_dict() == {"champion": "1", "previous": "2", "reason": "bad clicks upstream"}  # what the CLI prints
    assert tracking.champion(settings)[0] == "1"

    promoted = registry.promote(settings, rejected.version, reason="reviewed: anchor drop is a seasonal shift", who="ana")
    assert promoted.champion == "4" and promoted.previous == "1"
    client = tracking.configure(settings)
    tags = client.get_model_version(settings.model_name, "4").tags
    assert tags["override_reason"] == "reviewed: anchor drop is a seasonal shift" and tags["override_by"] == "ana"
    assert tags["decision"] == "rejected"  # the gate's verdict stays on record beside the override

    rows = {r["version"]: r for r in history(settings)}
    assert rows["4"]["champion"] and not rows["1"]["champion"]
    assert len(rows["1"]["champion_periods"]) == 2  # champion, replaced, champion again after the rollback, replaced
    assert all(p[1] is not None for p in rows["1"]["champion_periods"])
    table = format_history(history(settings))
    assert "stale" in table and "approved" in table


def test_history_shows_the_lake_table_version_a_version_trained_on(settings: Settings) -> None:
    run_id, uri = log_run(settings)
    tracking.configure(settings).set_tag(run_id, "lineage.table_version", "7")  # as `update.start_run` tags it
    tracking.configure(settings).set_tag(run_id, "lineage.table", "/lake/search_logs")
    registry.register_candidate(settings, model_uri=uri, run_id=run_id, interval_start=H0, interval_end=H0 + timedelta(hours=1),
                                parent_version=None, data_hash="lake", approved=True, reasons=["all checks passed"],
                                metrics={"holdout_auc": 0.7})
    (row,) = history(settings)
    assert row["lake_table_version"] == "7"
    tags = tracking.configure(settings).get_model_version(settings.model_name, row["version"]).tags
    assert tags["lake_table"] == "/lake/search_logs" and tags["lake_table_version"] == "7"
    header, _, line = format_history([row]).splitlines()[:3]
    assert "lake v" in header and " 7 " in line


def test_overrides_need_reasons(settings: Settings) -> None:
    candidate(settings, 0, None)
    with pytest.raises(registry.RegistryError, match="needs a reason"):
        registry.promote(settings, "1", reason=" ")
    with pytest.raises(registry.RegistryError, match="no earlier champion"):
        registry.rollback(settings, reason="x" * 10)
    with pytest.raises(registry.RegistryError, match="no version 9"):
        registry.promote(settings, "9", reason="x" * 10)
