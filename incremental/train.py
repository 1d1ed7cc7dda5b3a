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

import fcntl
import hashlib
import json
import logging
import math
import os
import random
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from mlflow.entities import Metric
from transformers import get_linear_schedule_with_warmup

from incremental import lake as lk
from incremental import model as rk
from incremental import replay, tracking
from incremental.config import Settings, TrainingSettings
from incremental.errors import IncrementalError

log = logging.getLogger(__name__)

# Fault injection for the resume test: SIGKILL this process right after the checkpoint at or
# after this step is on disk (as a crash or an evicted worker would).
KILL_AT_STEP_ENV = "INCREMENTAL_FAULT_KILL_AT_STEP"
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
    lineage: dict[str, Any]
    resumed_from_step: int | None  # the checkpoint step this process resumed from, if it did


class TrainingError(IncrementalError, RuntimeError):
    """The update cannot run (an hour that is not validated, no rows to train on)."""


# --- helpers, in the order the loop uses them ----------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def load_hours(
    settings: Settings, starts: list[datetime], *, strict: bool
) -> tuple[pd.DataFrame, pa.Table, list[dict[str, Any]]]:
    """Training rows and holdout rows of validated hours, split by a hash of session_id.

    strict: every hour must be validated (an hourly update); otherwise hours that are not are
    skipped and reported (a bootstrap window may contain quarantined or empty hours).
    """
    fraction = settings.training.holdout_fraction
    train, holdout, parts = [], [], []
    for start in starts:
        part = lk.partition(settings.lake, start)
        if part.status != "validated":
            message = f"hour {start:%Y-%m-%dT%H:00Z} is {part.status}, not validated: refusing to train on it"
            if strict:
                raise TrainingError(message)
            log.warning("%s (skipped)", message)
            continue
        table = lk.read_partition(part)
        mask = replay.holdout_mask(table.column("session_id").to_pylist(), fraction)
        train.append(table.filter(pa.array(~mask)).to_pandas())
        holdout.append(table.filter(pa.array(mask)))
        parts.append({"hour": start.isoformat(), "sha256": part.manifest["sha256"], "rows": table.num_rows,
                      "train_rows": int((~mask).sum()), "holdout_rows": int(mask.sum())})
    if not parts:
        raise TrainingError(f"no validated hour among {len(starts)} to train on")
    return pd.concat(train, ignore_index=True), pa.concat_tables(holdout), parts


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Rows of the batch at `step`: epoch e is a permutation seeded by (seed, e), and step s
    takes positions [s*B, (s+1)*B) of their concatenation. No iterator state, so resuming at
    step s reproduces the rest of the run exactly."""
    out, position = [], step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(position, n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = perm[offset : offset + batch_size - len(out)]
        out.extend(take.tolist())
        position += len(take)
    return np.asarray(out)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: not on biases or LayerNorm (as BERT was trained)."""
    norm_params = {id(p) for m in model.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters()}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith("bias") or id(param) in norm_params else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, t: TrainingSettings) -> torch.optim.Optimizer:
    groups = parameter_groups(model, t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.learning_rate, momentum=0.9)
    return torch.optim.AdamW(groups, lr=t.learning_rate)


def l2sp_penalty(model: torch.nn.Module, anchors: dict[str, torch.Tensor], strength: float) -> torch.Tensor:
    """strength/2 * ||w - w0||^2 over the weights that have a starting point (Li et al. 2018):
    keeps the update near the champion, which is what it must not forget."""
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, param in model.named_parameters():
        if name in anchors:
            total = total + (param - anchors[name]).pow(2).sum()
    return 0.5 * strength * total


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain types only, so a checkpoint loads with
    `torch.load(weights_only=True)` (no pickled objects, no code run on loading)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "python": (int(version), tuple(int(x) for x in internal), gauss_next),
        "numpy": [str(name), [int(x) for x in keys], int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    """Temp file + rename: a kill mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


def holdout_eval(
    model: torch.nn.Module, features: dict[str, list[list[int]]], labels: np.ndarray, pad_id: int, autocast: bool
) -> dict[str, float]:
    """Loss and AUC on the holdout (eval mode, no gradients)."""
    from sklearn.metrics import roc_auc_score

    raw = rk.logits(model, features, pad_id=pad_id, autocast=autocast)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.from_numpy(raw).double(), torch.from_numpy(labels).double()
    ).item()
    out = {"holdout_loss": loss}
    if 0 < labels.sum() < len(labels):  # AUC needs both classes
        out["holdout_auc"] = float(roc_auc_score(labels, raw))
    return out


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
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


# --- the loop --------------------------------------------------------------------------------


def run_update(
    settings: Settings,
    starts: list[datetime],
    *,
    kind: str,
    from_champion: bool,
    max_steps: int,
    airflow_run_id: str | None = None,
    start_version: str | None = None,
) -> TrainResult:
    """Train one candidate. kind: "hourly" (one hour, replay) or "bootstrap" (a window, base)."""
    t = settings.training
    seed_everything(t.seed)

    # The data first: refusing an unvalidated hour should not wait for a model download.
    fresh, holdout, parts = load_hours(settings, starts, strict=kind == "hourly")
    replayed, replay_lineage = replay.sample(
        settings.lake, starts[0], fresh_rows=len(fresh), fraction=t.replay_fraction,
        replay_hours=t.replay_hours, holdout_fraction=t.holdout_fraction, seed=t.seed,
    )
    train = pd.concat([fresh, replayed], ignore_index=True) if len(replayed) else fresh
    lineage = {"kind": kind, "interval_start": starts[0].isoformat(), "interval_end": (starts[-1] + lk.HOUR).isoformat(),
               "partitions": parts, "replay": replay_lineage}
    data_hash = _digest({"partitions": [(p["hour"], p["sha256"]) for p in parts],
                         "replay": [(p["hour"], p["sha256"], p["sampled"]) for p in replay_lineage["partitions"]],
                         "holdout_fraction": t.holdout_fraction})
    lineage["data_hash"] = data_hash

    # The starting point: the champion by alias, or the base weights.
    # (or a given version: the last candidate of a drift episode's shadow chain).
    found = tracking.champion(settings) if from_champion and start_version is None else None
    parent_version = start_version or (found[0] if found else None)
    if parent_version:
        cache = tracking.version_model_dir(settings, parent_version)
        model, tokenizer = rk.load_dir(cache)
    else:
        model, tokenizer = rk.load_base(settings.base_model, seed=t.seed)

    # Identity of this update: one checkpoint folder and one MLflow run per (interval, parent,
    # data, config), so a re-run resumes or reuses instead of starting a second lineage.
    config = {"training": t.model_dump(), "kind": kind, "max_steps": max_steps,
              "base_model": None if parent_version else settings.base_model}
    hour_key = f"{starts[0]:%Y%m%dT%H}" + (f"-{starts[-1] + lk.HOUR:%Y%m%dT%H}" if kind != "hourly" else "")
    key = f"{hour_key}-{'v' + parent_version if parent_version else 'base'}-{data_hash[:12]}-{_digest(config)[:8]}"
    candidate_dir = settings.home / "candidates" / key
    holdout_path = settings.home / "holdout" / f"{key}.parquet"
    checkpoint_path = settings.home / "checkpoints" / key / "last.pt"
    client = tracking.configure(settings)
    experiment_id = tracking.get_or_create_experiment(settings)
    run_id: str | None = None
    # One process per update at a time (two runs of the same hour wait for each other, the
    # second then reuses the first's run); an update that raises marks its MLflow run FAILED.
    with _update_lock(checkpoint_path.parent):
        try:
            done = _finished_run(client, experiment_id, key)
            if done is not None and holdout_path.is_file():
                log.info("update %s already ran as MLflow run %s: reusing it", key, done.info.run_id)
                model_uri = f"runs:/{done.info.run_id}/model"
                if not (candidate_dir / "config.json").is_file():
                    shutil.move(str(tracking.download_model_dir(model_uri)), str(candidate_dir))
                return TrainResult(done.info.run_id, model_uri, candidate_dir, parent_version, data_hash,
                                   holdout_path, dict(done.data.metrics), lineage, None)

            # Tokenise once; batches are padded to their own longest pair (short queries and titles
            # make that ~10x cheaper than padding to max_length).
            pad_id = tokenizer.pad_token_id
            train_features = rk.tokenize(tokenizer, *rk.frame_texts(train), t.max_length)
            train_labels = torch.tensor(train["clicked"].to_numpy(dtype=np.float32))
            holdout_frame = holdout.to_pandas()
            holdout_features = rk.tokenize(tokenizer, *rk.frame_texts(holdout_frame), t.max_length)
            holdout_labels = holdout_frame["clicked"].to_numpy(dtype=np.float64)
            if len(train) == 0:
                raise TrainingError(f"update {key}: no training rows after the holdout split")

            device = rk.pick_device()
            autocast = device.type == "cuda" and t.bf16_autocast and torch.cuda.is_bf16_supported()
            model.to(device)
            # L2-SP anchors: the starting weights, except a head that was just initialised at random.
            anchors = {}
            if t.l2sp_strength > 0:
                anchors = {name: p.detach().clone() for name, p in model.named_parameters()
                           if parent_version or not name.startswith("classifier.")}
            optimizer = make_optimizer(model, t)
            warmup = math.ceil(t.warmup_fraction * max_steps)
            scheduler = get_linear_schedule_with_warmup(optimizer, warmup, max_steps)

            # Resume from the last checkpoint of this very update, if a previous attempt died.
            step, best, resumed_from_step, run_id = 0, {"loss": math.inf, "step": 0, "bad_evals": 0, "state": None}, None, None
            if checkpoint_path.is_file():
                # weights_only: the checkpoint folder may be shared between workers, and loading must
                # never run code that whoever can write there put in a pickle.
                checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=True)
                if checkpoint["config"] == config:
                    model.load_state_dict(checkpoint["model"])
                    optimizer.load_state_dict(checkpoint["optimizer"])
                    scheduler.load_state_dict(checkpoint["scheduler"])
                    set_rng_state(checkpoint["rng"])
                    step, best, run_id = checkpoint["step"], checkpoint["best"], checkpoint["run_id"]
                    resumed_from_step = step
                    log.info("resuming update %s from the checkpoint at step %d", key, step)
                else:  # cannot happen with the config digest in the key, but never resume a different run
                    log.warning("checkpoint %s was written with another config: starting over", checkpoint_path)

            _fail_orphans(client, experiment_id, key, keep=run_id)
            if run_id is None:
                run = client.create_run(experiment_id, run_name=key, tags={"mlflow.runName": key})
                run_id = run.info.run_id
                client.log_batch(run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in {
                    **{f"training.{k}": v for k, v in t.model_dump().items()}, "kind": kind, "max_steps_effective": max_steps,
                    "base_model": settings.base_model, "model_name": settings.model_name}.items()])
            tags = {"update_key": key, "kind": kind, "interval_start": lineage["interval_start"],
                    "interval_end": lineage["interval_end"], "parent_version": parent_version or "none",
                    "data_hash": data_hash, "device": str(device), "autocast": "bf16" if autocast else "off",
                    "lineage.partitions": ",".join(f"{p['hour']}:{p['sha256'][:12]}" for p in parts)[:4000],
                    "lineage.replay_partitions": ",".join(f"{p['hour']}:{p['sha256'][:12]}:{p['sampled']}"
                                                          for p in replay_lineage["partitions"])[:4000],
                    "lineage.replay_rows": str(replay_lineage["rows"])}
            if airflow_run_id:
                tags["airflow_run_id"] = airflow_run_id
            for name, value in tags.items():
                client.set_tag(run_id, name, value)

            log.info("***** Running training (%s, %s) *****", kind, key)
            log.info("  fresh rows = %d, replay rows = %d, holdout rows = %d", len(fresh), len(replayed), len(holdout_frame))
            log.info("  starting point = %s, device = %s, autocast = %s", f"v{parent_version}" if parent_version
                     else settings.base_model, device, autocast)
            log.info("  batch size = %d, steps = %d (%.2f epochs), warm-up = %d, optimizer = %s, lr = %g, l2sp = %g",
                     t.batch_size, max_steps, max_steps * t.batch_size / len(train), warmup, t.optimizer, t.learning_rate,
                     t.l2sp_strength)

            pending: list[Metric] = []  # per-step metrics, sent in batches (one database write each)

            def flush() -> None:
                while pending:
                    client.log_batch(run_id, metrics=pending[:1000])
                    del pending[:1000]

            model.train()
            started, seen, last_loss = time.perf_counter(), 0, math.nan
            while step < max_steps:
                tick = time.perf_counter()
                index = batch_indices(len(train), t.batch_size, t.seed, step)
                batch = rk.collate(train_features, index, pad_id, device)
                labels = train_labels[index].to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    logits = model(**batch).logits.squeeze(-1)
                # BCE on the logits, in fp32; never `labels=` (transformers would compute MSE).
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels)
                penalty = l2sp_penalty(model, anchors, t.l2sp_strength) if anchors else torch.zeros((), device=device)
                (loss + penalty).backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                optimizer.step()
                scheduler.step()
                # flush the gradients as soon as we can, no need for this memory anymore
                optimizer.zero_grad(set_to_none=True)
                step += 1
                seen += len(index)
                last_loss = loss.item()
                now_ms = int(time.time() * 1000)
                pending += [Metric("train_loss", last_loss, now_ms, step), Metric("l2sp_penalty", penalty.item(), now_ms, step),
                            Metric("grad_norm", float(grad_norm), now_ms, step),
                            Metric("learning_rate", scheduler.get_last_lr()[0], now_ms, step),
                            Metric("samples_per_s", len(index) / (time.perf_counter() - tick), now_ms, step)]

                # Early stopping on the fresh holdout; keep the best weights to end with.
                stop = False
                if len(holdout_frame) and (step % t.eval_every == 0 or step == max_steps):
                    evaluated = holdout_eval(model, holdout_features, holdout_labels, pad_id, autocast)
                    pending += [Metric(k, v, now_ms, step) for k, v in evaluated.items()]
                    if evaluated["holdout_loss"] < best["loss"]:
                        state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                        best = {"loss": evaluated["holdout_loss"], "step": step, "bad_evals": 0, "state": state}
                    else:
                        best["bad_evals"] += 1
                        stop = best["bad_evals"] >= t.early_stopping_patience
                    if stop:
                        log.info("early stop at step %d: holdout loss has not improved since step %d", step, best["step"])

                if step % t.checkpoint_every == 0 and step < max_steps and not stop:
                    flush()
                    save_checkpoint(checkpoint_path, {
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "step": step, "rng": rng_state(), "best": best, "config": config, "run_id": run_id,
                        "model_config": model.config.to_dict()})
                    if os.environ.get(KILL_AT_STEP_ENV) and step >= int(os.environ[KILL_AT_STEP_ENV]):
                        os.kill(os.getpid(), signal.SIGKILL)
                if stop:
                    break

            # End with the best weights seen on the holdout (the last ones when that is where it was).
            if best["state"] is not None and best["step"] != step:
                model.load_state_dict(best["state"])
            elapsed = time.perf_counter() - started
            metrics = {"train_loss_last": last_loss, "steps": float(step), "best_step": float(best["step"]),
                       "train_rows": float(len(fresh)), "replay_rows": float(len(replayed)),
                       "holdout_rows": float(len(holdout_frame)), "train_seconds": elapsed,
                       "samples_per_s_mean": seen / elapsed if elapsed > 0 else math.nan}
            if len(holdout_frame):
                metrics.update(holdout_eval(model, holdout_features, holdout_labels, pad_id, autocast))
            pending += [Metric(f"final_{k}" if k.startswith("holdout") else k, v, int(time.time() * 1000), step)
                        for k, v in metrics.items()]
            flush()

            # Save: the holdout for the evaluator, the HF directory, and the pyfunc in the run.
            lk.write_parquet_atomic(holdout_path, holdout)
            shutil.rmtree(candidate_dir, ignore_errors=True)
            rk.save_dir(model.to("cpu"), tokenizer, candidate_dir)
            with mlflow.start_run(run_id=run_id):
                mlflow.log_artifact(str(holdout_path), HOLDOUT_ARTIFACT)  # the evaluator reads it back by URI
                mlflow.log_dict(lineage, "lineage.json")
                mlflow.log_dict(config, "config.json")
                rk_signature = rk.signature()  # brand and category optional: a serving client may not have them
                mlflow.pyfunc.log_model(
                    name="model",
                    python_model=rk.RankerPyfunc(max_length=t.max_length),
                    artifacts={"model_dir": str(candidate_dir)},
                    code_paths=[str(Path(rk.__file__).parent)],  # `incremental` travels with the model
                    pip_requirements=rk.pip_requirements(),
                    signature=rk_signature,
                )
            shutil.rmtree(checkpoint_path.parent, ignore_errors=True)
            log.info("update %s done: %s", key, {k: round(v, 4) for k, v in metrics.items()})
            return TrainResult(run_id, f"runs:/{run_id}/model", candidate_dir, parent_version, data_hash, holdout_path,
                               metrics, lineage, resumed_from_step)
        except BaseException:
            if run_id is not None:
                _mark_failed(client, run_id)
            raise


def train_hour(
    settings: Settings, start: datetime, *, airflow_run_id: str | None = None, overrides: dict | None = None,
    start_version: str | None = None,
) -> TrainResult:
    """Update the champion (or `start_version`) on the validated hour [start, start + 1h), with replay and L2-SP."""
    settings = settings.with_training(**overrides) if overrides else settings
    start = lk.parse_hour(start)
    return run_update(settings, [start], kind="hourly", from_champion=True, start_version=start_version,
                      max_steps=settings.training.max_steps, airflow_run_id=airflow_run_id)


def bootstrap(settings: Settings, start: datetime, end: datetime, *, airflow_run_id: str | None = None) -> TrainResult:
    """Train the base weights on the validated hours of [start, end): the first champion, and
    the full-retrain baseline. A plain fine-tune: no replay (the window is the data) and no
    L2-SP (the base weights are not a ranker to stay close to)."""
    settings = settings.with_training(replay_fraction=0.0, l2sp_strength=0.0,
                                      learning_rate=settings.training.bootstrap_learning_rate)
    starts = lk.hours(lk.parse_hour(start), lk.parse_hour(end))
    if not starts:
        raise TrainingError(f"empty bootstrap window [{start}, {end})")
    return run_update(settings, starts, kind="bootstrap", from_champion=False,
                      max_steps=settings.training.bootstrap_steps, airflow_run_id=airflow_run_id)
