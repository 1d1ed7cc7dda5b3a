"""Links into MLflow's UI: one builder for the pipeline's task results and the Airflow plugin.

Imports nothing heavy (the plugin loads it in every Airflow process). Every link starts at
`ui_url`, where a person's browser reaches MLflow's UI (`Settings.mlflow_ui_url`, from
`INCREMENTAL_MLFLOW_UI_URL`), which may differ from the tracking URI the code writes to.
"""

from __future__ import annotations

from urllib.parse import quote


def run_url(ui_url: str, run_id: str, experiment_id: str | None = None) -> str:
    """A run's page; without its experiment, MLflow's direct run route (it finds the experiment)."""
    where = f"experiments/{quote(str(experiment_id))}/" if experiment_id is not None else ""
    return f"{ui_url.rstrip('/')}/#/{where}runs/{quote(str(run_id))}"


def model_url(ui_url: str, model_name: str) -> str:
    """The registered model's page: its versions, aliases and tags (the model review)."""
    return f"{ui_url.rstrip('/')}/#/models/{quote(model_name)}"


def model_version_url(ui_url: str, model_name: str, version: str | int) -> str:
    return f"{model_url(ui_url, model_name)}/versions/{quote(str(version))}"
