"""Links into MLflow's UI: one builder for the task results and the Airflow plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from incremental.config import load_settings
from incremental.registry import links


def test_links_follow_the_ui_url(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCREMENTAL_MLFLOW_UI_URL", "https://mlflow.example/")
    ui = load_settings().mlflow_ui_url
    assert ui == "https://mlflow.example"
    assert links.run_url(ui, "abc", "3") == "https://mlflow.example/#/experiments/3/runs/abc"
    assert links.run_url(ui, "abc") == "https://mlflow.example/#/runs/abc"
    assert links.model_url(ui, "search ranker") == "https://mlflow.example/#/models/search%20ranker"
    assert links.model_version_url(ui, "search-ranker", 7) == "https://mlflow.example/#/models/search-ranker/versions/7"
    monkeypatch.delenv("INCREMENTAL_MLFLOW_UI_URL")
    assert links.model_url(load_settings().mlflow_ui_url, "m") == "http://127.0.0.1:5000/#/models/m"
