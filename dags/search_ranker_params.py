"""The search-ranker DAGs' manual-run params, validated by Airflow's JSON Schema before a run is
created (Trigger with config in the UI, `airflow dags trigger --conf`), and the training overrides
a run's params make.

Imported by the DAG files at parse time: it imports nothing heavy. `.airflowignore` keeps the DAG
processor from parsing it as a DAG file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import Param


def force_promote_param() -> Param:
    return Param(
        None,
        type=["null", "string"],
        minLength=10,
        title="Force-promote: the reason",
        description="Leave empty for the normal gate. To make the candidate champion even if the gate "
        "rejects it, write why (at least 10 characters); the reason is recorded on the model version.",
    )


def dry_run_param() -> Param:
    return Param(False, type="boolean", title="Dry run",
                 description="Train and evaluate, decide, but register nothing and move no alias.")


def training_override_params() -> dict[str, Param]:
    """Manual overrides of the training settings; empty means the reviewed value from incremental.yaml."""
    return {
        "learning_rate": Param(None, type=["null", "number"], exclusiveMinimum=0, maximum=0.01,
                               title="Learning rate", description="Override training.learning_rate (0 < lr <= 0.01)."),
        "max_steps": Param(None, type=["null", "integer"], minimum=1, maximum=10_000,
                           title="Max steps", description="Override training.max_steps (1-10000)."),
        "replay_fraction": Param(None, type=["null", "number"], minimum=0, maximum=0.9,
                                 title="Replay fraction", description="Override training.replay_fraction (0-0.9)."),
    }


def window_params() -> dict[str, Param]:
    """A window of whole UTC hours `[window_start, window_end)` for the manual DAGs (required)."""
    return {
        "window_start": Param(type="string", format="date-time", title="Window start (UTC, on the hour)"),
        "window_end": Param(type="string", format="date-time", title="Window end (UTC, exclusive)"),
    }


def nproc_param() -> Param:
    return Param(1, type="integer", minimum=1, maximum=16, title="Processes (GPUs)",
                 description="Train on this many processes of the GPU worker (torchrun, DDP: one GPU and one "
                 "shard of the window's sessions each). 1: a single process, as an hourly update trains.")


def catch_up_nproc_param() -> Param:
    return Param(None, type=["null", "integer"], minimum=1, maximum=16, title="Catch-up processes (GPUs)",
                 description="Run the catch-up retrain after a declared drift on this many processes of the GPU "
                 "worker (torchrun, DDP: `incremental catch-up --nproc N`); 1: in the task itself. Empty: "
                 "`drift.adapt.catch_up_processes` of the reviewed config, as scheduled runs do.")


def training_overrides(params: Mapping[str, Any]) -> dict[str, float | int] | None:
    """The training settings a manual run overrides (its params), None when none is set."""
    overrides = {k: params[k] for k in ("learning_rate", "max_steps", "replay_fraction") if params.get(k) is not None}
    return overrides or None
