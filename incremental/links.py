"""Links into MLflow's UI: one builder for the pipeline's task results and the Airflow plugin.

Imports nothing heavy (the plugin loads it in every Airflow process). `INCREMENTAL_MLFLOW_UI_URL`
(default http://127.0.0.1:5000) is where the UI is: the address a person's browser reaches, which
may differ from the tracking URI the code writes to.
"""

from __future__ import annotations

import os
from urllib.parse import quote

MLFLOW_UI_URL_ENV = "INCREMENTAL_MLFLOW_UI_URL"
DEFAULT_MLFLOW_UI_URL = "http://127.0.0.1:5000"


def mlflow_ui_url() -> str:
    return os.environ.get(MLFLOW_UI_URL_ENV, DEFAULT_MLFLOW_UI_URL).rstrip("/")


def run_url(run_id: str, experiment_id: str | None = None) -> str:
    """A run's page; without its experiment, MLflow's direct run route (it finds the experiment)."""
    where = f"experiments/{quote(str(experiment_id))}/" if experiment_id is not None else ""
    return f"{mlflow_ui_url()}/#/{where}runs/{quote(str(run_id))}"


def model_url(model_name: str) -> str:
    """The registered model's page: its versions, aliases and tags (the model review)."""
    return f"{mlflow_ui_url()}/#/models/{quote(model_name)}"


def model_version_url(model_name: str, version: str | int) -> str:
    return f"{model_url(model_name)}/versions/{quote(str(version))}"
