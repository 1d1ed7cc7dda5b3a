"""train_step honours what monitor handed it (issue 19: `train` ignored the `monitored` result
Airflow passes it and read the drift state again, whose `context()` empties the hour's anomalies
when the state's last hour is another one). The update itself is replaced here: what matters is
what it is asked to do."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from incremental import pipeline
from incremental.config import Settings
from incremental.handover import Monitored
from incremental.hours import Hour
from incremental.judge import anchor
from incremental.model import replay, update
from incremental.registry import champion as registry
from incremental.registry import lineage, tracking

T0 = Hour(2026, 1, 1, 5, tzinfo=UTC)
ADAPT_CONTEXT = {"mode": "adapt", "anomalous": ["shoes: champion AUC 0.50 vs reference 0.80 -> anomalous"],
                 "changed_slices": ["shoes"], "declared_at": "2026-01-01T03:00Z", "evidence": [],
                 "stale": [{"categories": ["shoes"], "before": "2026-01-01T01:00Z"}]}


@pytest.fixture
def asked(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the update is asked for (its settings' learning rate, start version, stale rules); the
    hour validated, a champion v2, nothing processed or trained before."""
    asked: dict[str, Any] = {}

    def train_hour(s: Settings, part: SimpleNamespace, **kwargs: Any) -> SimpleNamespace:
        asked.update(kwargs, part=part, learning_rate=s.training.learning_rate)
        return SimpleNamespace(run_id="r1", model_uri="runs:/r1/model", holdout_path=Path("holdout.parquet"),
                               parent_version=kwargs["start_version"] or "2", data_hash="d" * 64,
                               resumed_from_step=None, metrics={"steps": 3})

    monkeypatch.setattr(pipeline, "validated_partition", lambda s, hour, what: SimpleNamespace(manifest={"sha256": "a" * 64}))
    monkeypatch.setattr(tracking, "champion", lambda s: ("2", "models:/search-ranker/2"))
    monkeypatch.setattr(registry, "find_processed", lambda *args: None)
    monkeypatch.setattr(lineage, "already_trained", lambda *args, **kwargs: None)
    monkeypatch.setattr(update, "train_hour", train_hour)
    return asked


def test_train_uses_the_mode_and_context_monitor_handed_it(settings: Settings, asked: dict[str, Any]) -> None:
    # the drift state on disk says normal (no episode): only the hand-over says adapt
    monitored = Monitored(hour=T0, mode="adapt", context=ADAPT_CONTEXT, start_version="5", champion_version="2")
    trained = pipeline.train_step(settings, T0, Monitored.from_dict(monitored.to_dict()))
    assert asked["start_version"] == "5" and asked["learning_rate"] == settings.drift.adapt.learning_rate
    assert asked["stale"] == (replay.Stale(frozenset({"shoes"}), datetime(2026, 1, 1, 1, tzinfo=UTC)),)
    assert trained.drift == ADAPT_CONTEXT and trained.mode == "adapt" and trained.compare_with == "2"
    assert trained.parent_version == "5" and str(trained.holdout_uri).startswith("runs:/r1/")


def test_without_a_hand_over_train_reads_the_drift_state(settings: Settings, asked: dict[str, Any]) -> None:
    trained = pipeline.train_step(settings, T0)  # `incremental train`: no monitor ran
    assert asked["start_version"] is None and asked["stale"] == ()
    assert asked["learning_rate"] == settings.training.learning_rate
    assert trained.mode == "normal" and trained.drift is not None and trained.drift["anomalous"] == []


def test_without_a_champion_train_stops_at_once_naming_bootstrap(settings: Settings, asked: dict[str, Any],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # a user's first `run-hour` on a fresh home trained 100 steps from the base weights for 13 minutes,
    # then failed for want of an anchor set
    monkeypatch.setattr(tracking, "champion", lambda s: None)
    with pytest.raises(pipeline.PipelineError, match="no champion yet .*incremental bootstrap --start ISO --end ISO"):
        pipeline.train_step(settings, T0)
    assert asked == {}  # nothing trained
    # bootstrapped, but its first model was rejected: an update from the base weights is judged as a first model
    monkeypatch.setattr(anchor, "current", lambda lake: object())
    assert pipeline.train_step(settings, T0).compare_with is None and asked["start_version"] is None


def test_train_refuses_the_monitoring_of_another_hour(settings: Settings, asked: dict[str, Any]) -> None:
    monitored = Monitored(hour=T0.replace(hour=4), mode="normal", context={**ADAPT_CONTEXT, "mode": "normal"})
    with pytest.raises(pipeline.PipelineError, match="was handed the monitoring of 2026-01-01T04:00Z"):
        pipeline.train_step(settings, T0, monitored)
    assert asked == {}
