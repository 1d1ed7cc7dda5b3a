"""The prequential benchmark's summary maths, on hand-built inputs (no model, no MLflow)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmarks import continual
from benchmarks.continual import lineage, step
from benchmarks.continual.__main__ import build_parser, run
from incremental.config import SettingsError
from incremental.judge import drift, metrics

HOURS = [f"2026-01-01T{h:02d}:00:00+00:00" for h in range(2, 7)]


def _frame() -> pd.DataFrame:
    # two sessions of four results, one click each (graded: session b has a double click)
    return pd.DataFrame({
        "session_id": ["a"] * 4 + ["b"] * 4,
        "query": ["drill"] * 4 + ["paint"] * 4,
        "category": ["tools"] * 4 + ["paint"] * 4,
        "clicked": [0, 1, 0, 0, 2, 0, 1, 0],
    })


def test_a_perfect_ranking_has_ndcg_1_and_a_reversed_one_less() -> None:
    frame = _frame()
    perfect = frame["clicked"].to_numpy() / 2.0  # clicked rows first, more clicks higher
    scored = step._trim(metrics.evaluate(frame, perfect))
    assert scored["ndcg@10"] == pytest.approx(1.0)
    assert scored["per_category"]["tools"]["ndcg@10"] == pytest.approx(1.0)
    assert scored["auc"] == pytest.approx(1.0)
    reversed_ = step._trim(metrics.evaluate(frame, 1.0 - perfect))
    assert reversed_["ndcg@10"] < 1.0 and reversed_["auc"] == pytest.approx(0.0)


def test_recovery_is_hours_from_the_drift_until_back_within_tolerance_of_the_reference_for_good() -> None:
    ref = [0.80, 0.75, 0.73, 0.71, 0.72]
    arm = [0.80, 0.60, 0.65, 0.705, 0.71]
    assert continual.recovery_hours(arm, ref, drift_index=1) == 2  # 0.705 >= 0.71 - 0.01 at index 3, and after
    assert continual.recovery_hours(ref, ref, drift_index=1) == 0  # never fell behind
    assert continual.recovery_hours([0.5] * 5, ref, drift_index=1) is None  # not within the window
    assert continual.recovery_hours([None, None, 0.74, 0.705, 0.715], ref, drift_index=1) == 1  # unknown hours skipped
    assert continual.recovery_hours(arm, ref, drift_index=1, tolerance=0.0) is None
    # within tolerance at the drift hour (both collapsed), then behind: it has not recovered
    assert continual.recovery_hours([0.8, 0.74, 0.6, 0.6, 0.715], ref, drift_index=1) == 3
    assert continual.recovery_hours([0.8, 0.74, 0.6, 0.6, 0.6], ref, drift_index=1) is None


def test_largest_loss_mean_and_ratio() -> None:
    assert continual.largest_loss([0.7, 0.5, None], [0.7, 0.65, 0.9]) == pytest.approx(0.15)
    assert continual.largest_loss([0.8, 0.9], [0.7, 0.7]) == pytest.approx(-0.1)  # never behind
    assert continual.largest_loss([None], [0.7]) is None
    assert continual.mean([1.0, None, math.nan, 0.5]) == pytest.approx(0.75)
    assert continual.mean([]) is None
    assert continual.ratio(10.0, 40.0) == pytest.approx(0.25)
    assert continual.ratio(10.0, 0.0) is None and continual.ratio(None, 4.0) is None


def _record(arm: str, hour: str, ndcg: float | None, auc: float | None = 0.7, **extra: object) -> dict:
    pre = None if ndcg is None else {"ndcg@10": ndcg, "auc": auc}
    return {"arm": arm, "hour": hour, "prequential": pre, "version": None, "promoted": False,
            "learn_seconds": 0.0, "examples": 0, "peak_rss_mb": None, "pages": 0, **extra}


def _records() -> list[dict]:
    ref = [0.80, 0.80, 0.70, 0.72, 0.74]
    gated = [0.80, 0.80, 0.50, 0.60, 0.735]
    frozen = [0.80, 0.79, 0.40, 0.40, 0.40]
    out = []
    for i, hour in enumerate(HOURS):
        out.append(_record("frozen", hour, frozen[i]))
        out.append(_record("gated", hour, gated[i], version=str(i + 2), learn_seconds=10.0, examples=480,
                           promoted=i != 2, pages=1 if i >= 3 else 0, peak_rss_mb=900.0 + i))
        out.append(_record("full_retrain", hour, ref[i], version=str(i + 2), learn_seconds=40.0 + i,
                           examples=1280 * (i + 3), promoted=True, peak_rss_mb=1000.0))
    return out


def test_summary_means_after_bootstrap_and_after_drift_recovery_cost_and_pages() -> None:
    summary = continual.summarize(_records(), ("frozen", "gated", "full_retrain"), HOURS, drift_hour=HOURS[2])
    gated, frozen, ref = (summary["arms"][a] for a in ("gated", "frozen", "full_retrain"))
    assert gated["ndcg@10"] == pytest.approx(np.mean([0.80, 0.80, 0.50, 0.60, 0.735]))
    assert gated["ndcg@10_after_drift"] == pytest.approx(np.mean([0.50, 0.60, 0.735]))
    assert gated["auc_after_drift"] == pytest.approx(0.7)
    assert gated["recovery_hours"] == 2 and frozen["recovery_hours"] is None and ref["recovery_hours"] == 0
    assert gated["largest_ndcg@10_loss_vs_ref"] == pytest.approx(0.20)
    assert frozen["largest_ndcg@10_loss_vs_ref"] == pytest.approx(0.34)
    assert gated["promotions"] == 4 and gated["updates"] == 5 and frozen["updates"] == 0
    assert gated["human_interventions"] == 1 and gated["peak_rss_mb"] == pytest.approx(904.0)
    assert frozen["peak_rss_mb"] is None and frozen["learn_seconds"] == 0
    # the last gated update (10 s, 480 examples) against the last full retrain (44 s, 1280 * 7 examples)
    cost = summary["cost_ratio_gated_vs_full_retrain"]
    assert cost["seconds"] == pytest.approx(10.0 / 44.0)
    assert cost["examples"] == pytest.approx(480 / (1280 * 7))
    assert cost["gated_hour"] == cost["full_retrain_hour"] == HOURS[-1]


def test_summary_without_drift_or_reference() -> None:
    records = [r for r in _records() if r["arm"] != "full_retrain"]
    summary = continual.summarize(records, ("frozen", "gated"), HOURS, drift_hour=None)
    assert summary["reference"] is None and summary["cost_ratio_gated_vs_full_retrain"] is None
    assert summary["arms"]["gated"]["ndcg@10_after_drift"] is None
    assert "recovery_hours" not in summary["arms"]["gated"]
    assert "| gated |" in continual.summary_table(summary)


def test_human_interventions_are_page_lines_of_the_alert_log(settings) -> None:  # noqa: ANN001 - conftest
    assert continual.count_pages(settings) == 0  # no file yet: none
    lines = [{"level": "page", "what": "adapt mode"}, {"level": "info"}, {"level": "page"}]
    path = drift.drift_dir(settings) / "alerts.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    assert continual.count_pages(settings) == 2


def test_lineage_tags_parse_to_hours() -> None:
    hours = lineage._tag_hours("2026-01-01T00:00:00+00:00:abcdef123456,2026-01-01T01:00:00+00:00:0123456789ab", 1)
    assert hours == [datetime(2026, 1, 1, 0, tzinfo=UTC), datetime(2026, 1, 1, 1, tzinfo=UTC)]
    replay = lineage._tag_hours("2026-01-01T03:00:00+00:00:abcdef123456:40", 2)
    assert replay == [datetime(2026, 1, 1, 3, tzinfo=UTC)]
    assert lineage._tag_hours("", 1) == []


def test_arm_configs_merge_over_the_reviewed_file_and_are_checked(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("training:\n  learning_rate: 1.0e-5\n  replay_fraction: 0.5\ngate:\n  max_anchor_auc_drop: 0.02\n")
    naive = continual.ARMS["naive"].config
    raw = continual.write_arm_config(base, tmp_path / "naive.yaml", {"training": {"max_steps": 15}}, naive)
    assert raw["training"] == {"learning_rate": 1e-5, "replay_fraction": 0.0, "l2sp_strength": 0.0, "max_steps": 15}
    assert raw["gate"] == {"max_anchor_auc_drop": 0.02, "hold_anomalous_hours": False}  # no drift response
    assert raw["drift"] == {"overall_auc_drop": 1.0, "slice_auc_drop": 1.0}
    with pytest.raises(SettingsError, match="replay_fractoin"):
        continual.write_arm_config(base, tmp_path / "bad.yaml", {"training": {"replay_fractoin": 0}})
    # the committed arms stay valid as the settings change (a removed setting fails here, not in an hour-long run)
    repo = Path(__file__).resolve().parents[2]
    for arm in sorted((repo / "benchmarks" / "arms").rglob("*.yaml")):
        continual.write_arm_config(repo / "incremental.yaml", tmp_path / "arms" / arm.name, yaml.safe_load(arm.read_text()))


def _args(*argv: str):
    return build_parser().parse_args(list(argv))


def test_plan_from_the_presets_and_options(tmp_path: Path) -> None:
    plan = continual.plan_from_args(_args("--work", str(tmp_path)))
    small = continual.PRESETS["small"]
    assert (plan.preset, plan.scenario, plan.base_model) == ("small", "drift", "minilm-l2")
    assert plan.arms == ("frozen", "naive", "gated", "full_retrain", "lexical", "oracle")  # the last two: no training
    assert (plan.hours, plan.drift_hour, plan.training) == (small.hours, small.drift_hour, small.training)
    full = continual.plan_from_args(_args("--preset", "full", "--retrain-every", "6", "--max-steps", "50",
                                          "--work", str(tmp_path)))
    assert (full.hours, full.drift_hour, full.rate, full.retrain_every) == (48, 24, 2000, 6)
    assert full.training == {"max_steps": 50}
    steady = continual.plan_from_args(_args("--scenario", "steady", "--arms", "frozen,gated", "--work", str(tmp_path)))
    assert steady.drift_hour is None and steady.arms == ("frozen", "gated")
    side = tmp_path / "strict.yaml"
    side.write_text("gate:\n  max_anchor_auc_drop: 0.005\n")
    two = continual.plan_from_args(_args("--arm-config", f"strict={side}", "--work", str(tmp_path)))
    assert two.arms[-1] == "strict" and continual.all_arms(two)["strict"].config == {"gate": {"max_anchor_auc_drop": 0.005}}
    for bad in (["--arms", "frozen,nope"], ["--scenario", "judgments"], ["--drift-hour", "1"],
                ["--bootstrap-hours", "6"], ["--arm-config", "gated=x.yaml"],
                ["--arms", "frozen", "--arm-config", f"strict={side}"]):  # nothing to pair it with
        with pytest.raises(ValueError):
            continual.plan_from_args(_args(*bad, "--work", str(tmp_path)))


def test_help_documents_arms_scenarios_and_presets(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        run(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for word in (*continual.ARMS, "steady", "drift", "judgments", "--judgments", "--query-col", "small", "full",
                 "--retrain-every", "--arm-config", "--pair-with", "--out"):
        assert word in text, word


def test_forgetting_on_unchanged_categories_is_the_anchor_auc_drop_from_before_the_drift_to_the_end() -> None:
    hours = ["h0", "h1", "h2", "h3"]
    def rec(hour: str, garden: float, paint: float) -> dict:
        return {"arm": "gated", "hour": hour, "anchor_auc_per_category": {"garden": garden, "paint": paint}}

    records = [rec("h0", 0.80, 0.7), rec("h1", 0.82, 0.7), rec("h2", 0.75, 0.2), rec("h3", 0.72, 0.3)]
    drop = continual.unchanged_forgetting(records, "gated", hours, drift_index=2, unchanged=["garden"])
    assert drop == pytest.approx(0.10)  # 0.82 at h1 (the last hour before the drift) -> 0.72 at h3; paint ignored
    assert continual.unchanged_forgetting(records, "gated", hours, drift_index=0, unchanged=["garden"]) is None
    summary = continual.summarize(records, ("gated",), hours, drift_hour="h2", unchanged=["garden"])
    assert summary["arms"]["gated"]["unchanged_anchor_auc_drop"] == pytest.approx(0.10)
    assert summary["unchanged_categories"] == ["garden"]


# --- the truth: graded NDCG against the hidden relevance, the oracle and lexical arms ---------------
def test_truth_ndcg_is_ndcg_against_graded_gains_with_unknown_rows_left_out() -> None:
    frame = _frame()
    gains = np.array([0.02, 0.9, 0.15, 0.7, 0.7, 0.02, np.nan, 0.15])
    assert metrics.ndcg_against(frame, np.nan_to_num(gains), gains) == pytest.approx(1.0)  # the oracle
    reverse = -np.nan_to_num(gains)
    expected = metrics.ndcg_at_k(np.delete(gains, 6), np.delete(reverse, 6), ["a"] * 4 + ["b"] * 3)
    assert metrics.ndcg_against(frame, reverse, gains) == pytest.approx(expected) and expected < 0.8
    assert metrics.ndcg_against(frame, np.ones(8), gains) < 1.0  # a constant scorer: a random ranking's NDCG
    assert math.isnan(metrics.ndcg_against(frame, np.ones(8), np.full(8, np.nan)))
    with pytest.raises(ValueError, match="7 gains for 8 rows"):
        metrics.ndcg_against(frame, np.ones(8), gains[:7])


def _simulated_hours() -> pd.DataFrame:
    """Two simulated hours, as the lake holds them (title and category joined): no warehouse."""
    from incremental.sim import simulate

    start = datetime(2026, 1, 1, tzinfo=UTC)
    products, impressions, _ = simulate.generate(start, start.replace(hour=2), rate=120, seed=3, scenario="drift",
                                                 drift_at=start.replace(hour=1))
    rows = impressions.select(list(simulate.IMPRESSION_COLUMNS)).to_pandas()  # what the warehouse gets
    assert "relevance" not in rows
    return rows.merge(products.to_pandas()[["product_id", "title", "category"]], on="product_id", how="left")


def test_the_oracle_ranks_by_the_simulators_hidden_relevance_and_scores_1_the_lexical_arm_less() -> None:
    from benchmarks.continual import truth as continual_truth
    from incremental.sim.traffic import REL_ATTRIBUTE_BONUS, REL_CATEGORY, REL_EXACT, REL_UNRELATED

    start = datetime(2026, 1, 1, tzinfo=UTC)
    table = continual_truth.simulator_truth(start, start.replace(hour=2), rate=120, seed=3, scenario="drift",
                                            drift_at=start.replace(hour=1))
    truth = continual_truth.Truth(table)
    frame = _simulated_hours().sample(frac=1.0, random_state=0)  # lookup follows the frame's order
    gains = truth.gains(frame)
    assert np.isfinite(gains).all() and set(np.round(gains, 6)) <= {
        REL_UNRELATED, REL_CATEGORY, REL_EXACT, round(REL_EXACT + REL_ATTRIBUTE_BONUS, 6)}
    oracle = step.prequential(frame, step.reference_scores(continual.ARMS["oracle"], frame, gains, set()), gains,
                              calibrated=False)
    assert oracle["truth_ndcg@10"] == pytest.approx(1.0) and oracle["truth_rows"] == len(frame)
    assert oracle["auc"] > 0.6 and oracle["logloss"] is None and oracle["ece"] is None
    titles = continual_truth.titles_of(frame)
    lexical = step.prequential(frame, step.reference_scores(continual.ARMS["lexical"], frame, gains, titles), gains,
                               calibrated=False)
    assert 0.3 < lexical["truth_ndcg@10"] < 1.0
    # a row the truth does not know is left out of truth NDCG, not counted as irrelevant
    unknown = continual_truth.Truth(table.iloc[1:]).gains(frame)
    assert np.isnan(unknown).sum() == 1


def test_the_judgment_truth_is_the_grade_normalised_as_the_clicks_were_drawn(settings) -> None:  # noqa: ANN001
    from benchmarks.continual import truth as continual_truth
    from incremental.data.warehouse import Warehouse
    from incremental.sim.judgments import import_judgments

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "judgments_small.csv"
    cols = {"query_col": "search", "title_col": "product_name", "grade_col": "score", "encoding": "latin-1"}
    start = datetime(2024, 5, 1, tzinfo=UTC)
    warehouse = Warehouse(settings.warehouse_url)
    import_judgments(warehouse, fixture, start=start, rate=10, seed=0, **cols)
    rows = warehouse.query_arrow("extract_search_logs", {"start": start, "end": start.replace(day=3)}).to_pandas()
    gains = continual_truth.Truth(continual_truth.judgment_truth(fixture, **cols)).gains(rows)
    grades = pd.read_csv(fixture, encoding="latin-1").groupby(["search", "product_name"])["score"].mean()
    lo, hi = grades.min(), grades.max()
    expected = [(grades[(q.strip(), t.strip())] - lo) / (hi - lo) for q, t in zip(rows["query"], rows["title"],
                                                                                  strict=True)]
    assert np.isfinite(gains).all() and gains == pytest.approx(expected)
    assert metrics.ndcg_against(rows, gains, gains) == pytest.approx(1.0)


def test_summary_and_table_carry_truth_ndcg_before_and_after_the_drift() -> None:
    records = _records()
    for i, rec in enumerate(records):
        rec["prequential"]["truth_ndcg@10"] = {"frozen": 0.6, "gated": 0.7, "full_retrain": 0.75}[rec["arm"]] + i / 100
    records += [_record("oracle", h, 0.9, auc=0.85) for h in HOURS]
    for rec in records[-5:]:
        rec["prequential"]["truth_ndcg@10"] = 1.0
    summary = continual.summarize(records, ("frozen", "gated", "full_retrain", "oracle"), HOURS, drift_hour=HOURS[2])
    gated, oracle = summary["arms"]["gated"], summary["arms"]["oracle"]
    gated_truth = [0.7 + i / 100 for i, r in enumerate(records[:15]) if r["arm"] == "gated"]
    assert gated["truth_ndcg@10"] == pytest.approx(np.mean(gated_truth))
    assert gated["truth_ndcg@10_before_drift"] == pytest.approx(np.mean(gated_truth[:2]))
    assert gated["truth_ndcg@10_after_drift"] == pytest.approx(np.mean(gated_truth[2:]))
    assert oracle["truth_ndcg@10"] == oracle["truth_ndcg@10_after_drift"] == 1.0
    table = continual.summary_table(summary)
    assert "| arm | truth NDCG@10 | truth NDCG@10 before drift | truth NDCG@10 after drift |" in table
    assert "| oracle | 1.000 | 1.000 | 1.000 |" in table
    no_truth = continual.summarize(_records(), ("gated",), HOURS, drift_hour=None)
    assert no_truth["arms"]["gated"]["truth_ndcg@10"] is None  # a run without truth: n/a, not an error


def test_arms_are_compared_on_the_truth_paired_over_sessions_with_an_interval() -> None:
    from benchmarks.continual import report
    from benchmarks.continual import truth as continual_truth

    rng = np.random.default_rng(0)
    sessions = np.repeat([f"s{i}" for i in range(60)], 10)
    frame = pd.DataFrame({"session_id": sessions, "query": "drill"})
    gains = rng.choice([0.02, 0.15, 0.7], size=len(frame))
    gains[:10] = np.nan  # a session the truth does not know: left out
    oracle = np.nan_to_num(gains)
    noisy = oracle + rng.normal(0, 0.3, len(frame))
    good, same = continual_truth.group_ndcg(frame, oracle, gains), continual_truth.group_ndcg(frame, noisy, gains)
    assert len(good["ndcg"]) == 59 and "s0" not in good["sessions"] and np.allclose(good["ndcg"], 1.0)
    better = continual_truth.paired_truth([good, None], [same, same])  # an hour one arm did not score: skipped
    assert better["lo"] > 0 and better["groups"] == 59
    assert better["diff"] == pytest.approx(1.0 - np.mean(same["ndcg"]))
    level = continual_truth.paired_truth([same], [same])
    assert level["diff"] == level["lo"] == level["hi"] == 0.0
    # in the summary: each model arm against the floor and the reference, all hours and either side of the drift
    records = []
    for h in HOURS:
        for arm, groups in (("gated", same), ("lexical", same), ("full_retrain", good)):
            rec = _record(arm, h, 0.7)
            rec["prequential"]["truth_groups"] = groups
            records.append(rec)
    summary = continual.summarize(records, ("gated", "lexical", "full_retrain"), HOURS, drift_hour=HOURS[2])
    paired = summary["truth_paired"]
    assert set(paired) == {"gated", "full_retrain"} and set(paired["gated"]) == {"lexical", "full_retrain"}
    assert paired["gated"]["lexical"]["all"]["diff"] == 0.0
    assert paired["gated"]["full_retrain"]["after_drift"]["hi"] < 0 and paired["gated"]["full_retrain"]["all"]["groups"] == 5 * 59
    table = "\n".join(report.paired_table(summary))
    assert "| gated | full_retrain |" in table and "| full_retrain | lexical |" in table
    # an --arm-config arm (a variant of the production pipeline) is also paired with the gated arm
    for h in HOURS:
        rec = _record("no_hold", h, 0.7)
        rec["prequential"]["truth_groups"] = good
        records.append(rec)
    variant = continual.summarize(records, ("gated", "lexical", "no_hold"), HOURS, drift_hour=HOURS[2])["truth_paired"]
    assert set(variant["no_hold"]) == {"lexical", "gated"} and set(variant["gated"]) == {"lexical"}
    assert variant["no_hold"]["gated"]["all"]["lo"] > 0
    # ... or with the arm named by --pair-with (variants of another variant: gated need not run)
    for h in HOURS:
        rec = _record("no_hold_no_replay", h, 0.7)
        rec["prequential"]["truth_groups"] = same
        records.append(rec)
    nested = continual.summarize(records, ("lexical", "no_hold", "no_hold_no_replay"), HOURS, drift_hour=HOURS[2],
                                 pair_with="no_hold")
    assert set(nested["truth_paired"]["no_hold_no_replay"]) == {"lexical", "no_hold"}
    assert nested["truth_paired"]["no_hold_no_replay"]["no_hold"]["all"]["hi"] < 0
    assert "minus the no_hold arm's" in "\n".join(report.paired_table(nested))
