"""The typed hand-overs (incremental.handover): the JSON an XCom carries, and back.

Each `*_XCOM` below is what a stage returned (and the DAG's XCom carried) when stages handed over
plain dicts: `to_dict()` must give the same keys back, so the plugin's links, the run's note and
anyone reading the XCom see what they saw before."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from incremental.handover import (
    AnchorFrozen,
    CaughtUp,
    Evaluated,
    Extracted,
    HourRun,
    Monitored,
    Registered,
    Trained,
    Validated,
)

HOUR = "2026-06-01T03:00Z"
CONTEXT = {"mode": "normal", "anomalous": [], "changed_slices": [], "declared_at": None, "evidence": [],
           "stale": [{"categories": ["shoes"], "before": "2026-05-31T20:00Z"}]}
EVALUATED_XCOM = {
    "hour": HOUR,
    "run_id": "abc123",
    "evaluation_uri": "runs:/abc123/evaluation/evaluation.json",
    "decision": "rejected",
    "reasons": ["anchor_auc_drop: 0.0612 > 0.05", "holdout_rows: 12 < 50"],
    "key_metrics": {"holdout_auc": 0.71, "anchor_auc": 0.64, "holdout_ndcg_diff": None},
}
REUSED_XCOM = {"hour": HOUR, "reused_version": "7"}
SKIPPED_XCOM = {"hour": HOUR,  # an hour the champion's lineage already trained on
                "skipped": "hour 2026-06-01T03:00Z is already in champion v2's training data (trained through ...)"}
ASSESSMENT = {"hour": HOUR, "anomalous": ["overall"], "changed": [], "changed_slices": [], "stable_slices": ["toys"],
              "evidence": ["overall: champion AUC 0.61 vs reference 0.70 (drop +0.090, 1h in a row) -> anomalous"],
              "note": ""}
XCOMS: dict[str, tuple[type, dict[str, Any]]] = {
    "extracted": (Extracted, {"hour": HOUR, "rows": 600, "sha256": "a" * 64, "delta_rows": None,
                              "lake_key": "search_logs/dt=2026-06-01/hour=03"}),
    "validated": (Validated, {"hour": HOUR, "status": "validated", "rows": 600, "summary": "hour ... validated: 12 checks",
                              "warnings": ["drift_ctr: 0.02 vs 0.05"], "lake_key": "search_logs/dt=2026-06-01/hour=03",
                              "data_docs": None, "part": "part-0.parquet", "quarantined_rows": 3,
                              "quarantined_rows_key": "quarantine/search_logs/dt=2026-06-01/hour=03/rows/p",
                              "hour_validated": False}),
    "monitored, no champion": (Monitored, {"hour": HOUR, "mode": "normal", "note": "no champion yet: nothing to score",
                                           "context": CONTEXT, "start_version": None}),
    "monitored, dry run": (Monitored, {"hour": HOUR, "mode": "normal", "champion_version": "2", "dry_run": True,
                                       "assessment": ASSESSMENT, "context": CONTEXT, "start_version": None}),
    "monitored": (Monitored, {"hour": HOUR, "mode": "adapt", "champion_version": "2", "declared_now": True,
                              "ended_now": False, "declared_at": HOUR, "anomalous": ASSESSMENT["evidence"],
                              "changed_slices": ["shoes"], "assessment": ASSESSMENT,
                              "anchor": {"sha256": "b" * 64, "rows": 300, "reason": "drift declared",
                                         "baseline_version": "2", "protected_categories": ["toys"],
                                         "lake_key": "anchor"},
                              "context": {**CONTEXT, "mode": "adapt"}, "start_version": "5"}),
    "trained": (Trained, {"hour": HOUR, "interval_end": "2026-06-01T04:00Z", "reused_version": None, "mode": "normal",
                          "drift": CONTEXT, "compare_with": "2", "run_id": "abc123", "model_uri": "runs:/abc123/model",
                          "holdout_uri": "runs:/abc123/holdout/holdout.parquet", "parent_version": "2",
                          "data_hash": "c" * 64, "partition_sha256": "a" * 64, "kind": "hourly",
                          "resumed_from_step": None, "train_metrics": {"steps": 40.0, "loss": 0.61}}),
    "trained, reused": (Trained, {"hour": HOUR, "reused_version": "7", "run_id": "abc123", "partition_sha256": "a" * 64}),
    "trained, skipped": (Trained, {"hour": HOUR, "reused_version": None, "partition_sha256": "a" * 64,
                                   "skipped": SKIPPED_XCOM["skipped"], "champion": "2", "trained_by": "1",
                                   "trained_through": "2026-06-01T04:00Z"}),
    "evaluated": (Evaluated, EVALUATED_XCOM),
    "evaluated, reused": (Evaluated, REUSED_XCOM),
    "evaluated, skipped": (Evaluated, SKIPPED_XCOM),
    "registered": (Registered, {"hour": HOUR, "version": "3", "decision": "approved", "reasons": ["approved: ..."],
                                "champion": "3", "reused": False, "mode": "normal", "changed_slices": [],
                                "drift_evidence": [], "mlflow_run_url": "http://mlflow/#/runs/abc123",
                                "model_version_url": "http://mlflow/#/models/search-ranker/versions/3"}),
    "registered, forced": (Registered, {"hour": HOUR, "version": "3", "decision": "rejected", "reasons": ["x"],
                                        "champion": "3", "reused": False,
                                        "override": {"champion": "3", "previous": "2", "reason": "reviewed: fine"},
                                        "mode": "adapt", "changed_slices": ["shoes"], "drift_evidence": ["e"],
                                        "mlflow_run_url": "u", "model_version_url": "v"}),
    "registered, reused": (Registered, {"hour": HOUR, "version": "7", "decision": "rejected", "reasons": ["x"],
                                        "reused": True, "champion": "2", "model_version_url": "v"}),
    "registered, dry run": (Registered, {"hour": HOUR, "version": None, "decision": "approved", "dry_run": True,
                                         "reasons": ["approved: ..."], "champion": "2", "mlflow_run_url": "u"}),
    "registered, skipped": (Registered, {"hour": HOUR, "version": None, "decision": "skipped",
                                         "skipped": SKIPPED_XCOM["skipped"], "reasons": [SKIPPED_XCOM["skipped"]],
                                         "reused": False, "trained_by": "1", "champion": "2"}),
    "caught up, skipped": (CaughtUp, {"hour": HOUR, "skipped": "mode normal, catch-up not needed"}),
    "caught up": (CaughtUp, {"hour": HOUR, "version": "4", "decision": "approved", "reasons": ["approved: ..."],
                             "champion": "4", "reused": False, "mode": "catch_up", "changed_slices": ["shoes"],
                             "drift_evidence": [], "model_version_url": "v",
                             "window": ["2026-05-31T00:00Z", "2026-06-01T04:00Z"],
                             "judged_on": ["2026-06-01T00:00Z", "2026-06-01T04:00Z"]}),
    "anchor frozen": (AnchorFrozen, {"sha256": "b" * 64, "rows": 300, "reason": "first bootstrap: no anchor yet",
                                     "baseline_version": None, "protected_categories": None, "lake_key": "anchor"}),
}


@pytest.mark.parametrize("name", XCOMS)
def test_a_hand_over_round_trips_through_the_xcom_json_with_the_same_keys(name: str) -> None:
    kind, xcom = XCOMS[name]
    value = kind.from_dict(json.loads(json.dumps(xcom)))
    assert value.to_dict() == xcom
    assert kind.from_dict(json.loads(json.dumps(value.to_dict()))) == value


def test_hours_travel_as_datetimes_and_become_text_only_in_the_json() -> None:
    extracted = Extracted.from_dict(XCOMS["extracted"][1])
    assert extracted.hour == datetime(2026, 6, 1, 3, tzinfo=UTC)
    caught = CaughtUp.from_dict(XCOMS["caught up"][1])
    assert caught.window == (datetime(2026, 5, 31, 0, tzinfo=UTC), datetime(2026, 6, 1, 4, tzinfo=UTC))
    assert caught.registered is not None and caught.registered.hour == caught.hour


def test_evaluated_reads_as_attributes() -> None:
    evaluated = Evaluated.from_dict(EVALUATED_XCOM)
    assert not evaluated.reused and evaluated.decision == "rejected"
    assert evaluated.reasons == tuple(EVALUATED_XCOM["reasons"])
    assert evaluated.key_metrics["anchor_auc"] == 0.64
    reused = Evaluated.from_dict(REUSED_XCOM)
    assert reused.reused and reused.reused_version == "7" and reused.run_id is None and reused.decision is None
    skipped = Evaluated.from_dict(SKIPPED_XCOM)
    assert skipped.skipped == SKIPPED_XCOM["skipped"] and not skipped.reused and skipped.decision is None


def test_what_train_reads_of_the_monitoring_survives_the_xcom() -> None:
    monitored = Monitored.from_dict(json.loads(json.dumps(XCOMS["monitored"][1])))
    assert monitored.context["mode"] == "adapt" and monitored.start_version == "5"
    assert monitored.anchor is not None and monitored.anchor.protected_categories == ["toys"]
    trained = Trained.from_dict(XCOMS["trained"][1])
    assert trained.mode == "normal" and trained.drift is not None and trained.drift["stale"][0]["categories"] == ["shoes"]


def test_only_a_registration_that_moved_the_champion_is_a_new_champion() -> None:
    assert Registered.from_dict(XCOMS["registered"][1]).new_champion
    assert Registered.from_dict(XCOMS["registered, forced"][1]).new_champion  # a person promoted it
    for name in ("registered, reused", "registered, dry run", "registered, skipped"):
        assert not Registered.from_dict(XCOMS[name][1]).new_champion, name


def test_a_run_of_the_hour_prints_the_catch_ups_champion() -> None:
    registered = Registered.from_dict(XCOMS["registered"][1])
    run = HourRun(hour=registered.hour, status="done", rows=600, monitored_mode="adapt", registered=registered,
                  catch_up=CaughtUp.from_dict(XCOMS["caught up"][1]))
    assert run.champion == "4" and run.mode == "normal"  # the candidate's mode, not the episode's
    assert run.to_dict()["catch_up"] == {"window": ["2026-05-31T00:00Z", "2026-06-01T04:00Z"], "version": "4",
                                         "decision": "approved", "reasons": ["approved: ..."], "champion": "4"}
    quarantined = HourRun(hour=registered.hour, status="quarantined", rows=600, summary="s", lake_key="q")
    assert quarantined.to_dict() == {"hour": HOUR, "status": "quarantined", "rows": 600, "summary": "s", "lake_key": "q"}
    assert quarantined.mode is None and quarantined.champion is None


def test_hand_overs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Evaluated.from_dict(EVALUATED_XCOM).decision = "approved"  # type: ignore[misc]
