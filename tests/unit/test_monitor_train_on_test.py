"""monitor_step never scores an hour the champion may have trained on (test, then train)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from incremental import pipeline
from incremental.hours import Hour
from incremental.judge import prequential
from incremental.registry import tracking

T0 = Hour(2026, 1, 1, tzinfo=UTC)


def test_an_hour_inside_the_champions_training_interval_is_not_scored(settings, monkeypatch) -> None:  # noqa: ANN001
    scored: list[datetime] = []
    monkeypatch.setattr(tracking, "champion", lambda s: ("1", "models:/search-ranker/1"))
    v1 = SimpleNamespace(version="1", run_id=None,  # bootstrapped on 00-06
                         tags={"interval": "2026-01-01T00:00Z/2026-01-01T06:00Z", "parent_version": "base"})
    registry = SimpleNamespace(get_model_version=lambda name, v: v1,  # the registry's answers (incremental.registry.lineage)
                               search_model_versions=lambda filter_string, page_token=None: [v1])
    monkeypatch.setattr(tracking, "configure", lambda s: registry)
    monkeypatch.setattr(pipeline, "_record", lambda s, v, hour: scored.append(hour) or prequential.make_record(
        hour, v, {"rows": 100, "auc": 0.9}))
    inside = pipeline.monitor_step(settings, T0.replace(hour=3))
    assert scored == [] and prequential.records(settings) == []  # v1 trained on 03:00: no train-on-test record
    assert inside.assessment is not None and "no prequential record" in inside.assessment["note"]
    pipeline.monitor_step(settings, T0.replace(hour=6))  # the first hour after its interval: scored
    assert scored == [T0.replace(hour=6)] and [r["hour"] for r in prequential.records(settings)] == ["2026-01-01T06:00Z"]
