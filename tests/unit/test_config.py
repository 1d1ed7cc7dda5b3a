"""Settings: environment overrides, the reviewed YAML file, unknown keys rejected, frozen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pydantic
import pytest

from incremental.config import DEFAULT_CONFIG_FILE, SettingsError, dag_start, load_settings


def test_embedded_defaults_live_under_home(tmp_path: Path) -> None:
    s = load_settings({"INCREMENTAL_HOME": str(tmp_path)})
    assert s.warehouse_url == f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    assert s.lake == tmp_path / "lake"
    assert s.mlflow_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert s.mlflow_artifacts == tmp_path / "mlartifacts"
    assert s.base_model == "minilm" and s.model_name == "search-ranker"
    assert s.config_file == DEFAULT_CONFIG_FILE  # the reviewed file at the repository root
    assert s.mlflow_ui_url == "http://127.0.0.1:5000" and s.serve_urls == ()
    assert s.dag_start == datetime(2026, 1, 1, tzinfo=UTC) and s.alert_webhook is None


def test_the_settings_read_outside_the_pipeline_are_settings_too(tmp_path: Path) -> None:
    """The MLflow UI's address, the serving replicas and the DAGs' start (before: read from the
    environment by links.py, the deploy DAG and the DAG files themselves)."""
    s = load_settings({"INCREMENTAL_HOME": str(tmp_path), "INCREMENTAL_MLFLOW_UI_URL": "https://mlflow.example/",
                       "INCREMENTAL_SERVE_URLS": " http://a:8000/, http://b:8000 ,",
                       "INCREMENTAL_DAG_START": "2026-03-01T05:00:00+02:00"})
    assert s.mlflow_ui_url == "https://mlflow.example"
    assert s.serve_urls == ("http://a:8000", "http://b:8000")
    assert s.dag_start == datetime(2026, 3, 1, 5, tzinfo=timezone(timedelta(hours=2)))
    # the DAG files read the start alone at parse time; without an offset it is UTC
    assert dag_start({"INCREMENTAL_DAG_START": "2026-02-01T00:00"}) == datetime(2026, 2, 1, tzinfo=UTC)
    for name, bad in (("INCREMENTAL_DAG_START", "yesterday"), ("INCREMENTAL_SERVE_URLS", "serving:8000")):
        with pytest.raises(SettingsError, match=name):
            load_settings({"INCREMENTAL_HOME": str(tmp_path), name: bad})


def test_environment_overrides(tmp_path: Path) -> None:
    s = load_settings({
        "INCREMENTAL_HOME": str(tmp_path),
        "INCREMENTAL_WAREHOUSE_URL": "postgresql://postgres@127.0.0.1/test",
        "INCREMENTAL_LAKE": str(tmp_path / "elsewhere"),
        "INCREMENTAL_MLFLOW_URI": "http://mlflow:5000",
        "INCREMENTAL_BASE_MODEL": "tiny",
    })
    assert s.warehouse_url.startswith("postgresql://") and s.lake == tmp_path / "elsewhere"
    assert s.mlflow_uri == "http://mlflow:5000" and s.base_model == "tiny"


def test_yaml_values_apply_and_unknown_keys_are_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("training:\n  learning_rate: 0.001\ngate:\n  min_holdout_auc: 0.6\n")
    s = load_settings({"INCREMENTAL_HOME": str(tmp_path), "INCREMENTAL_CONFIG": str(good)})
    assert s.training.learning_rate == 0.001 and s.gate.min_holdout_auc == 0.6
    assert s.training.batch_size == 32  # untouched keys keep their defaults

    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  learnin_rate: 0.001\n")
    with pytest.raises(SettingsError, match=r"training\.learnin_rate"):
        load_settings({"INCREMENTAL_HOME": str(tmp_path), "INCREMENTAL_CONFIG": str(bad)})
    bad.write_text("gate:\n  min_holdout_auc: lots\n")
    with pytest.raises(SettingsError, match=r"gate\.min_holdout_auc"):
        load_settings({"INCREMENTAL_HOME": str(tmp_path), "INCREMENTAL_CONFIG": str(bad)})
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings({"INCREMENTAL_CONFIG": str(tmp_path / "missing.yaml")})


def test_settings_are_frozen_and_overrides_are_validated(tmp_path: Path) -> None:
    s = load_settings({"INCREMENTAL_HOME": str(tmp_path)})
    with pytest.raises(pydantic.ValidationError):
        s.base_model = "tiny"  # type: ignore[misc]
    assert s.with_training(learning_rate=0.1).training.learning_rate == 0.1
    # a bad manual override is a settings error naming the key (it would fail again: no task retry)
    with pytest.raises(SettingsError, match="training.optimizer"):
        s.with_training(optimizer="adagrad")
    with pytest.raises(SettingsError, match="training.no_such_setting"):
        s.with_training(no_such_setting=1)


def test_the_reviewed_file_loads() -> None:
    s = load_settings({"INCREMENTAL_HOME": "var"})
    assert s.gate.max_anchor_auc_drop > 0 and s.training.replay_fraction > 0 and s.training.l2sp_strength > 0
