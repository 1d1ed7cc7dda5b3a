"""Links into MLflow's UI: one builder for the task results and the Airflow plugin."""

from __future__ import annotations

import pytest

from incremental import links


def test_links_follow_the_ui_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(links.MLFLOW_UI_URL_ENV, "https://mlflow.example/")
    assert links.run_url("abc", "3") == "https://mlflow.example/#/experiments/3/runs/abc"
    assert links.run_url("abc") == "https://mlflow.example/#/runs/abc"
    assert links.model_url("search ranker") == "https://mlflow.example/#/models/search%20ranker"
    assert links.model_version_url("search-ranker", 7) == "https://mlflow.example/#/models/search-ranker/versions/7"
    monkeypatch.delenv(links.MLFLOW_UI_URL_ENV)
    assert links.model_url("m") == "http://127.0.0.1:5000/#/models/m"
