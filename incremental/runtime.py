"""The one place where a process of the pipeline sets its environment: `prepare_process`, called
once at the process's edge, before any work: the CLI (`incremental.cli.main`, so also
`incremental serve`), each Airflow task (`dags/search_ranker_common.fail_fast`) and the test
session (`tests/conftest.py`). No module of the package changes the environment when it is
imported or used.

What is not here, because the libraries take it as an option:

* **No network for model weights**: every Hugging Face load passes `local_files_only=True`
  (`incremental.model.ranker`), whatever HF_HUB_OFFLINE says.
* **Great Expectations**: analytics off and progress bars off in the context's own config
  (`incremental.validation.gx_suite._context`).
* Log levels of chatty libraries are set where each is first used (`model._quiet`,
  `tracking._quiet`, `validate_gx._quiet_gx`): a library configures its loggers when imported,
  which would undo an earlier setting.
"""

from __future__ import annotations

from typing import Any

# How long a registry call of a serving process may take: MLflow's client retries 7 times with
# backoff by default, so a /reload while the registry was down answered after 246 s (a concurrent
# one after 487 s). A replica must fail fast and keep serving what it has.
SERVING_REGISTRY_RETRIES, SERVING_REGISTRY_TIMEOUT_S = 2, 10


def prepare_process(*, serving: bool = False) -> None:
    """Set this process's MLflow options (MLflow reads them from its environment variables, through
    `mlflow.environment_variables`); an operator's own setting of any of them wins.

    Every process: no artifact progress bars in CLI output and task logs (they are not errors).
    A serving process (`serving=True`): registry calls bounded to `SERVING_REGISTRY_RETRIES`
    retries of `SERVING_REGISTRY_TIMEOUT_S` seconds each."""
    from mlflow import environment_variables as mlflow_env

    _default(mlflow_env.MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR, "false")
    if serving:
        _default(mlflow_env.MLFLOW_HTTP_REQUEST_MAX_RETRIES, SERVING_REGISTRY_RETRIES)
        _default(mlflow_env.MLFLOW_HTTP_REQUEST_TIMEOUT, SERVING_REGISTRY_TIMEOUT_S)


def _default(variable: Any, value: object) -> None:
    """`variable` (one of `mlflow.environment_variables`) set to `value` unless it is set already."""
    if not variable.is_set():
        variable.set(value)
