"""What travels between the hourly DAG's tasks: lake keys, run ids, URIs and small JSON, never a
local path, and each stage reads what it needs back by URI (so `train` on a GPU worker and
`evaluate`/`register` on CPU workers need no shared disk). Plumbing only: the tiny model."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest

from incremental import pipeline, retrain
from incremental.config import load_settings
from incremental.data.warehouse import Warehouse
from incremental.handover import Evaluated, Monitored, Registered, Trained
from incremental.hours import Hour
from incremental.judge import verdict
from incremental.sim.simulate import simulate

T0 = Hour(2026, 6, 1, 0, tzinfo=UTC)
TINY_CONFIG = Path(__file__).resolve().parents[1] / "tiny.yaml"


def local_paths(value: Any, home: Path) -> list[str]:
    """Every string in a task's return value that names a file or folder on this machine."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in local_paths(v, home)]
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in local_paths(v, home)]
    if isinstance(value, str) and (os.path.isabs(value) or str(home) in value or value.startswith("file:")):
        return [value]
    return []


def test_tasks_hand_over_uris_not_local_paths(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCREMENTAL_CONFIG", str(TINY_CONFIG))
    settings = load_settings()
    simulate(Warehouse(settings.warehouse_url), T0, T0 + timedelta(hours=4), rate=300, seed=3)
    returned = {}  # what each task's XCom carries: the stage's result as JSON (`to_dict()`)
    for h in range(3):
        returned[f"extract{h}"] = pipeline.extract_step(settings, T0 + timedelta(hours=h)).to_dict()
        returned[f"validate{h}"] = pipeline.validate_step(settings, T0 + timedelta(hours=h)).to_dict()
    returned["full_retrain"] = retrain.full_retrain(settings, T0, T0 + timedelta(hours=3), anchor_size=200).to_dict()
    hour = T0 + timedelta(hours=3)
    returned["extract"] = pipeline.extract_step(settings, hour).to_dict()
    returned["validate"] = pipeline.validate_step(settings, hour).to_dict()
    monitored = pipeline.monitor_step(settings, hour)
    returned["monitor"] = monitored.to_dict()
    # each task takes the previous one's XCom back (`from_dict`), as the DAG's tasks do
    trained = pipeline.train_step(settings, hour, Monitored.from_dict(json.loads(json.dumps(returned["monitor"]))))
    returned["train"] = trained.to_dict()
    assert Trained.from_dict(json.loads(json.dumps(returned["train"]))) == trained
    # evaluate and register on "another worker": nothing that train left on this disk is used
    shutil.rmtree(settings.home / "candidates")
    shutil.rmtree(settings.home / "holdout")
    shutil.rmtree(settings.home / "evaluations", ignore_errors=True)
    evaluation = verdict.evaluate_step(settings, hour, Trained.from_dict(returned["train"]))
    returned["evaluate"] = evaluation.to_dict()
    assert Evaluated.from_dict(json.loads(json.dumps(returned["evaluate"]))) == evaluation
    shutil.rmtree(settings.home / "evaluations")
    registered = verdict.register_step(settings, hour, Trained.from_dict(returned["train"]),
                                        Evaluated.from_dict(returned["evaluate"]))
    returned["register"] = registered.to_dict()
    assert Registered.from_dict(json.loads(json.dumps(returned["register"]))) == registered
    returned["catch_up"] = retrain.catch_up_step(settings, hour).to_dict()
    json.dumps(returned)  # small JSON
    assert {k: local_paths(v, settings.home) for k, v in returned.items() if local_paths(v, settings.home)} == {}
    assert trained.holdout_uri is not None and trained.holdout_uri.startswith(f"runs:/{trained.run_id}/")
    assert evaluation.evaluation_uri == f"runs:/{trained.run_id}/evaluation/evaluation.json"
    assert registered.version == "2" and returned["extract"]["lake_key"].startswith("records/search_logs/")
    assert trained.drift == monitored.context  # train used what monitor handed it


def test_the_check_itself_finds_local_paths(tmp_path: Path) -> None:
    assert local_paths({"a": [{"b": "/tmp/x"}], "c": "runs:/1/model"}, tmp_path) == ["/tmp/x"]
    assert local_paths({"lake_key": "search_logs/dt=2026-06-01/hour=03"}, tmp_path) == []
