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
    assert inside.assessment is not None and "not scored, a late hour" in inside.assessment["note"]
    assert inside.assessment["judged"] is False and inside.context["judged"] is False  # holdout vs anchor, then
    pipeline.monitor_step(settings, T0.replace(hour=6))  # the first hour after its interval: scored
    assert scored == [T0.replace(hour=6)] and [r["hour"] for r in prequential.records(settings)] == ["2026-01-01T06:00Z"]


def test_monitor_hands_over_its_three_shapes_each_with_the_episode(settings, monkeypatch) -> None:  # noqa: ANN001
    """No champion yet (a note), a dry run (the assessment, nothing recorded) and the hour observed
    (recorded, the episode moved on): each with the mode and the episode's context for `train`."""
    monkeypatch.setattr(tracking, "champion", lambda s: None)
    none = pipeline.monitor_step(settings, T0)
    assert (none.mode, none.note, none.champion_version, none.assessment) == ("normal", "no champion yet: nothing to score",
                                                                              None, None)
    assert none.context["mode"] == "normal" and none.start_version is None
    v1 = SimpleNamespace(version="1", run_id=None, tags={"interval": "2025-12-31T00:00Z/2025-12-31T06:00Z",
                                                         "parent_version": "base"})
    registry = SimpleNamespace(get_model_version=lambda name, v: v1,
                               search_model_versions=lambda filter_string, page_token=None: [v1])
    monkeypatch.setattr(tracking, "champion", lambda s: ("1", "models:/search-ranker/1"))
    monkeypatch.setattr(tracking, "configure", lambda s: registry)
    monkeypatch.setattr(pipeline, "_record", lambda s, v, hour: prequential.make_record(hour, v, {"rows": 100, "auc": 0.9}))
    dry = pipeline.monitor_step(settings, T0, dry_run=True)
    assert dry.dry_run and dry.champion_version == "1" and dry.mode == "normal" and dry.note is None
    assert dry.assessment is not None and dry.assessment["hour"] == "2026-01-01T00:00Z"
    assert prequential.records(settings) == [] and dry.context["mode"] == "normal"  # a dry run records nothing
    seen = pipeline.monitor_step(settings, T0)
    assert not seen.dry_run and seen.champion_version == "1" and seen.mode == "normal" and seen.anchor is None
    assert not seen.declared_now and not seen.ended_now and seen.context["mode"] == "normal"
    assert [r["hour"] for r in prequential.records(settings)] == ["2026-01-01T00:00Z"]
    assert seen.to_dict()["hour"] == "2026-01-01T00:00Z"
