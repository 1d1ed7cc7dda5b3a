"""Test-only crashes, injected from outside the production code.

A test that needs a process of the pipeline to die at a given point starts it with this folder
first on its PYTHONPATH and one of the variables below (`crash_env` in
`tests/reliability/conftest.py`). Python imports `sitecustomize` at start-up, before the command
runs; this module then wraps the one function after which the crash belongs, and kills the process
with SIGKILL (as the kernel's OOM killer or an evicted worker would: no handler, no `finally`).
Without these variables it does nothing.

* `INCREMENTAL_TEST_FAULT_KILL_AT_STEP=N`: right after the training checkpoint at or after step N
  is on disk (`incremental.model.update.save_checkpoint`).
* `INCREMENTAL_TEST_FAULT_KILL_IN_REGISTRATION=1`: right after a model version is created in the
  registry (`mlflow.register_model`, which `incremental.registry.champion` calls), before its decision
  (the champion alias, the `registration` tag) is carried out.
* `INCREMENTAL_TEST_FAULT_KILL_AT_COMMIT=before:EVENT` / `after:EVENT`: right before (after) a commit
  that overwrites an hour of the lake's table for `EVENT` (validate, readmit):
  `incremental.data.table.overwrite_hour`, which validation calls once its quarantine report (and
  the hour's pending validation record) is written, before that record is published, and before
  re-admission marks the folders its rows came from.
* `INCREMENTAL_TEST_FAULT_KILL_AT_MOVE=before` / `after`: right before (after) a staged extraction
  is moved into its quarantine folder as ``rows.parquet`` (`incremental.data.storage.move`).
"""

from __future__ import annotations

import functools
import os
import signal

KILL_AT_STEP = "INCREMENTAL_TEST_FAULT_KILL_AT_STEP"
KILL_IN_REGISTRATION = "INCREMENTAL_TEST_FAULT_KILL_IN_REGISTRATION"
KILL_AT_COMMIT = "INCREMENTAL_TEST_FAULT_KILL_AT_COMMIT"
KILL_AT_MOVE = "INCREMENTAL_TEST_FAULT_KILL_AT_MOVE"


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_after_checkpoint(at_step: int) -> None:
    from incremental.model import update as train

    save = train.save_checkpoint

    @functools.wraps(save)
    def save_then_die(path, checkpoint):
        save(path, checkpoint)
        if checkpoint["state"]["step"] >= at_step:
            _die()

    train.save_checkpoint = save_then_die


def _kill_after_register_model() -> None:
    import mlflow

    register = mlflow.register_model

    @functools.wraps(register)
    def register_then_die(*args, **kwargs):
        register(*args, **kwargs)
        _die()

    mlflow.register_model = register_then_die


def _kill_at_commit(when: str, event: str) -> None:
    from incremental.data import table

    overwrite = table.overwrite_hour

    @functools.wraps(overwrite)
    def overwrite_and_die(lake, start, rows, what, *args, **kwargs):
        if what == event and when == "before":
            _die()
        version = overwrite(lake, start, rows, what, *args, **kwargs)
        if what == event:
            _die()
        return version

    table.overwrite_hour = overwrite_and_die


def _kill_at_move(when: str) -> None:
    from incremental.data import storage

    move = storage.move

    @functools.wraps(move)
    def move_and_die(src, dst, *args, **kwargs):
        quarantined = getattr(dst, "name", "") == "rows.parquet"
        if quarantined and when == "before":
            _die()
        move(src, dst, *args, **kwargs)
        if quarantined:
            _die()

    storage.move = move_and_die


if os.environ.get(KILL_AT_STEP):
    _kill_after_checkpoint(int(os.environ[KILL_AT_STEP]))
if os.environ.get(KILL_IN_REGISTRATION):
    _kill_after_register_model()
if os.environ.get(KILL_AT_COMMIT):
    _kill_at_commit(*os.environ[KILL_AT_COMMIT].split(":", 1))
if os.environ.get(KILL_AT_MOVE):
    _kill_at_move(os.environ[KILL_AT_MOVE])
