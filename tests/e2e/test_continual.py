"""`python -m benchmarks.continual` end to end: the small preset's drift scenario, every arm.

The tiny model (plumbing only: it does not learn the simulator's signal) and fewer steps keep it
to a few minutes on 2 cores; the arms, the homes, the pipeline calls, the scoring and the files
are those of the real run (`--model minilm-l2`, the preset's default, for figures).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from benchmarks import continual
from benchmarks.continual.__main__ import run as run_benchmark

TINY_CONFIG = Path(__file__).resolve().parents[1] / "tiny.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("continual")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INCREMENTAL_HOME", str(root / "unused-home"))
        for name in ("INCREMENTAL_WAREHOUSE_URL", "INCREMENTAL_LAKE", "INCREMENTAL_MLFLOW_URI", "INCREMENTAL_CONFIG"):
            mp.delenv(name, raising=False)
        code = run_benchmark(["--preset", "small", "--scenario", "drift", "--model", "tiny",
                     "--config", str(TINY_CONFIG), "--max-steps", "5", "--bootstrap-steps", "10",
                     "--out", str(root / "out"), "--work", str(root / "work")])
    assert code == 0
    name = "continual-small-drift"
    return {"root": root, "out": root / "out", "name": name,
            "result": json.loads((root / "out" / f"{name}.json").read_text())}


def test_the_small_preset_writes_json_summary_and_charts(run: dict) -> None:
    out, name, result = run["out"], run["name"], run["result"]
    for suffix in ("-ndcg.png", "-cost.png", "-truth.png"):
        assert (out / f"{name}{suffix}").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / f"{name}.md").read_text()
    assert "| arm | truth NDCG@10 | truth NDCG@10 before drift | truth NDCG@10 after drift | NDCG@10 | AUC |" in md
    assert "(drift)" in md and f"{name}-ndcg.png" in md and f"{name}-truth.png" in md
    assert "## Truth NDCG@10 per hour" in md
    assert result["stamp"]["commit"] and result["stamp"]["model"] == "tiny"
    assert result["plan"]["training"] == {"max_steps": 5, "bootstrap_steps": 10}
    arms, hours = result["plan"]["arms"], result["summary"]["hours"]
    assert arms == ["frozen", "naive", "gated", "full_retrain", "lexical", "oracle"] and len(hours) == 4
    assert len(result["records"]) == len(arms) * len(hours)
    for rec in result["records"]:
        pre = rec["prequential"]
        assert pre["rows"] > 0 and {"auc", "ndcg@10", "logloss", "ece", "per_category"} <= set(pre)
        assert rec["anchor_auc_per_category"] and "peak_rss_mb" in rec and rec["pages"] == 0
        # truth NDCG@10 for every arm and hour, the truth knowing every row
        assert 0 < pre["truth_ndcg@10"] <= 1 + 1e-9 and pre["truth_rows"] == pre["rows"]
        assert "truth_groups" not in pre  # used for the paired comparisons, not kept in the file
    paired = result["summary"]["truth_paired"]  # every model arm against the floor and the reference
    assert set(paired) == {"frozen", "naive", "gated", "full_retrain"} and set(paired["gated"]) == {"lexical", "full_retrain"}
    assert all(f["lo"] <= f["diff"] <= f["hi"] and f["groups"] > 0 for f in paired["gated"]["lexical"].values())
    assert "| gated | lexical |" in md
    summary = result["summary"]["arms"]
    assert set(summary) == set(arms) and summary["full_retrain"]["recovery_hours"] == 0
    # forgetting measured on a probe of pre-drift hours no arm trains on, with its interval; the
    # frozen arm serves one model throughout: it forgets nothing, exactly
    probe = result["probe"]
    assert probe["rows"] > 0 and probe["hours"] == 3 and probe["categories"] == result["summary"]["unchanged_categories"]
    assert summary["frozen"]["unchanged_forgetting_probe"]["drop"] == 0.0
    for arm in ("frozen", "naive", "gated", "full_retrain"):  # the arms with a model
        figures = summary[arm]["unchanged_forgetting_probe"]
        assert figures["lo"] <= figures["drop"] <= figures["hi"] and set(figures["per_category"]) == set(probe["categories"])
    assert "forgetting on the probe (90% interval)" in md and "Forgetting on the probe:" in md
    cost = result["summary"]["cost_ratio_gated_vs_full_retrain"]
    # an update: 5 steps; the last full retrain: at least 10, and at least one pass over every hour so far
    assert 0 < cost["examples"] <= 0.5


def test_truth_ndcg_with_the_oracle_at_1_and_the_lexical_floor(run: dict) -> None:
    result = run["result"]
    truth = result["truth"]
    assert truth["keys"] == ["event_id"] and truth["rows"] == 6 * 300 and Path(truth["file"]).is_file()
    assert Path(truth["file"]).parent == run["root"] / "work"  # the benchmark's own folder, not a lake
    summary = result["summary"]["arms"]
    for arm, s in summary.items():
        for key in ("truth_ndcg@10", "truth_ndcg@10_before_drift", "truth_ndcg@10_after_drift"):
            assert s[key] is not None and 0 < s[key] <= 1 + 1e-9, (arm, key)
    by_arm = {a: [r for r in result["records"] if r["arm"] == a] for a in ("oracle", "lexical")}
    for r in by_arm["oracle"]:  # the ceiling: truth NDCG@10 is 1 by construction
        assert r["prequential"]["truth_ndcg@10"] == pytest.approx(1.0)
        assert r["served_version"] is None and r["examples"] == 0 and r["prequential"]["logloss"] is None
    # the lexical arm's IDF: the distinct titles of the validated hours before the one it scores
    fitted = [r["fitted_titles"] for r in by_arm["lexical"]]
    assert fitted == sorted(fitted) and fitted[0] > 0
    assert all(summary["oracle"]["truth_ndcg@10"] >= s["truth_ndcg@10"] - 1e-9 for s in summary.values())
    # the oracle and lexical arms have no home, no MLflow and no config of their own
    assert not (run["root"] / "work" / "arms" / "oracle").exists() and "oracle" not in result["configs"]


def test_each_arm_learns_its_own_way_in_its_own_home(run: dict) -> None:
    records = run["result"]["records"]
    by_arm = {a: [r for r in records if r["arm"] == a] for a in ("frozen", "naive", "gated", "full_retrain")}
    assert {r["served_version"] for r in by_arm["frozen"]} == {"1"}  # the bootstrap, never updated
    for arm in ("naive", "full_retrain"):  # always served: a new champion every hour
        assert all(r["promoted"] and r["champion_after"] == r["version"] for r in by_arm[arm])
        assert [r["served_version"] for r in by_arm[arm]] == ["1", "2", "3", "4"]
    for r in by_arm["gated"]:  # the gate decides; nothing is forced
        assert not r["overridden"] and r["promoted"] == (r["decision"] == "approved")
    work = run["root"] / "work"
    for arm in by_arm:
        with sqlite3.connect(work / "arms" / arm / "mlflow.db") as con:
            uris = [row[0] for row in con.execute("select artifact_uri from runs")]
        assert uris and all(str(work / "arms" / arm) in uri for uri in uris)  # no path into another home


def test_every_hour_was_scored_by_a_model_trained_only_on_earlier_hours(run: dict) -> None:
    plan = continual.Plan(**{**run["result"]["plan"], "arms": tuple(run["result"]["plan"]["arms"])})
    records = run["result"]["records"]
    assert continual.verify_lineage(plan, records) == []
    for rec in records:
        if rec.get("scorer"):  # the oracle and lexical arms serve no model: nothing trained, no lineage
            assert rec["served_version"] is None and rec["served_trained_through"] is None
            continue
        assert datetime.fromisoformat(rec["served_trained_through"]) <= datetime.fromisoformat(rec["hour"])
    # the check does catch a model that had seen the hour it scores
    late = next(r for r in records if r["arm"] == "naive" and r["served_version"] == "3")
    moved = {**late, "hour": (datetime.fromisoformat(late["hour"]) - timedelta(hours=1)).isoformat()}
    problems = continual.verify_lineage(plan, [moved])
    assert problems and "naive" in problems[0]
