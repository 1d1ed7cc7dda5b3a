"""Task processes that start warm: the pipeline's modules imported once, in the process that forks
the tasks, instead of once per task.

Airflow 3 runs every task in a process of its own, forked (on Linux) from a long-lived worker: the
LocalExecutor's worker processes, forked from the scheduler; a Celery worker's pool processes. The
hourly DAG's tasks import the stage they run inside their body (the DAG file stays cheap to parse),
so in a cold process monitor, train and evaluate each paid the model code's imports again (torch,
transformers, MLflow: 5-7 s on 2 cores), validate paid Great Expectations' (3 s), register
MLflow's and matplotlib's. Imported once before the fork, they are inherited by every task.

* **LocalExecutor**: `AIRFLOW__CORE__EXECUTOR=search_ranker_preload.PreloadedLocalExecutor` (the
  default of scripts/airflow_env.sh: the demo, `make airflow`, `tests/e2e/test_backfill.py`). Its
  `start()` imports `PRELOAD` in the scheduler, then forks its workers as the LocalExecutor does.
  The scheduler holds them in memory (0.9 GB resident in the demo; its workers share those pages).
* **CeleryExecutor**: `AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=search_ranker_preload.CELERY_CONFIG`
  (docker-compose, `tests/e2e/test_distributed_pipeline.py`): Airflow's Celery configuration with
  Celery's own `imports` setting, which a worker imports at start, before it forks its pool.

Nothing runs torch before the fork (importing it starts no thread), so the forked tasks train as
a cold process does. Where processes are spawned rather than forked (macOS), nothing is inherited
and nothing changes. The plugins folder is on every Airflow process's path, and the plugin manager
imports this file in each: it imports nothing heavy at import time.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

from airflow.executors.local_executor import LocalExecutor

log = logging.getLogger(__name__)

# What the hourly DAG's task bodies import (dags/search_ranker_common.py), and the libraries those
# modules import only inside the functions that use them (tests/dags/test_dag_integrity.py checks
# that none is missing).
PRELOAD = (
    "incremental.pipeline",
    "incremental.retrain",
    "incremental.model.update",         # torch, transformers, MLflow: monitor, train, evaluate
    "incremental.judge.evaluate",
    "incremental.registry.champion",
    "incremental.registry.review",      # matplotlib: register's review charts
    "incremental.validation.validate",
    "great_expectations",               # validate (imported in incremental.validation.gx_suite's functions)
    "duckdb",                           # the embedded warehouse (extract)
)


def preload() -> None:
    """Import `PRELOAD` (a second call finds them imported and costs nothing)."""
    started = time.monotonic()
    for name in PRELOAD:
        importlib.import_module(name)
    log.info("preloaded the pipeline's modules for the tasks to inherit in %.1f s", time.monotonic() - started)


class PreloadedLocalExecutor(LocalExecutor):
    """The LocalExecutor, with the pipeline's modules imported before it forks its workers."""

    def start(self) -> None:
        preload()
        super().start()


def __getattr__(name: str) -> Any:
    """`CELERY_CONFIG`, built when Celery asks for it: the Celery provider is not imported by the
    other Airflow processes that import this file."""
    if name == "CELERY_CONFIG":
        from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

        return {**DEFAULT_CELERY_CONFIG, "imports": PRELOAD}
    raise AttributeError(name)
