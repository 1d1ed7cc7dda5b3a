"""The slice-change rule and the drift episode, on constructed prequential series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from incremental.config import DriftSettings
from incremental.hours import Hour
from incremental.judge import drift, drift_rule, prequential
from incremental.model import replay

S = DriftSettings(overall_auc_drop=0.05, slice_auc_drop=0.15, slice_min_rows=100, sustained_hours=3,
                  reference_hours=12, min_reference_hours=3)
T0 = Hour(2026, 1, 1, tzinfo=UTC)


def hour(i: int) -> datetime:
    return T0 + timedelta(hours=i)


def records(overall: list[float], toys: list[float], books: list[float] | None = None,
            toys_rows: int = 300) -> list[dict]:
    out = []
    for i, (o, t) in enumerate(zip(overall, toys, strict=True)):
        cats = {"toys": {"rows": toys_rows, "auc": t}}
        if books is not None:
            cats["books"] = {"rows": 300, "auc": books[i]}
        out.append({"hour": f"{hour(i):%Y-%m-%dT%H:%MZ}", "champion_version": "1", "rows": 2000, "auc": o,
                    "per_category": cats})
    return out


def test_a_steady_series_is_neither_anomalous_nor_changed() -> None:
    recs = records([0.80, 0.81, 0.79, 0.80, 0.82, 0.80], [0.75, 0.74, 0.77, 0.73, 0.76, 0.75])
    a = drift_rule.assess(recs, hour(5), S)
    assert a.anomalous == [] and a.changed == []
    assert {v.series for v in a.verdicts} == {"overall", "toys"}


def test_one_bad_hour_is_anomalous_but_never_changed() -> None:
    recs = records([0.80, 0.81, 0.79, 0.80, 0.60], [0.75, 0.74, 0.77, 0.73, 0.30])
    a = drift_rule.assess(recs, hour(4), S)
    assert a.anomalous == ["overall", "toys"] and a.changed == []
    assert any("toys: champion AUC 0.300 vs reference 0.7" in line for line in a.evidence())
    # the hour after it is fine again: the median reference did not move
    recs = records([0.80, 0.81, 0.79, 0.80, 0.60, 0.80], [0.75, 0.74, 0.77, 0.73, 0.30, 0.76])
    assert drift_rule.assess(recs, hour(5), S).anomalous == []


def test_a_slice_that_falls_for_k_hours_in_a_row_has_changed() -> None:
    overall = [0.80, 0.81, 0.79, 0.80, 0.78, 0.78, 0.77]  # overall barely moves
    toys = [0.75, 0.74, 0.77, 0.73, 0.40, 0.35, 0.38]
    books = [0.70, 0.71, 0.69, 0.70, 0.71, 0.70, 0.69]
    assert drift_rule.assess(records(overall[:6], toys[:6], books[:6]), hour(5), S).changed == []  # 2 hours: not yet
    a = drift_rule.assess(records(overall, toys, books), hour(6), S)
    assert a.changed == ["toys"] and a.changed_slices == ["toys"]
    assert a.stable_slices == ["books"]  # measured and in line: the rolled anchor keeps its old rows
    assert a.began == f"{hour(4):%Y-%m-%dT%H:%MZ}"  # the streak's first hour
    gap = [r for r in records(overall, toys, books) if r["hour"] != f"{hour(5):%Y-%m-%dT%H:%MZ}"]  # 05:00 quarantined
    assert drift_rule.assess(gap, hour(6), S).changed == [] and drift_rule.assess(
        [*gap, *records([0.8] * 8, [0.75] * 7 + [0.36])[7:]], hour(7), S).began == f"{hour(4):%Y-%m-%dT%H:%MZ}"
    (toy,) = [v for v in a.verdicts if v.series == "toys"]
    assert toy.streak == 3 and toy.reference == 0.745


def test_a_break_in_the_streak_restarts_it() -> None:
    toys = [0.75, 0.74, 0.77, 0.73, 0.40, 0.74, 0.38, 0.35]
    a = drift_rule.assess(records([0.8] * 8, toys), hour(7), S)
    assert a.changed == [] and a.anomalous == ["toys"]


def test_small_slices_and_short_histories_are_not_judged() -> None:
    a = drift_rule.assess(records([0.8, 0.8, 0.8, 0.8, 0.8], [0.75, 0.74, 0.77, 0.73, 0.2], toys_rows=50), hour(4), S)
    assert [v.series for v in a.verdicts] == ["overall"]
    b = drift_rule.assess(records([0.8, 0.2], [0.7, 0.7]), hour(1), S)
    assert b.verdicts == () and "fewer than 3 earlier hours" in b.note
    assert a.to_dict()["judged"] and not b.to_dict()["judged"]  # b: the gate holds on holdout vs anchor instead


def test_the_reference_restarts_after_an_episode() -> None:
    toys = [0.75, 0.74, 0.77, 0.73, 0.40, 0.35, 0.38, 0.36, 0.37, 0.35, 0.36]
    recs = records([0.8] * 11, toys)
    assert "toys" in drift_rule.assess(recs, hour(10), S).changed  # against the old reference: still "changed"
    since = f"{hour(7):%Y-%m-%dT%H:%MZ}"  # the new champion's own record starts at 07:00
    assert drift_rule.assess(prequential.usable(recs, since), hour(10), S).changed == []


def test_only_prequential_records_make_the_reference() -> None:
    # scores on a training window's holdout run high (early stopping chose the weights on them):
    # older homes may hold such lines; the rule reads prequential records alone
    holdout = [{**r, "source": "holdout", "champion_version": "2"} for r in records([0.95] * 4, [0.95] * 4)]
    live = [{**r, "hour": f"{hour(4 + i):%Y-%m-%dT%H:%MZ}"} for i, r in enumerate(records([0.8] * 4, [0.75] * 4))]
    series = prequential.usable(holdout + live, since=None)
    assert [r["hour"][11:16] for r in series] == ["04:00", "05:00", "06:00", "07:00"]
    assert drift_rule.assess(series, hour(7), S).anomalous == []
    assert "fewer than 3 earlier hours" in drift_rule.assess(series[:3], hour(6), S).note


def test_an_episode_declares_pages_and_goes_on_after_a_promotion(settings) -> None:  # noqa: ANN001 - conftest
    s = settings.model_copy(update={"drift": S.model_copy(update={"page_after_hours": 2})})
    state = drift.load_state(s)
    toys = [0.75, 0.74, 0.77, 0.73, 0.40, 0.35, 0.38]
    recs = records([0.8] * 7, toys)
    out = drift.observe(s, drift_rule.assess(recs, hour(6), S), hour(6), champion="4")
    assert out["declared_now"] and out["mode"] == "adapt" and out["changed_slices"] == ["toys"]
    state = drift.load_state(s)
    assert state.catch_up == "pending" and state.declared_at == f"{hour(6):%Y-%m-%dT%H:%MZ}"
    began = {"categories": ["toys"], "before": f"{hour(4):%Y-%m-%dT%H:%MZ}"}  # the first anomalous hour
    assert drift.context(state, hour(6), S)["stale"] == [began]
    drift.after_decision(s, hour(6), "5", "rejected", "hourly")
    assert drift.load_state(s).shadow_version == "5"  # the next update starts from the rejected candidate
    drift.after_decision(s, hour(6), "6", "rejected", "catch_up", forgot=True)
    assert drift.load_state(s).shadow_version is None  # ... unless it broke what still holds: the champion again
    drift.after_decision(s, hour(6), "5", "rejected", "hourly")
    recs = records([0.8] * 9, [*toys, 0.36, 0.37])
    drift.observe(s, drift_rule.assess(recs, hour(8), S), hour(8))
    levels = [line for line in (drift.drift_dir(s) / "alerts.jsonl").read_text().splitlines()]
    assert len(levels) == 2 and '"level": "page"' in levels[1]
    drift.after_decision(s, hour(8), "7", "approved", "catch_up")
    state = drift.load_state(s)
    assert state.mode == "adapt" and state.promoted == ["7"] and state.shadow_version is None
    assert state.catch_up == "approved" and not state.episodes  # one promotion does not end adapting


def adapted(s, toys: list[float]):  # noqa: ANN001, ANN201 - the settings fixture; the state
    """An episode declared at 06:00 (toys fell from 04:00) with version 7 promoted at 07:00."""
    recs = records([0.8] * len(toys), toys)
    drift.observe(s, drift_rule.assess(recs[:7], hour(6), S), hour(6), champion="4")
    drift.after_decision(s, hour(7), "7", "approved", "hourly", improved=True)
    return recs


def test_an_episode_ends_when_the_champion_recovers(settings) -> None:  # noqa: ANN001 - conftest
    toys = [0.75, 0.74, 0.77, 0.73, 0.40, 0.35, 0.38, 0.50, 0.74]
    recs = adapted(settings, toys)
    out = drift.observe(settings, drift_rule.assess(recs[:8], hour(7), S), hour(7), "7")
    assert out["mode"] == "adapt" and not out["ended_now"]  # 0.50: still anomalous against 0.745
    out = drift.observe(settings, drift_rule.assess(recs, hour(8), S), hour(8), "7")
    assert out["ended_now"] and out["mode"] == "normal"
    state = drift.load_state(settings)
    episode = state.episodes[0]
    assert episode["how"] == "recovered" and episode["promoted"] == ["7"] and episode["replaced"] == "4"
    assert state.since == f"{hour(9):%Y-%m-%dT%H:%MZ}"
    # the rows the drift contradicted stay out of replay after the episode too
    rule = {"categories": ["toys"], "before": f"{hour(4):%Y-%m-%dT%H:%MZ}"}
    assert state.retired == [rule] and drift.context(state, hour(9), S)["stale"] == [rule]


def test_an_episode_ends_when_adapting_has_settled(settings) -> None:  # noqa: ANN001 - conftest
    s = settings.model_copy(update={"drift": S.model_copy(update={"settle_hours": 2})})
    adapted(s, [0.75, 0.74, 0.77, 0.73, 0.40, 0.35, 0.38])
    drift.after_decision(s, hour(8), "8", "rejected", "hourly")  # no better: 1
    drift.after_decision(s, hour(9), "9", "approved", "hourly", improved=True)  # better: the count restarts
    assert drift.load_state(s).flat_hours == 0 and drift.load_state(s).promoted == ["7", "9"]
    drift.after_decision(s, hour(10), "10", "rejected", "hourly")
    assert drift.load_state(s).mode == "adapt"
    drift.after_decision(s, hour(11), "11", "approved", "hourly")  # promoted, but within noise: 2
    state = drift.load_state(s)
    assert state.mode == "normal" and state.episodes[0]["how"] == "settled"
    assert state.episodes[0]["promoted"] == ["7", "9", "11"] and state.retired


def test_a_drift_of_the_whole_traffic_leaves_out_all_but_the_stable_categories(settings) -> None:  # noqa: ANN001
    # overall falls for 3 hours, no single category does: toys is measured and stable, books too thin
    overall = [0.80, 0.81, 0.79, 0.80, 0.70, 0.69, 0.68]
    recs = records(overall, [0.75, 0.74, 0.77, 0.73, 0.74, 0.75, 0.74])
    for r in recs:
        r["per_category"]["books"] = {"rows": 20, "auc": 0.3}
    out = drift.observe(settings, drift_rule.assess(recs, hour(6), S), hour(6), champion="4")
    assert out["declared_now"] and out["changed_slices"] == []
    state = drift.load_state(settings)
    assert state.stable_slices == ["toys"]
    (rule,) = drift.context(state, hour(6), S)["stale"]
    assert rule == {"all_but": ["toys"], "before": f"{hour(4):%Y-%m-%dT%H:%MZ}"}
    stale = replay.Stale.from_dict(rule)
    categories = pd.Series(["toys", "books", "garden"])
    assert stale.drops(hour(3), categories).tolist() == [False, True, True]  # before the drift: all but toys
    assert not stale.drops(hour(4), categories).any()  # since it began: nothing is stale
    assert replay.Stale.from_dict(stale.to_dict()) == stale
    assert stale.describe() == f"every category but toys: rows from before {hour(4):%Y-%m-%dT%H:%MZ}"


def test_without_a_promotion_an_episode_neither_recovers_nor_settles(settings) -> None:  # noqa: ANN001
    toys = [0.75, 0.74, 0.77, 0.73, 0.40, 0.35, 0.38, 0.74]
    recs = records([0.8] * len(toys), toys)
    drift.observe(settings, drift_rule.assess(recs[:7], hour(6), S), hour(6), champion="4")
    for h in (7, 8, 9, 10):
        drift.after_decision(settings, hour(h), str(h), "rejected", "hourly")
    out = drift.observe(settings, drift_rule.assess(recs, hour(7), S), hour(7), "4")
    assert out["mode"] == "adapt" and not drift.load_state(settings).episodes


def test_a_fall_within_the_noise_of_a_small_slice_is_not_anomalous() -> None:
    # the same fall of 0.16 (above slice_auc_drop): a noisy slice of 120 rows / 12 clicks says
    # nothing, a slice of 3,000 rows / 450 clicks is anomalous
    def recs(rows: int, positives: int) -> list[dict]:
        out = records([0.8] * 5, [0.80, 0.81, 0.79, 0.80, 0.64])
        for r in out:
            r["per_category"]["toys"].update(rows=rows, positives=positives)
        return out

    assert drift_rule.assess(recs(120, 12), hour(4), S).anomalous == []
    assert drift_rule.assess(recs(3000, 450), hour(4), S).anomalous == ["toys"]
    assert drift_rule.auc_standard_error(0.64, 12, 120) > 0.08 > drift_rule.auc_standard_error(0.64, 450, 3000)
    assert drift_rule.auc_standard_error(0.7, None, 100) == 0.0


def test_thin_categories_are_judged_on_their_last_k_hours_pooled() -> None:
    # 60 rows an hour: too thin hour by hour, 180 over the last 3 hours
    overall = [0.80, 0.81, 0.79, 0.80, 0.70, 0.69, 0.68]
    recs = records(overall, [0.75, 0.74, 0.77, 0.73, 0.40, 0.35, 0.38], [0.70, 0.71, 0.69, 0.70, 0.71, 0.70, 0.69])
    for r in recs:
        for cat in ("toys", "books"):
            r["per_category"][cat].update(rows=60, positives=12)
    a = drift_rule.assess(recs, hour(6), S)
    assert a.changed == ["overall"] and a.changed_slices == ["toys"] and a.stable_slices == ["books"]
    assert a.began == f"{hour(4):%Y-%m-%dT%H:%MZ}"  # from the hourly streak
    (toys,) = [v for v in a.verdicts if v.series == "toys"]
    assert toys.pooled == 3 and abs(toys.value - 0.3767) < 1e-3 and abs(toys.reference - 0.7475) < 1e-3
    assert "toys (pooled over 3h): champion AUC 0.377" in "\n".join(a.evidence())
    # one bad thin hour neither holds an hour back nor makes the slice changed
    one_bad = records([0.80] * 7, [0.75, 0.74, 0.77, 0.73, 0.75, 0.74, 0.01])
    for r in one_bad:
        r["per_category"]["toys"].update(rows=60, positives=12)
    b = drift_rule.assess(one_bad, hour(6), S)
    assert b.anomalous == [] and b.changed == [] and b.changed_slices == []
    # measured hour by hour but in the first of the last 3 hours: anomalous 2h, changed when pooled
    for i, r in enumerate(recs):
        r["per_category"]["toys"].update(rows=60 if i == 4 else 150, positives=12 if i == 4 else 30)
    c = drift_rule.assess(recs, hour(6), S)
    assert c.anomalous == ["overall", "toys"] and c.changed == ["overall"] and c.changed_slices == ["toys"]
    assert "toys" not in c.stable_slices
    # a fall neither beyond the threshold and the noise nor clearly within it: unsure, neither changed nor stable
    unsure = records(overall, [0.75, 0.74, 0.77, 0.73, 0.66, 0.62, 0.64])
    for r in unsure:
        r["per_category"]["toys"].update(rows=60, positives=12)
    d = drift_rule.assess(unsure, hour(6), S)
    (toys,) = [v for v in d.verdicts if v.series == "toys"]
    assert toys.anomalous and not toys.changed and toys.line().endswith("-> unsure")
    assert d.changed_slices == [] and d.stable_slices == [] and d.anomalous == ["overall"]
    assert not any("toys" in line for line in d.evidence())
    # a slice thin even over K hours gets no verdict
    for r in recs:
        r["per_category"]["books"].update(rows=30, positives=6)
    assert "books" not in {v.series for v in drift_rule.assess(recs, hour(6), S).verdicts}


def test_a_category_the_champion_never_learned_is_not_called_stable() -> None:
    # toys near AUC 0.5 all along: a contradiction would not show, so it cannot be shown to hold
    overall = [0.80, 0.81, 0.79, 0.80, 0.70, 0.69, 0.68]
    a = drift_rule.assess(records(overall, [0.52, 0.54, 0.53, 0.52, 0.55, 0.53, 0.54], [0.70] * 7), hour(6), S)
    assert a.changed == ["overall"] and a.stable_slices == ["books"]
    (toys,) = [v for v in a.verdicts if v.series == "toys" and not v.pooled]
    assert not toys.anomalous and not toys.informative and toys.line().endswith("-> ok")


def test_two_writers_of_the_drift_state_never_lose_each_others_change(settings) -> None:  # noqa: ANN001 - conftest
    """Register (a candidate decided) and monitor (the episode moves on) change the one state on
    different workers: each is a read-modify-write under the lake's drift lock, so neither is lost."""
    from concurrent.futures import ThreadPoolExecutor

    recs = records([0.8] * 7, [0.75, 0.74, 0.77, 0.73, 0.40, 0.35, 0.38])
    drift.observe(settings, drift_rule.assess(recs, hour(6), S), hour(6), champion="4")  # adapt mode

    def decided(k: int) -> None:
        drift.after_decision(settings, hour(7), str(10 + k), "approved", "hourly", improved=True)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(decided, range(16)))
    assert sorted(drift.load_state(settings).promoted) == sorted(str(10 + k) for k in range(16))


def test_an_hour_keeps_the_record_of_the_champion_served_when_it_arrived(settings) -> None:  # noqa: ANN001 - conftest
    # an older home (or two runs of one hour at once) may hold several lines for an hour: the rule
    # reads the first written, never the one that sorts last as a string ("2" > "10" > "1")
    first, *later = [prequential.make_record(hour(0), v, {"rows": 100, "auc": a}) for v, a in
                     [("9", 0.7), ("10", 0.99), ("2", 0.98)]]
    for r in (first, *later):
        prequential.append_record(settings, r)
    assert [r["champion_version"] for r in prequential.records(settings)] == ["9", "10", "2"]
    assert [r["champion_version"] for r in prequential.usable(prequential.records(settings), None)] == ["9"]
    # recording an hour that is scored already writes nothing (checked under the drift lock)
    assert not prequential.record_once(settings, prequential.make_record(hour(0), "11", {"rows": 100, "auc": 0.5}))
    assert prequential.record_once(settings, prequential.make_record(hour(1), "11", {"rows": 100, "auc": 0.5}))
    assert [r["champion_version"] for r in prequential.records(settings)] == ["9", "10", "2", "11"]


def test_an_hour_without_a_verdict_is_anomalous_when_the_champions_holdout_falls_below_its_anchor() -> None:
    """A late hour has no prequential record, a young champion too few earlier hours: the
    champion's holdout AUC against its anchor AUC, by the rule's threshold and noise, and only
    where the champion has skill to lose."""
    s = DriftSettings()
    anchor = {"auc": 0.78, "rows": 800, "positives": 150}
    poisoned = drift_rule.anchor_evidence({"auc": 0.40, "rows": 200, "positives": 40}, anchor, s)
    assert len(poisoned) == 1 and "no prequential verdict" in poisoned[0] and "drop +0.380" in poisoned[0]
    assert drift_rule.anchor_evidence({"auc": 0.75, "rows": 200, "positives": 40}, anchor, s) == []  # in line
    assert drift_rule.anchor_evidence({"auc": 0.62, "rows": 30, "positives": 4}, anchor, s) == []  # within its noise
    # the Home Depot case: a champion whose skill on the anchor is within noise of chance has none to lose
    weak = {"auc": 0.537, "rows": 1713, "positives": 605}
    assert drift_rule.anchor_evidence({"auc": 0.446, "rows": 317, "positives": 105}, weak, s) == []
    assert drift_rule.anchor_evidence({"auc": 0.446, "rows": 317, "positives": 105}, {**weak, "auc": 0.62}, s)
    assert drift_rule.anchor_evidence({"auc": 0.30, "rows": 200, "positives": 40}, {**anchor, "auc": 0.51}, s) == []
    assert drift_rule.anchor_evidence({"auc": None, "rows": 200, "positives": 0}, anchor, s) == []  # no clicks
