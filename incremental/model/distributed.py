"""A full retrain on several processes (`torchrun`): DDP, one shard of the window's sessions per rank.

Used only when the process was started by `torchrun` (or `python -m torch.distributed.run`) with
`WORLD_SIZE` > 1; with `WORLD_SIZE` unset or 1 nothing here runs and training is the single
process of `update.run_update`, unchanged.

What each rank does (`run_sharded`):

- every rank reads the same validated window from the lake (`examples.training_set`) and keeps
  its shard of the training sessions (`shard`: the sorted session ids, index modulo world size;
  a session stays whole);
- every rank trains the same DDP-wrapped model on batches of `batch_size / world_size` rows of
  its own shard, so the effective batch, the learning rate and the step count are those of a
  single-process run (the schedule is sized from the global row count, so every rank takes the
  same number of steps and none waits forever in an all-reduce);
- rank 0 alone has side effects: the update lock, the MLflow run (with each rank's shard size and
  hash, and `ddp_shards.json`: every rank's session ids), the early-stopping evaluations (its
  decision is broadcast, so every rank stops at the same step), the candidate; then
  `retrain.full_retrain` evaluates, gates and registers on rank 0 only.
- the other ranks return after training (a barrier), their result is None.

A sharded run writes no checkpoint (a killed run starts over) and is a separate update from a
single-process one (`world_size` is part of its identity, so neither reuses the other's run).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypedDict

import mlflow
import pandas as pd
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from incremental.config import Settings, TrainingSettings
from incremental.data import lake as lk
from incremental.errors import InputError
from incremental.hours import Hour
from incremental.model import replay
from incremental.model import update as up
from incremental.model.fit import FitData, FitState, Trainer, fit, make_trainer, seed_everything
from incremental.model.identity import update_identity
from incremental.registry import tracking

log = logging.getLogger(__name__)

SHARDS_ARTIFACT = "ddp_shards.json"  # every rank's session ids, in the run (the proof the shards are disjoint)


@dataclass(frozen=True)
class Group:
    """This process's place in the torchrun group."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")

    @property
    def backend(self) -> str:
        return "nccl" if torch.cuda.is_available() else "gloo"


def _env_int(name: str, default: int | None = None) -> int:
    text = os.environ.get(name)
    if text is None:
        if default is None:
            raise InputError(f"{name} is not set: start several processes with torchrun, which sets it")
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{name}={text!r} is not a whole number") from None


def from_env() -> Group | None:
    """The group torchrun describes in the environment; None for a single process (WORLD_SIZE unset or 1)."""
    world = _env_int("WORLD_SIZE", 1)
    if world < 1:
        raise InputError(f"WORLD_SIZE={world}: at least 1")
    if world == 1:
        return None
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world:
        raise InputError(f"RANK={rank} is not in 0..{world - 1} (WORLD_SIZE={world})")
    return Group(rank=rank, world_size=world, local_rank=local_rank)


_current: Group | None = None


def current() -> Group | None:
    """The group this process trains in (inside `session()`), or None: a single process."""
    return _current


@contextmanager
def session(timeout: timedelta = timedelta(minutes=30)) -> Iterator[Group | None]:
    """Join the torchrun group for the block (gloo on CPU, NCCL on GPU) and leave it afterwards;
    yields None, and initialises nothing, when this is a single process."""
    global _current
    group = from_env()
    if group is None:
        yield None
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(group.local_rank)
    dist.init_process_group(group.backend, timeout=timeout)
    _current = group
    try:
        yield group
    finally:
        _current = None
        dist.destroy_process_group()


# --- the shard -----------------------------------------------------------------------------------


def shard_mask(sessions: pd.Series, rank: int, world_size: int) -> pd.Series:
    """Rows of the sessions this rank trains on: the distinct session ids sorted, the i-th to rank
    i mod world size. Disjoint, together the whole set, a session never split, and the same on
    every rank (a function of the ids alone)."""
    ordered = sorted(sessions.unique().tolist())
    mine = set(ordered[rank::world_size])
    return sessions.isin(mine)


def sessions_digest(sessions: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(sessions)).encode()).hexdigest()


def check_world(training_sessions: int, batch_size: int, world_size: int) -> None:
    """Bad input for a sharded run: more processes than training sessions (a rank with nothing to
    train on), or a batch that does not split evenly over the processes."""
    if world_size > training_sessions:
        raise InputError(f"{world_size} processes but the window has {training_sessions} training sessions: "
                         "each process needs at least one (use fewer processes or a longer window)")
    if batch_size % world_size:
        raise InputError(f"training.batch_size {batch_size} does not split evenly over {world_size} processes "
                         "(each process trains on batch_size / processes rows per step)")


# --- collectives (every rank calls each one, in the same order) ------------------------------------


def agree(group: Group, flag: bool) -> bool:
    """Rank 0's `flag`, on every rank."""
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int64, device=group.device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def from_main(value: Any) -> Any:
    """Rank 0's `value` (a picklable object), on every rank."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


# --- the sharded update ------------------------------------------------------------------------------


def bootstrap_sharded(settings: Settings, start: Hour, end: Hour, group: Group, *,
                      airflow_run_id: str | None = None, stale: tuple[replay.Stale, ...] = (),
                      holdout_from: Hour | None = None, start_version: str | None = None) -> up.TrainResult | None:
    """`update.bootstrap` on one rank of a torchrun group, every rank with the same arguments: rank 0
    returns the candidate; the other ranks train their shard, with no side effect, and return None."""
    settings, parts = up.bootstrap_window(settings, start, end)
    return run_sharded(settings, parts, group, kind="bootstrap", max_steps=settings.training.bootstrap_steps,
                       epochs=settings.training.bootstrap_epochs, airflow_run_id=airflow_run_id, stale=stale,
                       holdout_from=holdout_from, start_version=start_version)


def run_sharded(settings: Settings, parts: list[lk.Partition], group: Group, *, kind: str, max_steps: int,
                epochs: float, airflow_run_id: str | None = None, stale: tuple[replay.Stale, ...] = (),
                holdout_from: Hour | None = None, start_version: str | None = None) -> up.TrainResult | None:
    """One rank's part of a training from the base weights or a version under torchrun (`bootstrap_sharded`;
    DDP starts every rank from rank 0's weights):
    rank 0 returns the `update.TrainResult`, the other ranks None. Every rank calls the same
    collectives in the same order: gather the shards, rank 0's reuse decision, DDP's all-reduces,
    the early-stopping decisions, the final barrier."""
    t = settings.training
    seed_everything(t.seed)
    # the same window on every rank, and the schedule of one process: the global rows and the global batch
    data, max_steps = up.training_window(settings, parts, kind, stale, holdout_from, max_steps, epochs)
    rows = data.rows
    check_world(int(rows["session_id"].nunique()), t.batch_size, group.world_size)
    mine = rows[shard_mask(rows["session_id"], group.rank, group.world_size).to_numpy()].reset_index(drop=True)
    shard: Shard = {"rank": group.rank, "rows": len(mine), "sessions": sorted(mine["session_id"].unique().tolist())}
    shards: list[Shard] = gather(shard)
    log.info("rank %d/%d: %d of %d training rows (%d sessions), %d steps of %d rows", group.rank, group.world_size,
             len(mine), len(rows), len(shards[group.rank]["sessions"]), max_steps, t.batch_size // group.world_size)

    model, tokenizer, parent_version = up.starting_point(settings, from_champion=False, start_version=start_version)
    identity = update_identity(settings, parts[0].start, parts[-1].start, kind, max_steps, parent_version, data.data_hash,
                                  world_size=group.world_size)
    local = t.model_copy(update={"batch_size": t.batch_size // group.world_size})  # each rank's part of a batch
    if not group.is_main:
        if from_main(None):  # rank 0 found this update already done: nothing to train
            return None
        inputs = FitData.from_frames(tokenizer, mine, data.stopping, t.max_length, data.examination)
        trainer = make_trainer(model, local, max_steps, new_head=parent_version is None, device=group.device)
        _fit(group, trainer, inputs, local, max_steps, kind, on_metrics=None)
        dist.barrier()  # training is over on every rank; rank 0 alone publishes, evaluates and registers
        return None

    client = tracking.configure(settings)
    experiment_id = tracking.get_or_create_experiment(settings)
    run_id: str | None = None
    with up._update_lock(identity.checkpoint_path.parent):
        try:
            done = up._finished_run(client, experiment_id, identity.key)
            reuse = done is not None and identity.holdout_path.is_file()
            from_main(reuse)
            if reuse:
                return up._reuse(done, identity, parent_version, data)
            up._fail_orphans(client, experiment_id, identity.key, keep=None)
            inputs = FitData.from_frames(tokenizer, mine, data.stopping, t.max_length, data.examination)
            trainer = make_trainer(model, local, max_steps, new_head=parent_version is None, device=group.device)
            run_id = up.start_run(client, experiment_id, settings, identity, data, parent_version, trainer,
                                  airflow_run_id)
            _log_shards(client, run_id, shards, group.world_size, t.batch_size)
            metrics_log = up.MetricLog(client, run_id)
            started = time.perf_counter()
            state = _fit(group, trainer, inputs, local, max_steps, kind, on_metrics=metrics_log.add)
            dist.barrier()
            return up.finish(run_id, identity, state, data, inputs, trainer, tokenizer, t.max_length, metrics_log,
                             time.perf_counter() - started, parent_version, None,
                             extra={"train_rows_rank0": float(len(mine))})
        except BaseException:
            if run_id is not None:
                up._mark_failed(client, run_id)
            raise


def _fit(group: Group, trainer: Trainer, inputs: FitData, local: TrainingSettings, max_steps: int, kind: str,
         on_metrics: Callable[[int, dict[str, float]], None] | None) -> FitState:
    """Train this rank's shard with the model wrapped in DDP (rank 0's weights broadcast to all at
    the start, the gradients averaged at every step); rank 0 alone evaluates early stopping and
    every rank follows its decision. No checkpoints. The trainer holds the plain module afterwards."""
    module = trainer.model
    ids = [group.local_rank] if group.device.type == "cuda" else None
    # no buffer sync at each forward: the buffers (position ids) are constants, and a forward on rank 0
    # alone (the early-stopping evaluation) must not start a collective the other ranks never join
    trainer.model = DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)
    try:
        return fit(trainer, inputs, local, max_steps=max_steps, on_metrics=on_metrics, evaluates=group.is_main,
                   agree=lambda stop: agree(group, stop), label=f"{kind} rank {group.rank}/{group.world_size}")
    finally:
        trainer.model = module


class Shard(TypedDict):
    """A rank's shard of the training rows, as `ddp_shards.json` records it."""

    rank: int
    rows: int
    sessions: list[str]  # its session ids, sorted


def _log_shards(client: Any, run_id: str, shards: list[Shard], world_size: int, batch_size: int) -> None:
    """Each rank's shard in the run: sizes and hashes as params, the session ids as an artifact."""
    params: dict[str, object] = {"ddp.world_size": world_size, "ddp.batch_size_per_process": batch_size // world_size}
    for s in shards:
        params.update({f"ddp.rank{s['rank']}.rows": s["rows"], f"ddp.rank{s['rank']}.sessions": len(s["sessions"]),
                       f"ddp.rank{s['rank']}.sessions_sha256": sessions_digest(s["sessions"])[:16]})
    client.log_batch(run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in params.items()])
    client.log_dict(run_id, {"world_size": world_size, "shards": shards}, SHARDS_ARTIFACT)
