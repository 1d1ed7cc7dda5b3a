"""The promotion gate: a pure function, every check reported, fail-closed on bad numbers.

The core is relative (candidate vs champion on the same fresh holdout, a paired interval):
significantly better, within noise and significantly worse are built by hand here; value
thresholds are sanity floors that never block a candidate at least as good as the champion.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest

from incremental.config import GateSettings
from incremental.judge.evaluate import forgot, key_metrics
from incremental.judge.gate import Decision, decide

T = GateSettings(
    min_holdout_auc=0.55,
    max_holdout_logloss=0.69,
    max_anchor_auc_drop=0.02,
    max_worst_category_auc_drop=0.05,
    min_category_rows=30,
)
ALL_CHECKS = [
    "holdout_rows",
    "holdout_auc",
    "holdout_logloss",
    "holdout_ece",
    "holdout_ndcg_vs_champion",
    "holdout_auc_vs_champion",
    "anchor_auc_drop",
    "anchor_worst_category_auc_drop",
    "anchor_cumulative_auc_drop",
    "hour_not_anomalous",
]
BETTER = (0.03, 0.01, 0.05)  # (diff, lo, hi) of candidate minus champion
NOISE = (0.005, -0.02, 0.03)
WORSE = (-0.04, -0.07, -0.01)


def interval(diff: float, lo: float, hi: float) -> dict[str, Any]:
    return {"diff": diff, "lo": lo, "hi": hi}


def model(
    holdout_auc: float = 0.70,
    logloss: float = 0.50,
    anchor_auc: float = 0.72,
    ndcg: float = 0.60,
    books: float = 0.74,
    toys: float = 0.70,
    tiny: float = 0.90,
    holdout_rows: int = 400,
    ndcg_vs: tuple[float, float, float] = NOISE,
    auc_vs: tuple[float, float, float] = NOISE,
) -> dict[str, Any]:
    def block(auc: float, rows: int) -> dict[str, Any]:
        return {"rows": rows, "auc": auc, "ndcg@10": ndcg, "logloss": logloss, "ece": 0.02}

    return {
        "holdout": {"rows": holdout_rows, "auc": holdout_auc, "ndcg@10": 0.6, "logloss": logloss, "ece": 0.03},
        "anchor": {
            **block(anchor_auc, 510),
            "per_category": {"books": block(books, 300), "toys": block(toys, 200), "tiny": block(tiny, 10)},
        },
        "holdout_vs_champion": {"sessions": 40, "confidence": 0.9, "ndcg@10": interval(*ndcg_vs),
                                "auc": interval(*auc_vs)},
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
        assert c.comparison in (">=", "<=") and c.kind in ("value", "change", "relative", "hold") and c.detail
        assert math.isfinite(c.value) and math.isfinite(c.threshold)
    assert check(d, "anchor_auc_drop").value == pytest.approx(0.005)
    assert check(d, "holdout_auc").value == pytest.approx(0.705)
    assert d.reasons[0].startswith("approved: all 10 checks passed; fresh holdout ndcg@10: candidate within noise")
    payload = d.to_dict()
    json.dumps(payload, allow_nan=False)
    assert payload["decision"] == "approved" and len(payload["checks"]) == 10


def test_first_model_is_judged_by_value_thresholds_only() -> None:
    candidate = model()
    del candidate["anchor"]  # no champion: the anchor does not matter
    d = decide(candidate, None, T)
    assert d.approved
    assert [c.name for c in d.checks] == ["holdout_rows", "holdout_auc", "holdout_logloss", "holdout_ece"]
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
    assert forgot(d.to_dict())  # a drift episode's shadow chain does not go on from it


def test_a_significantly_worse_holdout_rejects_and_the_anchor_ndcg_alone_does_not() -> None:
    d = decide(model(ndcg=0.55, holdout_auc=0.68, auc_vs=WORSE), model(ndcg=0.60, holdout_auc=0.70), T)
    assert {c.name for c in d.failed} == {"holdout_auc_vs_champion"}
    assert "significantly worse" in check(d, "holdout_auc_vs_champion").detail
    assert len(d.reasons) == 1
    worse_only = decide(model(holdout_auc=0.68, auc_vs=WORSE), model(holdout_auc=0.70), T)
    assert not worse_only.approved and not forgot(worse_only.to_dict())  # not yet better: kept
    # the anchor's NDCG@10 is reported, not judged: it never decided alone and once rejected a better
    # candidate (docs/benchmarks.md, "Do the forgetting checks earn their place?")
    assert decide(model(ndcg=0.50), model(ndcg=0.60), T).approved


@pytest.mark.parametrize(("ndcg_vs", "approved", "words"), [
    (BETTER, True, "candidate better than the champion, +0.0300"),
    (NOISE, True, "candidate within noise of the champion, +0.0050"),
    (WORSE, False, "candidate worse than the champion, -0.0400"),
])
def test_relative_gate_on_the_same_fresh_holdout(ndcg_vs: tuple, approved: bool, words: str) -> None:
    d = decide(model(ndcg_vs=ndcg_vs), model(), T)
    c = check(d, "holdout_ndcg_vs_champion")
    assert d.approved is approved and c.passed is approved
    assert words in c.detail and "90% interval" in c.detail and "40 sessions" in c.detail
    assert c.value == pytest.approx(ndcg_vs[2])  # the upper end of the interval is what is compared
    # within noise, the decision says how large a change this holdout could have seen
    assert ("this holdout cannot tell a change smaller than" in c.detail) is (ndcg_vs is NOISE)


def test_a_tolerance_lets_a_slightly_worse_candidate_through() -> None:
    lenient = T.model_copy(update={"max_holdout_ndcg_deficit": 0.02})
    assert decide(model(ndcg_vs=WORSE), model(), lenient).approved
    assert not decide(model(ndcg_vs=(-0.1, -0.15, -0.05)), model(), lenient).approved


def test_floors_never_block_a_candidate_better_than_the_champion() -> None:
    # drifted traffic: both models are below the AUC floor, the candidate far less so
    champion = model(holdout_auc=0.38, logloss=0.80)
    candidate = model(holdout_auc=0.52, logloss=0.72, ndcg_vs=BETTER, auc_vs=BETTER)
    d = decide(candidate, champion, T)
    assert d.approved, d.reasons
    assert "at least as good as the champion" in check(d, "holdout_auc").detail
    # the same floor still rejects a candidate that is also significantly worse than the champion
    worse = decide(model(holdout_auc=0.52, auc_vs=WORSE), model(holdout_auc=0.60), T)
    assert not check(worse, "holdout_auc").passed
    assert "worse than the champion's 0.6000" in check(worse, "holdout_auc").detail


def test_the_auc_floor_does_not_reject_a_candidate_within_noise_of_the_champion() -> None:
    # after a drift both sit below chance; a point difference the interval calls noise is no reason
    # (benchmarks/gate_rules_bench.py: the floor alone rejected a candidate better on the truth)
    noise = decide(model(holdout_auc=0.47, auc_vs=NOISE), model(holdout_auc=0.48), T)
    assert check(noise, "holdout_auc").passed and noise.approved, noise.reasons
    assert "within noise" in check(noise, "holdout_auc").detail
    first = decide(model(holdout_auc=0.47), None, T)  # a first model has no champion: the floor judges it
    assert not check(first, "holdout_auc").passed


def test_undefined_interval_rejects() -> None:
    d = decide(model(ndcg_vs=(math.nan, math.nan, math.nan)), model(), T)
    assert not check(d, "holdout_ndcg_vs_champion").passed
    missing = model()
    del missing["holdout_vs_champion"]
    assert {c.name for c in decide(missing, model(), T).failed} == {"holdout_ndcg_vs_champion",
                                                                    "holdout_auc_vs_champion"}


def test_an_anomalous_hour_is_held_back_in_normal_mode_only() -> None:
    evidence = ["overall: champion AUC 0.400 vs reference 0.800 (drop +0.400, 1h in a row) -> anomalous"]
    normal = decide(model(ndcg_vs=BETTER), model(), T, {"mode": "normal", "anomalous": evidence})
    assert [c.name for c in normal.failed] == ["hour_not_anomalous"]
    assert "held back" in normal.reasons[0] and "0.400" in normal.reasons[0]
    adapt = decide(model(ndcg_vs=BETTER), model(), T, {"mode": "adapt", "anomalous": evidence})
    assert adapt.approved
    assert decide(model(), model(), T.model_copy(update={"hold_anomalous_hours": False}),
                  {"mode": "normal", "anomalous": evidence}).approved


def test_changed_slices_are_reported_not_protected() -> None:
    # toys changed (its pattern was contradicted): its drop does not block, books' would
    champion, candidate = model(toys=0.80), model(toys=0.50)
    for m, auc in ((champion, 0.72), (candidate, 0.715)):
        m["anchor_unchanged"] = {"rows": 310, "auc": auc, "ndcg@10": 0.6, "excluded_slices": ["toys"]}
    context = {"mode": "adapt", "changed_slices": ["toys"]}
    d = decide(candidate, champion, T, context)
    assert d.approved, d.reasons
    assert "changed and not protected: toys" in check(d, "anchor_worst_category_auc_drop").detail
    assert check(d, "anchor_auc_drop").metric == "anchor_unchanged.auc"
    assert not decide(candidate, champion, T, {"mode": "adapt"}).approved  # unchanged: toys is protected


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
    [("holdout", "auc"), ("holdout", "logloss"), ("anchor", "auc"), ("toys", "auc")],
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
    assert not d.approved and len(d.failed) == 4
    assert "holdout.rows is missing" in check(d, "holdout_rows").detail


def test_missing_anchor_or_a_different_set_rejects_against_a_champion() -> None:
    no_anchor = model()
    del no_anchor["anchor"]
    d = decide(no_anchor, model(), T)
    assert {c.name for c in d.failed} == {"anchor_auc_drop", "anchor_worst_category_auc_drop"}
    other_holdout = copy.deepcopy(model())
    other_holdout["holdout"]["rows"] = 399
    other_holdout["holdout"]["auc"] = 0.50  # below the floor; a champion measured elsewhere cannot excuse it
    d = decide(other_holdout, model(), T)
    assert [c.name for c in d.failed] == ["holdout_auc"]


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError):
        GateSettings(max_anchor_auc_drop=math.nan)
    with pytest.raises(ValueError):
        GateSettings(min_holdout_auc=1.5)


def test_forgetting_within_noise_of_the_anchor_passes_and_significant_forgetting_rejects() -> None:
    """A drop above its limit rejects only when the paired anchor interval says it is real."""
    def with_noise(m: dict[str, Any], auc: tuple, toys: tuple) -> dict[str, Any]:
        m["anchor_vs_champion"] = {"auc": interval(*auc), "ndcg@10": interval(*NOISE),
                                   "per_category": {"toys": {"auc": interval(*toys)}}}
        return m

    champion = model(anchor_auc=0.72, toys=0.70)
    noisy = with_noise(model(anchor_auc=0.69, toys=0.62), auc=(-0.03, -0.07, 0.01), toys=(-0.08, -0.2, 0.04))
    d = decide(noisy, champion, T)
    assert d.approved, d.reasons
    assert "within noise" in check(d, "anchor_auc_drop").detail and "[-0.0700, +0.0100]" in check(d, "anchor_auc_drop").detail
    assert "beyond the limit but within noise: toys" in check(d, "anchor_worst_category_auc_drop").detail

    real = with_noise(model(anchor_auc=0.69, toys=0.62), auc=(-0.03, -0.05, -0.01), toys=(-0.08, -0.12, -0.03))
    d = decide(real, champion, T)
    assert {c.name for c in d.failed} == {"anchor_auc_drop", "anchor_worst_category_auc_drop"}
    assert "[-0.1200, -0.0300]" in check(d, "anchor_worst_category_auc_drop").detail

    # a drop within its limit passes whatever the interval; an undefined interval counts as significant
    assert decide(with_noise(model(anchor_auc=0.71), (-0.01, -0.02, -0.005), NOISE), champion, T).approved
    undefined = with_noise(model(anchor_auc=0.69), (math.nan, math.nan, math.nan), NOISE)
    assert "no interval could be computed" in check(decide(undefined, champion, T), "anchor_auc_drop").detail
    assert not decide(undefined, champion, T).approved


def budget(diff: float, lo: float, hi: float, **extra: Any) -> dict[str, Any]:
    """An anchor_vs_baseline section: candidate minus the anchor's baseline, mean over categories."""
    return {"applicable": True, "baseline_version": "7", "diff": diff, "lo": lo, "hi": hi,
            "categories": {"books": {"diff": diff * 2}, "toys": {"diff": 0.0}}, **extra}


@pytest.mark.parametrize(("section", "approved", "words"), [
    (budget(-0.005, -0.02, 0.01), True, "within the budget 0.0100"),
    (budget(-0.04, -0.06, -0.02), False, "more than the budget 0.0100"),
    (budget(-0.03, -0.07, 0.01), True, "within noise of, the budget"),
    (budget(0.02, 0.0, 0.04), True, "changed by -0.0200"),
    ({"applicable": False, "why": "no champion when the anchor was frozen"}, True, "not applicable: no champion"),
    (budget(math.nan, math.nan, math.nan), False, "cannot be computed"),
])
def test_the_cumulative_budget_holds_candidates_to_the_anchors_baseline(section: dict[str, Any], approved: bool,
                                                                          words: str) -> None:
    """Each update within its own limits against the champion, the sum of them not: the ratchet."""
    candidate = model(anchor_auc=0.715)
    candidate["anchor_vs_baseline"] = section
    d = decide(candidate, model(), T)
    found = check(d, "anchor_cumulative_auc_drop")
    assert d.approved is approved and found.passed is approved
    assert words in found.detail
    assert all(c.passed for c in d.checks if c.name != "anchor_cumulative_auc_drop")
    if not approved and math.isfinite(found.value):
        assert "since version 7" in found.detail and "books +0.080" in found.detail
        assert forgot(d.to_dict())  # the shadow chain does not go on from it


def test_an_evaluation_without_a_baseline_section_says_the_budget_does_not_apply() -> None:
    found = check(decide(model(), model(), T), "anchor_cumulative_auc_drop")
    assert found.passed and found.detail.startswith("not applicable")


@pytest.mark.parametrize(("vs_floor", "approved", "verdict"), [
    (BETTER, True, "better than the floor"), (NOISE, True, "within noise of the floor"),
    (WORSE, False, "worse than the floor")])
def test_a_first_model_is_judged_against_the_lexical_floor_of_its_own_hours(vs_floor, approved, verdict) -> None:
    candidate = model()
    candidate["lexical_floor"] = {"scorer": "bm25", "auc": 0.61, "ndcg@10": 0.58,
                                  "candidate_vs_floor": {"confidence": 0.9, "ndcg@10": interval(*vs_floor)}}
    d = decide(candidate, None, T)
    floor = next(c for c in d.checks if c.name == "holdout_vs_lexical_floor")
    assert d.approved is approved and floor.passed is approved
    assert verdict in floor.detail and "lexical floor's 0.5800" in floor.detail, floor.detail
    # without a floor measured (an older evaluation) the check is not made up: it is absent
    assert "holdout_vs_lexical_floor" not in [c.name for c in decide(model(), None, T).checks]
    # with a champion the relative gate judges; the floor is for first models
    assert "holdout_vs_lexical_floor" not in [c.name for c in decide(candidate, model(), T).checks]


def test_the_worst_category_shown_in_history_is_the_one_the_gate_judges() -> None:
    # a trial's `incremental history` showed "worst cat AUC 0.0625": a category of a few anchor rows
    candidate = model(toys=0.0625)
    candidate["anchor"]["per_category"]["toys"]["rows"] = 8
    assert key_metrics(candidate, min_category_rows=30)["worst_category_auc"] == pytest.approx(0.74)
    assert key_metrics(candidate)["worst_category_auc"] == pytest.approx(0.0625)
