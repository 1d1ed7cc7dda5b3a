"""The typed hand-overs (incremental.handover): the JSON an XCom carries, and back."""

from __future__ import annotations

import dataclasses
import json

import pytest

from incremental.handover import Evaluated

EVALUATED_XCOM = {  # what evaluate_step returned (and the DAG's XCom carried) before it was typed
    "hour": "2026-06-01T03:00:00Z",
    "run_id": "abc123",
    "evaluation_uri": "runs:/abc123/evaluation/evaluation.json",
    "decision": "rejected",
    "reasons": ["anchor_auc_drop: 0.0612 > 0.05", "holdout_rows: 12 < 50"],
    "key_metrics": {"holdout_auc": 0.71, "anchor_auc": 0.64, "holdout_ndcg_diff": None},
}
REUSED_XCOM = {"hour": "2026-06-01T03:00:00Z", "reused_version": "7"}
SKIPPED_XCOM = {"hour": "2026-06-01T03:00:00Z",  # an hour the champion's lineage already trained on
                "skipped": "hour 2026-06-01T03:00Z is already in champion v2's training data (trained through ...)"}


@pytest.mark.parametrize("xcom", [EVALUATED_XCOM, REUSED_XCOM, SKIPPED_XCOM], ids=["evaluated", "reused", "skipped"])
def test_evaluated_round_trips_through_the_xcom_json_with_the_same_keys(xcom: dict) -> None:
    evaluated = Evaluated.from_dict(json.loads(json.dumps(xcom)))
    assert evaluated.to_dict() == xcom
    assert Evaluated.from_dict(json.loads(json.dumps(evaluated.to_dict()))) == evaluated


def test_evaluated_reads_as_attributes() -> None:
    evaluated = Evaluated.from_dict(EVALUATED_XCOM)
    assert not evaluated.reused and evaluated.decision == "rejected"
    assert evaluated.reasons == tuple(EVALUATED_XCOM["reasons"])
    assert evaluated.key_metrics["anchor_auc"] == 0.64
    reused = Evaluated.from_dict(REUSED_XCOM)
    assert reused.reused and reused.reused_version == "7" and reused.run_id is None and reused.decision is None
    skipped = Evaluated.from_dict(SKIPPED_XCOM)
    assert skipped.skipped == SKIPPED_XCOM["skipped"] and not skipped.reused and skipped.decision is None


def test_evaluated_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Evaluated.from_dict(EVALUATED_XCOM).decision = "approved"  # type: ignore[misc]
