"""The promotion gate: a pure function, every check reported, fail-closed on bad numbers."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest

from incremental.config import GateSettings
from incremental.gate import Decision, decide

T = GateSettings(
    min_holdout_auc=0.55,
    max_holdout_logloss=0.69,
    max_anchor_auc_drop=0.02,
    max_worst_category_auc_drop=0.05,
    min_category_rows=30,
    max_anchor_ndcg_drop=0.03,
    max_holdout_auc_deficit=0.01,
)
ALL_CHECKS = [
    "holdout_rows",
    "holdout_auc",
    "holdout_logloss",
    "anchor_auc_drop",
    "anchor_worst_category_auc_drop",
    "anchor_ndcg_drop",
    "holdout_auc_deficit",
]


def model(
    holdout_auc: float = 0.70,
    logloss: float = 0.50,
    anchor_auc: float = 0.72,
    ndcg: float = 0.60,
    books: float = 0.74,
    toys: float = 0.70,
    tiny: float = 0.90,
    holdout_rows: int = 400,
) -> dict[str, Any]:
    def block(auc: float, rows: int) -> dict[str, Any]:
        return {"rows": rows, "auc": auc, "ndcg@10": ndcg, "logloss": logloss, "ece": 0.02}

    return {
        "holdout": {"rows": holdout_rows, "auc": holdout_auc, "ndcg@10": 0.6, "logloss": logloss, "ece": 0.03},
        "anchor": {
            **block(anchor_auc, 510),
            "per_category": {"books": block(books, 300), "toys": block(toys, 200), "tiny": block(tiny, 10)},
        },
    }


def check(decision: Decision, name: str):
    (found,) = [c for c in decision.checks if c.name == name]
    return found


def test_a_good_candidate_passes_with_every_check_listed() -> None:
    d = decide(model(holdout_auc=0.705, anchor_auc=0.715), model(), T)
    assert d.approved
    assert [c.name for c in d.checks] == ALL_CHECKS
    assert all(c.passed for c in d.checks)
    for c in d.checks:
        assert c.comparison in (">=", "<=") and c.kind in ("value", "change") and c.detail
        assert math.isfinite(c.value) and math.isfinite(c.threshold)
    assert check(d, "anchor_auc_drop").value == pytest.approx(0.005)
    assert check(d, "holdout_auc").value == pytest.approx(0.705)
    assert d.reasons == ("approved: all 7 checks passed",)
    payload = d.to_dict()
    json.dumps(payload, allow_nan=False)
    assert payload["decision"] == "approved" and len(payload["checks"]) == 7
    assert d.tags()["decision"] == "approved"


def test_first_model_is_judged_by_value_thresholds_only() -> None:
    candidate = model()
    del candidate["anchor"]  # no champion: the anchor does not matter
    d = decide(candidate, None, T)
    assert d.approved
    assert [c.name for c in d.checks] == ["holdout_rows", "holdout_auc", "holdout_logloss"]
    assert all(c.kind == "value" for c in d.checks)
    assert "no champion" in d.reasons[0]
    weak = decide(model(holdout_auc=0.52), None, T)
    assert not weak.approved
    assert weak.reasons[0].startswith("holdout_auc:") and "0.5200" in weak.reasons[0]


def test_forgetting_beyond_the_allowed_drop_rejects_naming_the_metric() -> None:
    d = decide(model(anchor_auc=0.69), model(anchor_auc=0.72), T)
    assert not d.approved
    failed = check(d, "anchor_auc_drop")
    assert not failed.passed and failed.value == pytest.approx(0.03) and failed.threshold == 0.02
    assert [r for r in d.reasons if r.startswith("anchor_auc_drop:")]
    assert "anchor AUC fell by +0.0300" in failed.detail
    assert all(c.passed for c in d.checks if c.name != "anchor_auc_drop")


def test_anchor_ndcg_drop_and_holdout_deficit_reject() -> None:
    d = decide(model(ndcg=0.55, holdout_auc=0.68), model(ndcg=0.60, holdout_auc=0.70), T)
    assert {c.name for c in d.failed} == {"anchor_ndcg_drop", "holdout_auc_deficit"}
    assert len(d.reasons) == 2


def test_worst_category_drop_rejects_and_small_categories_are_ignored() -> None:
    # overall anchor AUC is fine, toys falls by 0.08; "tiny" (10 rows) falls by 0.5 but is too small
    d = decide(model(toys=0.62, tiny=0.40), model(toys=0.70, tiny=0.90), T)
    assert not d.approved
    failed = check(d, "anchor_worst_category_auc_drop")
    assert [c.name for c in d.failed] == ["anchor_worst_category_auc_drop"]
    assert failed.metric == "anchor.per_category.toys.auc"
    assert failed.value == pytest.approx(0.08)
    assert "'toys'" in failed.detail and "'toys'" in d.reasons[0]


def test_single_class_categories_do_not_block_but_say_so() -> None:
    champion, candidate = model(), model()
    for m in (champion, candidate):
        for cat in m["anchor"]["per_category"].values():
            cat["auc"] = math.nan
    d = decide(candidate, champion, T)
    c = check(d, "anchor_worst_category_auc_drop")
    assert c.passed and "not applicable" in c.detail


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    "where",
    [("holdout", "auc"), ("holdout", "logloss"), ("anchor", "auc"), ("anchor", "ndcg@10"), ("toys", "auc")],
)
def test_nan_or_infinite_metrics_reject(bad: float, where: tuple[str, str]) -> None:
    candidate = model()
    section, key = where
    target = candidate["anchor"]["per_category"]["toys"] if section == "toys" else candidate[section]
    target[key] = bad
    d = decide(candidate, model(), T)
    assert not d.approved
    assert any(str(bad) in c.detail for c in d.failed)
    json.dumps(d.to_dict(), allow_nan=False)  # still strict JSON


def test_nan_on_the_champion_side_rejects_too() -> None:
    champion = model()
    champion["anchor"]["auc"] = math.nan
    d = decide(model(), champion, T)
    assert not check(d, "anchor_auc_drop").passed
    assert "champion anchor.auc is nan" in check(d, "anchor_auc_drop").detail


def test_empty_or_missing_holdout_rejects() -> None:
    empty = model(holdout_rows=0, holdout_auc=math.nan, logloss=math.nan)
    d = decide(empty, None, T)
    assert not d.approved
    assert "empty" in check(d, "holdout_rows").detail
    assert d.reasons[0].startswith("holdout_rows:")
    missing = model()
    del missing["holdout"]
    d = decide(missing, None, T)
    assert not d.approved and len(d.failed) == 3
    assert "holdout.rows is missing" in check(d, "holdout_rows").detail


def test_missing_anchor_or_a_different_set_rejects_against_a_champion() -> None:
    no_anchor = model()
    del no_anchor["anchor"]
    d = decide(no_anchor, model(), T)
    assert {c.name for c in d.failed} == {"anchor_auc_drop", "anchor_worst_category_auc_drop", "anchor_ndcg_drop"}
    other_holdout = copy.deepcopy(model())
    other_holdout["holdout"]["rows"] = 399
    d = decide(other_holdout, model(), T)
    assert [c.name for c in d.failed] == ["holdout_auc_deficit"]
    assert "not the same holdout set" in d.failed[0].detail


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError):
        GateSettings(max_anchor_auc_drop=math.nan)
    with pytest.raises(ValueError):
        GateSettings(min_holdout_auc=1.5)
