"""The update loop: warm-start from the champion, train on this hour + replay, log to MLflow.

`train_hour` updates the champion (or the base model when there is none yet) on one validated
hour; `bootstrap` trains the base weights on a window of validated history (the first champion,
and the full-retrain baseline). Both are the same loop, `run_update`, readable top to bottom:
starting point -> data -> identity and resume -> optimiser -> loop -> evaluate -> save and log.

Resume: every `checkpoint_every` steps the loop writes a plain dict (model, optimiser,
scheduler, step, RNG states, early-stopping state, config, MLflow run id: tensors and plain
types only, loaded with `weights_only=True`) to
`<home>/checkpoints/<key>/last.pt`, where the key names the hour, the parent version, the data
hash and the config. The batch at step s is a pure function of (seed, s), so a process killed
and run again picks up at the last checkpoint, continues the same MLflow run, and ends with the
same weights as an uninterrupted run. The checkpoint folder is removed once the model is logged;
a re-run of an update whose run already finished returns that run instead of training again.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.entities import Metric

from incremental import locks
from incremental.config import Settings, TrainingSettings
from incremental.data import files
from incremental.data import lake as lk
from incremental.hours import Hour, hours
from incremental.model import ranker as rk
from incremental.model import replay
from incremental.model.examples import TrainingError, TrainingSet, training_set
from incremental.model.fit import (
    FitData,
    FitState,
    Trainer,
    fit,
    make_trainer,
    rng_state,
    seed_everything,
    set_rng_state,
    stopping_eval,
)
from incremental.model.identity import UpdateIdentity, update_identity
from incremental.registry import tracking

log = logging.getLogger(__name__)

HOLDOUT_ARTIFACT = "holdout"  # runs:/<run_id>/holdout/<update key>.parquet


def holdout_uri(run_id: str, holdout_path: Path) -> str:
    """Where the evaluator finds an update's holdout rows, on any worker."""
    return f"runs:/{run_id}/{HOLDOUT_ARTIFACT}/{holdout_path.name}"


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_uri: str  # runs:/<run_id>/model, a pyfunc; registration is the gate's business
    candidate_dir: Path  # the same model as a Hugging Face directory (model.load_dir)
    parent_version: str | None  # the champion version it started from; None: the base weights
    data_hash: str
    holdout_path: Path  # this update's holdout rows (Parquet, the lake schema) for the evaluator
    metrics: dict[str, float]
    resumed_from_step: int | None  # the checkpoint step this process resumed from, if it did


# --- helpers, in the order the update uses them -----------------------------------------------


def save_checkpoint(path: Path, checkpoint: Mapping[str, object]) -> None:
    """Temp file + rename: a kill mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


def _finished_run(client: Any, experiment_id: str, key: str) -> Any | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.update_key = {tracking.quote(key)} and attributes.status = 'FINISHED'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return runs[0] if runs else None


@contextmanager
def _update_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on one update (its checkpoint folder's name + `.lock`), held while it trains."""
    with locks.hold(folder.with_name(folder.name + ".lock")):
        yield


def _mark_failed(client: Any, run_id: str) -> None:
    try:
        client.set_terminated(run_id, "FAILED")
    except Exception:  # MLflow itself may be what failed: the original error matters more
        log.warning("could not mark MLflow run %s FAILED", run_id, exc_info=True)


def _fail_orphans(client: Any, experiment_id: str, key: str, keep: str | None) -> None:
    """Runs of this update still RUNNING belong to attempts that died (killed before their first
    checkpoint): under the update lock no other process is running it. Mark them FAILED."""
    orphans = client.search_runs(
        [experiment_id], filter_string=f"attributes.run_name = {tracking.quote(key)} and attributes.status = 'RUNNING'")
    for run in orphans:
        if run.info.run_id != keep:
            log.warning("MLflow run %s of update %s was left RUNNING by a process that died: marking it FAILED",
                        run.info.run_id, key)
            client.set_terminated(run.info.run_id, "FAILED")


# --- the update, in its parts --------------------------------------------------------------


def starting_point(settings: Settings, from_champion: bool, start_version: str | None) -> tuple[Any, Any, str | None]:
    """(model, tokenizer, parent version): the champion by alias, a given version (the last
    candidate of a drift episode's shadow chain), or the base weights (parent None)."""
    found = tracking.champion(settings) if from_champion and start_version is None else None
    parent_version = start_version or (found[0] if found else None)
    if parent_version:
        return (*rk.load_dir(tracking.version_model_dir(settings, parent_version)), parent_version)
    return (*rk.load_base(settings.base_model, seed=settings.training.seed), None)


def resume(identity: UpdateIdentity, trainer: Trainer) -> tuple[FitState | None, str | None]:
    """The state and MLflow run of this very update's last checkpoint, if a previous attempt died."""
    if not identity.checkpoint_path.is_file():
        return None, None
    # weights_only: the checkpoint folder may be shared between workers, and loading must never
    # run code that whoever can write there put in a pickle.
    checkpoint = torch.load(identity.checkpoint_path, map_location=trainer.device, weights_only=True)
    if checkpoint["config"] != identity.config:  # cannot happen with the config digest in the key
        log.warning("checkpoint %s was written with another config: starting over", identity.checkpoint_path)
        return None, None
    trainer.model.load_state_dict(checkpoint["model"])
    trainer.optimizer.load_state_dict(checkpoint["optimizer"])
    trainer.scheduler.load_state_dict(checkpoint["scheduler"])
    set_rng_state(checkpoint["rng"])
    state = FitState.from_dict(checkpoint["state"])
    log.info("resuming update %s from the checkpoint at step %d", identity.key, state.step)
    return state, checkpoint["run_id"]


def checkpointer(identity: UpdateIdentity, trainer: Trainer, run_id: str, before: Any) -> Any:
    """What the loop calls every `checkpoint_every` steps: flush metrics (`before`), then save."""

    def save(state: FitState) -> None:
        before()
        save_checkpoint(identity.checkpoint_path, {
            "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(), "state": state.to_dict(), "rng": rng_state(),
            "config": identity.config, "run_id": run_id})

    return save


class MetricLog:
    """Per-step metrics, sent to the run in batches (one database write each)."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self.pending: list[Metric] = []

    def add(self, step: int, metrics: dict[str, float]) -> None:
        now_ms = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now_ms, step) for k, v in metrics.items()]

    def flush(self) -> None:
        while self.pending:
            self.client.log_batch(self.run_id, metrics=self.pending[:1000])
            del self.pending[:1000]


def start_run(client: Any, experiment_id: str, settings: Settings, identity: UpdateIdentity, data: TrainingSet,
              parent_version: str | None, trainer: Trainer, airflow_run_id: str | None) -> str:
    t, lineage = settings.training, data.lineage
    run = client.create_run(experiment_id, run_name=identity.key, tags={"mlflow.runName": identity.key})
    params = {**{f"training.{k}": v for k, v in t.model_dump().items()}, "kind": lineage["kind"],
              "max_steps_effective": identity.config["max_steps"], "base_model": settings.base_model,
              "model_name": settings.model_name}
    replay_parts = lineage["replay"]["partitions"]
    tags = {"update_key": identity.key, "kind": lineage["kind"], "interval_start": lineage["interval_start"],
            "interval_end": lineage["interval_end"], "parent_version": parent_version or "none",
            "data_hash": data.data_hash, "device": str(trainer.device), "autocast": "bf16" if trainer.autocast else "off",
            "lineage.partitions": ",".join(f"{p['hour']}:{p['sha256'][:12]}" for p in lineage["partitions"])[:4000],
            "lineage.replay_partitions": ",".join(f"{p['hour']}:{(p['sha256'] or '')[:12]}:{p['sampled']}"
                                                  for p in replay_parts)[:4000],
            "lineage.replay_rows": str(lineage["replay"]["rows"]),
            "lineage.table": lineage.get("table", ""), "lineage.table_version": str(lineage.get("table_version", ""))}
    if airflow_run_id:
        tags["airflow_run_id"] = airflow_run_id
    client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in params.items()],
                     tags=[mlflow.entities.RunTag(k, v) for k, v in tags.items()])
    return run.info.run_id


def publish(run_id: str, identity: UpdateIdentity, trainer: Trainer, tokenizer: Any, data: TrainingSet,
            max_length: int) -> None:
    """The holdout for the evaluator, the HF directory, and the pyfunc in the run."""
    files.write_parquet_atomic(identity.holdout_path, data.holdout)
    shutil.rmtree(identity.candidate_dir, ignore_errors=True)
    rk.save_dir(trainer.model.to("cpu"), tokenizer, identity.candidate_dir)  # type: ignore[arg-type]  # Trainer keeps the PreTrainedModel as a torch Module
    with mlflow.start_run(run_id=run_id):
        mlflow.log_artifact(str(identity.holdout_path), HOLDOUT_ARTIFACT)  # the evaluator reads it back by URI
        mlflow.log_dict({**data.lineage}, "lineage.json")
        mlflow.log_dict({**identity.config}, "config.json")
        mlflow.pyfunc.log_model(
            name="model",
            python_model=rk.RankerPyfunc(max_length=max_length),
            artifacts={"model_dir": str(identity.candidate_dir)},
            code_paths=[str(Path(rk.__file__).parents[1])],  # the whole `incremental` package travels with the model
            pip_requirements=rk.pip_requirements(),
            signature=rk.signature(),  # brand and category optional: a serving client may not have them
        )
    shutil.rmtree(identity.checkpoint_path.parent, ignore_errors=True)


def run_update(
    settings: Settings,
    parts: list[lk.Partition],
    *,
    kind: str,
    from_champion: bool,
    max_steps: int,
    epochs: float = 0.0,
    airflow_run_id: str | None = None,
    start_version: str | None = None,
    stale: tuple[replay.Stale, ...] = (),
    holdout_from: Hour | None = None,
) -> TrainResult:
    """Train one candidate. kind: "hourly" (one hour, replay) or "bootstrap" (a window, base).
    Steps: `max_steps`, or more when `epochs` passes over the training rows need more."""
    t = settings.training
    seed_everything(t.seed)
    data, max_steps = training_window(settings, parts, kind, stale, holdout_from, max_steps, epochs)
    model, tokenizer, parent_version = starting_point(settings, from_champion, start_version)
    identity = update_identity(settings, parts[0].start, parts[-1].start, kind, max_steps, parent_version, data.data_hash)
    client = tracking.configure(settings)
    experiment_id = tracking.get_or_create_experiment(settings)
    run_id: str | None = None
    # One process per update at a time (two runs of the same hour wait for each other, the
    # second then reuses the first's run); an update that raises marks its MLflow run FAILED.
    with _update_lock(identity.checkpoint_path.parent):
        try:
            done = _finished_run(client, experiment_id, identity.key)
            if done is not None and identity.holdout_path.is_file():
                return _reuse(done, identity, parent_version, data)
            inputs = FitData.from_frames(tokenizer, data.rows, data.stopping, t.max_length, data.examination)
            trainer = make_trainer(model, t, max_steps, new_head=parent_version is None)
            state, run_id = resume(identity, trainer)
            resumed_from_step = state.step if state else None
            _fail_orphans(client, experiment_id, identity.key, keep=run_id)
            run_id = run_id or start_run(client, experiment_id, settings, identity, data, parent_version, trainer,
                                         airflow_run_id)
            _log_start(identity, data, inputs, trainer, t, max_steps, parent_version, settings.base_model)
            metrics_log = MetricLog(client, run_id)
            started = time.perf_counter()
            state = fit(trainer, inputs, t, max_steps=max_steps, state=state, on_metrics=metrics_log.add,
                        on_checkpoint=checkpointer(identity, trainer, run_id, metrics_log.flush),
                        label=f"{kind} update {identity.key[:13]}")
            return finish(run_id, identity, state, data, inputs, trainer, tokenizer, t.max_length, metrics_log,
                          time.perf_counter() - started, parent_version, resumed_from_step)
        except BaseException:
            if run_id is not None:
                _mark_failed(client, run_id)
            raise


def training_window(settings: Settings, parts: list[lk.Partition], kind: str, stale: tuple[replay.Stale, ...],
                    holdout_from: Hour | None, max_steps: int, epochs: float) -> tuple[TrainingSet, int]:
    """The training set of the hours `parts` (read first: refusing an hour should not wait for a model) and
    the step count: `max_steps`, or more when `epochs` passes over the training rows need more."""
    data = training_set(settings, parts, kind, stale, holdout_from)
    if len(data.fresh) + len(data.replayed) == 0:
        raise TrainingError(f"no training rows in {[p.start.isoformat() for p in parts]} after the holdout split")
    return data, max(max_steps, math.ceil(epochs * len(data.rows) / settings.training.batch_size))


def finish(run_id: str, identity: UpdateIdentity, state: FitState, data: TrainingSet, inputs: FitData,
           trainer: Trainer, tokenizer: Any, max_length: int, metrics_log: MetricLog, elapsed: float,
           parent_version: str | None, resumed_from_step: int | None, extra: dict[str, float] | None = None) -> TrainResult:
    """A trained update's end: its final metrics (and `extra`) logged, the candidate published."""
    metrics = {**_final_metrics(state, data, inputs, trainer, elapsed), **(extra or {})}
    metrics_log.add(state.step, {f"final_{k}" if k.startswith("stopping_") else k: v for k, v in metrics.items()})
    metrics_log.flush()
    publish(run_id, identity, trainer, tokenizer, data, max_length)
    log.info("update %s done: %s", identity.key, {k: round(v, 4) for k, v in metrics.items()})
    return TrainResult(run_id, f"runs:/{run_id}/model", identity.candidate_dir, parent_version,
                       data.data_hash, identity.holdout_path, metrics, resumed_from_step)


def _reuse(done: Any, identity: UpdateIdentity, parent_version: str | None, data: TrainingSet) -> TrainResult:
    log.info("update %s already ran as MLflow run %s: reusing it", identity.key, done.info.run_id)
    model_uri = f"runs:/{done.info.run_id}/model"
    if not (identity.candidate_dir / "config.json").is_file():
        shutil.move(str(tracking.download_model_dir(model_uri)), str(identity.candidate_dir))
    return TrainResult(done.info.run_id, model_uri, identity.candidate_dir, parent_version, data.data_hash,
                       identity.holdout_path, dict(done.data.metrics), None)


def _log_start(identity: UpdateIdentity, data: TrainingSet, inputs: FitData, trainer: Trainer, t: TrainingSettings,
               max_steps: int, parent_version: str | None, base_model: str) -> None:
    log.info("***** Running training (%s, %s) *****", data.lineage["kind"], identity.key)
    log.info("  fresh rows = %d, replay rows = %d, early-stopping rows = %d, holdout rows (the gate's) = %d",
             len(data.fresh), len(data.replayed), len(inputs.stopping_labels), data.holdout.num_rows)
    log.info("  examination by position (%s) = %s", t.position_bias,
             " ".join(f"{p:.2f}" for p in data.examination.probability))
    log.info("  starting point = %s, device = %s, autocast = %s", f"v{parent_version}" if parent_version
             else base_model, trainer.device, trainer.autocast)
    log.info("  batch size = %d, steps = %d (%.2f epochs), optimizer = %s, lr = %g, l2sp = %g", t.batch_size,
             max_steps, max_steps * t.batch_size / inputs.train_rows, t.optimizer, t.learning_rate, t.l2sp_strength)


def _final_metrics(state: FitState, data: TrainingSet, inputs: FitData, trainer: Trainer, elapsed: float) -> dict[str, float]:
    metrics = {"train_loss_last": state.last_loss, "steps": float(state.step), "best_step": float(state.best_step),
               "train_rows": float(len(data.fresh)), "replay_rows": float(len(data.replayed)),
               "stopping_rows": float(len(inputs.stopping_labels)), "holdout_rows": float(data.holdout.num_rows),
               "train_seconds": elapsed,
               "samples_per_s_mean": state.seen / state.seconds if state.seconds > 0 else math.nan}
    if len(inputs.stopping_labels):
        metrics.update(stopping_eval(trainer.model, inputs, trainer.autocast))
    return metrics


def train_hour(
    settings: Settings, part: lk.Partition, *, airflow_run_id: str | None = None, overrides: dict | None = None,
    start_version: str | None = None, stale: tuple[replay.Stale, ...] = (),
) -> TrainResult:
    """Update the champion (or `start_version`) on the validated hour `part` (its state as the caller
    read it: the rows it checked are the rows trained on), with replay (less the `stale` rows) and L2-SP."""
    settings = settings.with_training(**overrides) if overrides else settings
    return run_update(settings, [part], kind="hourly", from_champion=True, start_version=start_version,
                      max_steps=settings.training.max_steps, airflow_run_id=airflow_run_id, stale=stale)


def bootstrap(settings: Settings, start: Hour, end: Hour, *, airflow_run_id: str | None = None,
              stale: tuple[replay.Stale, ...] = (), holdout_from: Hour | None = None,
              start_version: str | None = None) -> TrainResult:
    """Train on the validated hours of [start, end) at the bootstrap rate, from the base weights
    (the first champion, the full-retrain baseline) or from a version (`start_version`: the
    champion, for the catch-up retrain, which leaves out the `stale` rows and is judged on the holdout of the hours
    from `holdout_from`). A plain fine-tune: no replay (the window is the data) and no L2-SP (the
    point is to move). Under torchrun, `model.distributed.bootstrap_sharded` is its counterpart."""
    settings, parts = bootstrap_window(settings, start, end)
    return run_update(settings, parts, kind="bootstrap", from_champion=False, start_version=start_version,
                      max_steps=settings.training.bootstrap_steps, epochs=settings.training.bootstrap_epochs,
                      airflow_run_id=airflow_run_id, stale=stale, holdout_from=holdout_from)


def bootstrap_window(settings: Settings, start: Hour, end: Hour) -> tuple[Settings, list[lk.Partition]]:
    """A bootstrap's settings (no replay, no L2-SP, the bootstrap learning rate) and its hours, as
    the lake holds them (all as of one table version)."""
    settings = settings.with_training(replay_fraction=0.0, l2sp_strength=0.0,
                                      learning_rate=settings.training.bootstrap_learning_rate)
    starts = hours(start, end)
    if not starts:
        raise TrainingError(f"empty bootstrap window [{start}, {end})")
    return settings, lk.partitions(settings.lake, starts)
