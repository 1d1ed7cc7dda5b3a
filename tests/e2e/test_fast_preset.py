"""The fast preset must learn the simulator's signal, and its first model is judged against BM25.

Since the gate judges a first model against a BM25 floor fitted on its own hours, 150 steps of the
fast preset on three hours no longer pass: they learn (holdout AUC above chance, on rows early
stopping never saw) but rank below word overlap (CI: NDCG@10 0.605 against 0.730). The test checks
that it learns and that the decision follows the checks.

The random `tiny` model does not learn the simulator's clicks (`simulate --rate 1500 --seed 5`, three
hours, `bootstrap`: holdout AUC 0.50, rejected). Real parts throughout: the simulator writes into
DuckDB, extraction and GX validation write the lake, `incremental bootstrap` (the CLI) trains,
evaluates against the value thresholds of the reviewed incremental.yaml and registers. The reviewed
training settings too, except the number of steps (SMALL, below) to keep it short on a busy CPU.

The fast preset reads MiniLM's first two layers by mean pooling (`model.MeanPoolRanker`): a
[CLS] head on the same cut model stopped at holdout AUC 0.52-0.54 here, where `minilm` reaches 0.82.
"""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from pathlib import Path

import pytest
import yaml

from incremental import pipeline
from incremental.cli import main
from incremental.config import DEFAULT_CONFIG_FILE, load_settings
from incremental.data.warehouse import Warehouse
from incremental.hours import Hour
from incremental.registry.history import history
from incremental.sim.simulate import simulate

pytestmark = pytest.mark.slow
T0 = Hour(2026, 1, 1, 0, tzinfo=UTC)
HOURS = 3
# The reviewed file with fewer bootstrap steps; everything else (learning rate, batch, gate) as reviewed.
SMALL = {"bootstrap_steps": 150, "eval_every": 50, "checkpoint_every": 50}


def test_fast_preset_learns_on_the_simulator_and_is_judged_against_the_lexical_floor(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    config = yaml.safe_load(DEFAULT_CONFIG_FILE.read_text())
    config["training"].update(SMALL)
    (home.parent / "fast.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("INCREMENTAL_CONFIG", str(home.parent / "fast.yaml"))
    monkeypatch.setenv("INCREMENTAL_BASE_MODEL", "minilm-l2")
    settings = load_settings()
    # the reviewed gate, not a permissive one: a first model is judged against BM25 on its own hours
    assert settings.gate.min_holdout_auc >= 0.5 and settings.gate.max_holdout_ece <= 0.15

    simulate(Warehouse(settings.warehouse_url), T0, T0 + timedelta(hours=HOURS), rate=1500, seed=5)
    for h in range(HOURS):
        pipeline.extract_step(settings, T0 + timedelta(hours=h))
        assert pipeline.validate_step(settings, T0 + timedelta(hours=h)).validated

    end = T0 + timedelta(hours=HOURS)
    assert main(["bootstrap", "--start", T0.isoformat(), "--end", end.isoformat(), "--anchor-size", "1000"]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "version 1" in out, out
    evaluation = json.loads(next((settings.home / "evaluations").glob("*.json")).read_text())
    checks = {c["name"]: c for c in evaluation["decision"]["checks"]}
    floor = checks["holdout_vs_lexical_floor"]
    assert "against the lexical floor's" in floor["detail"], floor
    # 150 steps on 3 hours learn (above chance on rows no step was chosen on: early stopping has its
    # own sessions) but not enough to beat word overlap: measured in CI, holdout NDCG@10 0.605 against
    # BM25's 0.730, rejected by the floor. The decision follows the checks, whichever way it goes.
    (version,) = history(settings)
    print(version)
    assert float(version["holdout_auc"]) > 0.55, version
    assert (version["decision"] == "approved") == all(c["passed"] for c in checks.values()), checks
