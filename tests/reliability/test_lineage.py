"""A champion's lineage on a real SQLite-backed MLflow registry (issue 20, item 7): which hours
its weights were trained on as fresh hours, through every version they came from, and why an
hour in it is not trained again (`lineage.already_trained`). Constant pyfunc models: the
registry's tags are what is read, no model is loaded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import mlflow
import pandas as pd

from incremental.config import Settings
from incremental.hours import Hour
from incremental.registry import champion as registry
from incremental.registry import lineage, tracking

H0 = Hour(2026, 3, 1, 0, tzinfo=UTC)


def at(k: int) -> datetime:
    return H0 + timedelta(hours=k)


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list[float]:
        return [0.5] * len(model_input)


def version(settings: Settings, start: int, end: int, parent: str | None, *, kind: str = "hourly",
            approved: bool = True, expected: str | None = None, run_tags: dict[str, str] | None = None) -> str:
    """Register a candidate for hours [start, end) trained from `parent` (hourly: the partition
    sha256 `s<start>`), as `verdict.register_step` tags it."""
    tracking.get_or_create_experiment(settings)
    mlflow.set_experiment(tracking.UPDATES_EXPERIMENT)
    with mlflow.start_run() as run:
        mlflow.set_tags(run_tags or {})
        mlflow.pyfunc.log_model(name="model", python_model=Constant(), pip_requirements=["mlflow"])
    out = registry.register_candidate(
        settings, model_uri=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, interval_start=at(start),
        interval_end=at(end), parent_version=parent, data_hash=f"{start}-{end}|{parent}",
        partition_sha256=f"s{start}" if kind == "hourly" else None, approved=approved, reasons=["test"],
        metrics={"holdout_auc": 0.7}, expected_champion=parent if expected is None else expected,
        extra_tags={"kind": kind})
    return out.version


def window_tag(*hours: int) -> str:
    """`lineage.partitions` as `train.start_run` writes it: "<hour isoformat>:<sha256[:12]>", comma-separated."""
    return ",".join(f"{at(k).isoformat()}:{'w' * 12}" for k in hours)


def test_the_lineage_follows_the_weights_back_to_the_first_model(settings: Settings) -> None:
    # a bootstrap on 00-04 that trained on 00, 01 and 03 (02 was quarantined then)
    v1 = version(settings, 0, 4, None, kind="full_retrain", run_tags={"lineage.partitions": window_tag(0, 1, 3)})
    v2 = version(settings, 5, 6, v1)  # 05 first
    v3 = version(settings, 4, 5, v2)  # then 04, out of order
    found = lineage.of(settings, v3)
    assert found.chain == (v3, v2, v1)
    assert {k: found.trained(at(k)) and found.trained(at(k)).version for k in range(7)} == {
        0: v1, 1: v1, 2: None, 3: v1, 4: v3, 5: v2, 6: None}
    assert found.trained_through == at(6)  # its ancestor's 05, not its own interval end (05:00)
    assert found.trained(at(5)).same_data("s5") and not found.trained(at(5)).same_data("t5")

    # an hour of the champion's lineage is not trained again, naming who trained it
    why = lineage.already_trained(settings, at(1), v3, "w" * 64)
    assert why is not None and why.message.startswith(
        f"hour 2026-03-01T01:00Z is already in champion v{v3}'s training data "
        f"(trained through 2026-03-01T06:00Z, by its ancestor v{v1}): not trained again")
    assert why.trained_by == v1 and "full retrain" in why.message and "late" not in why.message
    assert (why.champion, why.trained_through) == (v3, "2026-03-01T06:00Z")
    late = lineage.already_trained(settings, at(5), v3, "t5")
    assert late is not None and "late or re-admitted" in late.message
    assert lineage.already_trained(settings, at(2), v3, "s2") is None  # quarantined at bootstrap: never trained
    assert lineage.already_trained(settings, at(6), v3, "s6") is None  # a new hour


def test_a_retrain_starts_a_lineage_and_a_shadow_chain_is_followed(settings: Settings) -> None:
    v1 = version(settings, 0, 4, None, kind="full_retrain")  # no lineage tag on its run: its interval stands
    v2 = version(settings, 4, 5, v1)
    # a catch-up from the base weights on 02-06 (its parent_version tag is the champion it had to beat)
    v3 = version(settings, 2, 6, v2, kind="catch_up")
    assert lineage.of(settings, v3).chain == (v3,)
    assert sorted(lineage.of(settings, v3).hours) == [at(2), at(3), at(4), at(5)]
    assert lineage.of(settings, v1).trained(at(3)).version == v1

    # a drift episode's shadow chain: 06 rejected, 07 trained from it and promoted
    v4 = version(settings, 6, 7, v3, approved=False)
    v5 = version(settings, 7, 8, v4, expected=v3)
    assert tracking.champion(settings)[0] == v5
    assert lineage.of(settings, v5).chain == (v5, v4, v3)
    shadow = lineage.already_trained(settings, at(6), v5, "s6")
    assert shadow is not None and shadow.trained_by == v4
    assert lineage.already_trained(settings, at(1), v5, "w") is None  # before the catch-up's window
    # an update that would start from the shadow chain's head: its lineage counts too
    v6 = version(settings, 8, 9, v5, approved=False)
    why = lineage.already_trained(settings, at(8), v5, "s8", start_version=v6)
    assert why is not None and why.message.startswith(
        "hour 2026-03-01T08:00Z is already in the drift episode's shadow chain at v")
