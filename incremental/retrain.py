"""Training on a window of hours (from the base weights, or the champion for a catch-up), and the
anchor sets it freezes or rolls.

- `full_retrain`: the first bootstrap, or a full retrain after a long outage or a change of
  architecture (`incremental bootstrap`, the `search_ranker_full_retrain` DAG);
- `catch_up_step`: after a declared drift, a retrain of the champion on what still holds (the hourly
  DAG's last task);
- `freeze_anchor`: freeze (or refresh) the forgetting benchmark's anchor set (`incremental benchmark
  freeze`, the `search_ranker_benchmark` DAG); `roll_anchor`: the drift episode's own refresh.

Each candidate goes through the same evaluation and gate as an hourly update
(`verdict.evaluate_step`, `verdict.register_step`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from incremental.config import Settings
from incremental.data import lake, storage
from incremental.handover import AnchorFrozen, CaughtUp, Registered, Trained
from incremental.hours import HOUR, Hour
from incremental.judge import verdict
from incremental.judge.drift_rule import DriftContext, stale_rows
from incremental.model import replay
from incremental.registry import tracking


def full_retrain(
    settings: Settings, start: Hour, end: Hour, *, airflow_run_id: str | None = None,
    anchor_size: int = 4000, dry_run: bool = False, kind: str = "full_retrain",
    context: DriftContext | None = None, stale: tuple[replay.Stale, ...] = (), holdout_from: Hour | None = None,
    hour: Hour | None = None,
) -> Registered:
    """Train on the validated hours of [start, end), through the same gate: from the base weights,
    or from the champion for a catch-up (`kind` "catch_up").

    Compared with (and compare-and-set against) the champion at the time training started; the
    first champion is judged by value thresholds only. Freezes the anchor set on the window if
    there is none yet, after training succeeded (anchor rows are holdout sessions, which
    training never sees, so the order changes no model). `hour`: the hour it runs for (a
    catch-up: the hour that found it pending, up to `replay_hours` after `start`); the decision,
    its drift alerts and what it hands over name that hour (default: `start`).

    Under torchrun (inside `model.distributed.session`, WORLD_SIZE > 1) every rank calls it with the
    same arguments: each trains its shard of the window (DDP), rank 0 alone does the rest (MLflow,
    anchor, evaluation, gate, registry); the other ranks return a `Registered` with `skipped` set
    and no decision. Rank 0 reads the champion and tells the others (a catch-up: each rank then
    loads that version, read-only, as its starting point; DDP starts them all from rank 0's weights).
    """
    from incremental.judge import anchor
    from incremental.model import distributed
    from incremental.model.update import bootstrap, holdout_uri

    group = distributed.current()
    # under torchrun rank 0 reads the champion and every rank takes its answer (a catch-up starts from it)
    incumbent = tracking.champion(settings) if group is None or group.is_main else None
    if group is not None:
        incumbent = distributed.from_main(incumbent)
    # a catch-up moves the champion (measured: benchmarks/results/drift_truth-seed*.json); a full retrain starts afresh
    start_version = incumbent[0] if kind == "catch_up" and incumbent else None
    if group is not None and not group.is_main:  # torchrun: this rank trains its shard, rank 0 does the rest
        distributed.bootstrap_sharded(settings, start, end, group, stale=stale, holdout_from=holdout_from,
                                      start_version=start_version)
        return Registered(hour=hour or start, version=None, decision=None, reasons=(), champion=None,
                          skipped=f"rank {group.rank} of {group.world_size}: trained its shard; rank 0 evaluates, "
                                  "gates and registers the candidate")
    if group is None:
        result = bootstrap(settings, start, end, airflow_run_id=airflow_run_id, stale=stale, holdout_from=holdout_from,
                           start_version=start_version)
    else:  # rank 0 of a torchrun group
        sharded = distributed.bootstrap_sharded(settings, start, end, group, airflow_run_id=airflow_run_id,
                                                stale=stale, holdout_from=holdout_from, start_version=start_version)
        assert sharded is not None  # rank 0's part returns the candidate
        result = sharded
    if anchor.current(settings.lake) is None:  # only once training worked: a failed bootstrap freezes nothing
        freeze_anchor(settings, start, end, anchor_size, reason="first bootstrap: no anchor yet", refresh=False)
    champion = incumbent[0] if incumbent else None  # what it must beat and replace
    trained = Trained(hour=start, interval_end=end, kind=kind, run_id=result.run_id, model_uri=result.model_uri,
                      holdout_uri=holdout_uri(result.run_id, result.holdout_path), parent_version=champion,
                      compare_with=champion, data_hash=result.data_hash,
                      drift=context or {"mode": kind, "anomalous": [], "changed_slices": []},
                      train_metrics={k: float(v) for k, v in result.metrics.items()})
    evaluation = verdict.evaluate_step(settings, start, trained)
    return verdict.register_step(settings, hour or start, trained, evaluation, airflow_run_id=airflow_run_id,
                                 dry_run=dry_run)


@dataclass(frozen=True)
class CatchUpPlan:
    """What a pending catch-up retrains on: the hours [start, end) less the stale rows (`context`'s
    rules), judged on the holdout of the hours from `holdout_from`."""

    start: Hour
    end: Hour
    holdout_from: Hour
    context: DriftContext


def pending_catch_up(settings: Settings, hour: Hour) -> CatchUpPlan | str:
    """The catch-up the drift state asks for at `hour`, or why there is none (a drift was declared
    and its catch-up has not run: mode adapt, catch-up "pending")."""
    from incremental.judge import drift

    state = drift.load_state(settings)
    not_due = drift.no_catch_up(state)
    if not_due is not None:
        return not_due
    context = drift.context(state, hour, settings.drift)
    recent_start, end = _recent_window(settings, hour)
    window = lake.validated_partitions(settings.lake, end, settings.drift.adapt.replay_hours)
    window_start = min([p.start for p in window], default=recent_start)
    return CatchUpPlan(start=window_start, end=end, holdout_from=recent_start, context={**context, "mode": "catch_up"})


def catch_up_settings(settings: Settings) -> Settings:
    """The settings a catch-up trains with: `drift.adapt.catch_up_passes` passes over its window."""
    return settings.with_training(bootstrap_epochs=settings.drift.adapt.catch_up_passes)


def catch_up_step(settings: Settings, hour: Hour, *, airflow_run_id: str | None = None,
                  dry_run: bool = False) -> CaughtUp:
    """When a drift was declared and its catch-up has not run: retrain the champion on
    what still holds, through the same (relative) gate. That is the validated hours of the adapt
    replay window (`drift.adapt.replay_hours`) less the stale rows (the changed slices' rows from
    before the drift), judged on the holdout of the last `catch_up_hours` hours (the new regime).
    Tried before: a retrain on those last hours alone ranked the drifted slices well and had
    forgotten the others (anchor AUC of unchanged categories from 0.75-0.86 down to 0.24-0.47); a
    retrain from the base weights instead of the champion learned the new regime a third as well and
    lost 0.11 truth NDCG@10 on the unchanged categories (`benchmarks/drift_truth_bench.py`, two seeds;
    `drift.adapt.catch_up_passes`: three passes were no better over the two seeds).

    Under torchrun (inside `model.distributed.session`) every rank calls it: rank 0 reads the drift
    state and the window (`pending_catch_up`) and every rank follows its plan, so all of them
    train the same window or all skip; then `full_retrain` shards it (rank 0 alone gates and
    registers; the others return a `CaughtUp` whose `registered` has `skipped` set)."""
    from incremental.model import distributed

    group = distributed.current()
    plan = pending_catch_up(settings, hour) if group is None or group.is_main else None
    if group is not None:
        plan = distributed.from_main(plan)  # one plan for every rank, even if the state moves meanwhile
    assert plan is not None  # rank 0's, on every rank
    if isinstance(plan, str):
        return CaughtUp(hour=hour, skipped=plan)
    registered = full_retrain(catch_up_settings(settings), plan.start, plan.end, airflow_run_id=airflow_run_id,
                              kind="catch_up", context=plan.context, stale=stale_rows(plan.context),
                              holdout_from=plan.holdout_from, hour=hour, dry_run=dry_run)
    return CaughtUp(hour=hour, registered=registered, window=(plan.start, plan.end),
                    judged_on=(plan.holdout_from, plan.end))


def freeze_anchor(settings: Settings, start: datetime, end: Hour, size: int, reason: str,
                  refresh: bool = False, carry: pa.Table | None = None,
                  protected: list[str] | None = None) -> AnchorFrozen:
    """Freeze (or refresh) the anchor; the champion of the moment becomes its forgetting baseline,
    held on the `protected` categories (None: all of them)."""
    from incremental.judge import anchor

    champion = tracking.champion(settings)
    info = anchor.freeze(settings.lake, start, end, size, seed=settings.training.seed, reason=reason, refresh=refresh,
                         holdout_fraction=settings.training.holdout_fraction, carry=carry,
                         baseline_version=champion[0] if champion else None, protected_categories=protected)
    return AnchorFrozen(sha256=info.sha256, rows=info.rows, reason=reason, baseline_version=info.baseline_version,
                        protected_categories=info.protected_categories,
                        lake_key=storage.key(settings.lake, anchor.anchor_dir(settings.lake)))


def roll_anchor(settings: Settings, hour: Hour, reason: str, stable: list[str]) -> AnchorFrozen:
    """Replace the anchor by a sample of the holdout sessions of the last `catch_up_hours`
    validated hours (recorded in the anchor history), carrying over the rows of the `stable`
    categories (in line with their reference this hour, or on their last K hours pooled,
    `drift_rule.assess`) from the old anchor and earlier holdout sessions (`_stable_rows`): what the
    data show still holds stays protected, held to the champion of the declaration (the
    anchor's baseline, `gate` ``anchor_cumulative_auc_drop``). A category unsure or too thin to
    judge is not carried (still replayed): protecting it on old rows blocked the adaptation of
    one that had in fact changed (tried: `tests/e2e/test_drift_response.py`, every adapt
    candidate rejected on `storage`)."""
    from incremental.judge import anchor

    current = anchor.current(settings.lake)
    first, end = _recent_window(settings, hour)
    carry = _stable_rows(settings, stable, first) if current is not None and stable else None
    return freeze_anchor(settings, first, end, current.size if current else 4000, reason=reason,
                         refresh=current is not None, carry=carry, protected=stable)


def _stable_rows(settings: Settings, stable: list[str], before: datetime) -> pa.Table | None:
    """The stable categories' rows to carry: the old anchor's, and the holdout-session rows of the
    validated hours of the replay window before the rolled anchor's own (rows no model trained on;
    for a stable category any hour is as good as another). More rows give the forgetting checks
    more power: on `medium` the old anchor alone left 368 rows in five stable categories, a 90%
    interval of about ±0.035 AUC on their mean."""
    from incremental.judge import anchor

    frame, _ = anchor.load(settings.lake)
    old = pa.Table.from_pandas(frame[frame["category"].astype(str).isin(stable)], preserve_index=False)
    since = before - settings.drift.adapt.replay_hours * HOUR
    more = anchor.holdout_window(settings.lake, since, before, settings.training.holdout_fraction, stable)
    if more is None:
        return old
    fresh = ~more.column("event_id").to_pandas().isin(old.column("event_id").to_pandas()).to_numpy()
    return pa.concat_tables([old, more.filter(pa.array(fresh)).select(old.schema.names).cast(old.schema)])


def _recent_window(settings: Settings, hour: Hour) -> tuple[Hour, Hour]:
    """[first, hour + 1h) over the last `catch_up_hours` validated hours up to `hour`."""
    end = hour + HOUR
    parts = lake.validated_partitions(settings.lake, end, settings.drift.catch_up_hours * 4)
    recent = sorted(p.start for p in parts)[-settings.drift.catch_up_hours:]
    return (recent[0] if recent else hour), end

