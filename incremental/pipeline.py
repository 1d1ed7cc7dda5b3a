"""One hour, stage by stage: the functions the CLI (`incremental run-hour`) and the DAGs call.

    extract_step -> validate_step -> monitor_step -> train_step -> evaluate_step -> register_step
                                                                               -> catch_up_step

`monitor_step` is test-then-train: the champion scores the hour before anything trains on it,
and the drift rule (`incremental.judge.drift`) reads that record to choose the hour's mode (normal or
adapt), which `train_step` is handed; `evaluate_step` and `register_step` (`incremental.judge.verdict`)
judge and register the candidate, as they do a retrain's; `catch_up_step` (`incremental.retrain`)
retrains on the recent window when a drift was declared.

Each takes the settings and the hour (an `incremental.hours.Hour`, parsed once by the CLI or the DAG)
and returns a small typed value (`incremental.handover`): lake keys (relative to the lake root),
MLflow run ids, `runs:/` and `models:/` URIs, versions and metrics. That is all that travels
between Airflow tasks, as JSON, which may run on machines that share no disk: data stays in the
lake, models, holdouts and evaluations in MLflow (read back by URI). Reprocessing an hour whose
partition was already turned into a model version returns that version instead of training again
(no second version for the same inputs); an hour the champion's lineage already trained on
(`incremental.registry.lineage`) is skipped, never trained into it twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, TypedDict

from incremental.config import Settings
from incremental.data import lake, lake_lock, storage
from incremental.errors import IncrementalError
from incremental.handover import (
    AnchorFrozen,
    Extracted,
    HourRun,
    Monitored,
    Trained,
    Validated,
)
from incremental.hours import HOUR, Hour
from incremental.judge import verdict
from incremental.registry import lineage, tracking

if TYPE_CHECKING:
    from incremental.judge.drift import DriftState
    from incremental.judge.drift_rule import AssessmentRecord, DriftContext, PrequentialRecord

log = logging.getLogger(__name__)


class PipelineError(IncrementalError, RuntimeError):
    """A stage cannot run on this hour; the message says why."""


def lake_key(settings: Settings, path: storage.LakePath | str) -> str:
    """A lake object as its key under the lake root: what every worker can resolve, never a local path."""
    return storage.key(settings.lake, path)


def validated_partition(settings: Settings, hour: Hour, what: str) -> lake.Partition:
    """The hour's partition, which must be validated (`what`: what cannot be done otherwise)."""
    part = lake.partition(settings.lake, hour)
    if part.status != "validated" or part.manifest is None:
        raise PipelineError(f"hour {hour} is {part.status}, not validated: {what}")
    return part


# --- the stages ----------------------------------------------------------------------------
def extract_step(settings: Settings, hour: Hour) -> Extracted:
    from incremental.data.extract import extract_hour
    from incremental.data.warehouse import Warehouse

    key = lake_key(settings, lake.partition_dir(settings.lake, hour))  # where it goes: a path, nothing read
    manifest = extract_hour(Warehouse(settings.warehouse_url), settings.lake, hour)
    return Extracted(hour=hour, rows=manifest["rows"], sha256=manifest.get("sha256"), delta_rows=manifest.get("delta_rows"),
                     lake_key=key)


def validate_step(settings: Settings, hour: Hour) -> Validated:
    from incremental.validation.validate import validate_hour

    report = validate_hour(settings.lake, hour, settings.validation)
    return Validated(hour=hour, status=report.status, rows=report.rows, summary=report.summary(),
                     warnings=tuple(c.message for c in report.warnings), lake_key=lake_key(settings, report.path),
                     data_docs=lake_key(settings, report.data_docs) if report.data_docs else None,
                     part=report.part, quarantined_rows=report.quarantined_rows,
                     quarantined_rows_key=lake_key(settings, report.rows_path) if report.rows_path else None,
                     hour_validated=report.hour_validated)


def monitor_step(settings: Settings, hour: Hour, *, dry_run: bool = False) -> Monitored:
    """The champion scores the validated hour (before anything trains on it); the drift rule decides the mode.

    Test, then train: an hour is scored once, by the champion served when it first arrived. A
    re-run or backfill of the hour keeps that record (a later champion may have trained on the
    hour: its score there would be train-on-test). A dry run records nothing and moves no
    episode: it says what the rule would decide. What `train` reads of the episode for this hour
    (`Monitored.context`, `start_version`) is taken here, once the episode has moved on."""
    from incremental.judge import drift

    found = tracking.champion(settings)
    mode, observation = (_observe_hour(settings, found[0], hour, dry_run) if found is not None
                    else (None, _Observation(note="no champion yet: nothing to score")))
    state = drift.load_state(settings)  # once the episode has moved on (if it did)
    return Monitored(hour=hour, mode=state.mode if mode is None else mode, **observation, **_episode(settings, state, hour))


class _Observation(TypedDict, total=False):
    """What `monitor_step` observed of the hour, less its mode and the episode's context (fields of `Monitored`)."""

    champion_version: str
    note: str
    dry_run: bool
    assessment: AssessmentRecord
    declared_now: bool
    ended_now: bool
    declared_at: str | None
    anomalous: tuple[str, ...]
    changed_slices: tuple[str, ...]
    anchor: AnchorFrozen | None


def _observe_hour(settings: Settings, version: str, hour: Hour, dry_run: bool) -> tuple[str, _Observation]:
    """The champion `version` scores the hour (`_scored`), the drift rule assesses it and, unless a
    dry run, the episode moves on (and the anchor rolls when a drift is declared now): the mode, and
    what else was found."""
    from incremental.judge import drift, drift_rule, prequential

    recs, late = _scored(settings, version, hour, dry_run)
    state = drift.load_state(settings)
    assessment = drift_rule.assess(prequential.usable(recs, state.since), hour, settings.drift)
    if late:  # no record of this hour: no verdict (the evaluation compares the champion's holdout with its anchor)
        assessment = drift_rule.Assessment(f"{hour}", note=late)
    if dry_run:
        return state.mode, {"champion_version": version, "dry_run": True, "assessment": assessment.to_dict()}
    observed = drift.observe(settings, assessment, hour, champion=version)
    anchor = None
    if observed["declared_now"]:
        from incremental.retrain import roll_anchor

        anchor = roll_anchor(settings, hour, reason=f"drift declared at {hour}: "
                             + "; ".join(observed["assessment"]["evidence"])[:500],
                             stable=observed["assessment"]["stable_slices"])
    return observed["mode"], {
        "champion_version": version, "assessment": observed["assessment"], "declared_now": observed["declared_now"],
        "ended_now": observed["ended_now"], "declared_at": observed["declared_at"],
        "anomalous": tuple(observed["anomalous"]), "changed_slices": tuple(observed["changed_slices"]), "anchor": anchor}


def _scored(settings: Settings, version: str, hour: Hour, dry_run: bool) -> tuple[list[PrequentialRecord], str]:
    """The prequential record with the hour scored by `version`, unless it was scored before (by
    the champion served when it arrived) or the champion's lineage may have trained on it: then
    the hour is late, and the second value says why (else "")."""
    from incremental.judge import prequential

    recs = prequential.records(settings)
    scored = [r for r in recs if r["hour"] == f"{hour}"  # records are keyed by the hour's text (`record_once`)
              and r.get("source", prequential.PREQUENTIAL) == prequential.PREQUENTIAL]
    trained_until = lineage.of(settings, version).trained_through if not scored else None
    if not scored and trained_until is not None and hour < trained_until:
        # never scored on arrival (a backfill of older hours, a window before the first champion,
        # an hour that arrived after a later one): this champion, an ancestor or their replay may
        # have trained on it; no record
        late = (f"not scored, a late hour: champion version {version}'s lineage trained on hours up to "
                f"{trained_until} (train-on-test)")
        log.warning("hour %s is %s", hour, late)
        return recs, late
    if not scored:
        record = _record(settings, version, hour)
        if dry_run:
            return [*recs, record], ""
        prequential.record_once(settings, record)  # another run of the hour may have scored it meanwhile
        return prequential.records(settings), ""
    if scored[0]["champion_version"] != version:
        log.info("hour %s was scored by version %s when it arrived: kept (test, then train), not scored again by %s",
                 hour, scored[0]["champion_version"], version)
    return recs, ""


def _record(settings: Settings, version: str, hour: Hour) -> PrequentialRecord:
    """Score `version` on all the hour's rows: its prequential record (test, then train)."""
    from incremental.judge import metrics, prequential
    from incremental.judge.evaluate import score_dir

    part = validated_partition(settings, hour, "nothing to monitor")
    frame = lake.read_partition(part).to_pandas()
    scores = score_dir(tracking.version_model_dir(settings, version), frame, settings)
    return prequential.make_record(hour, version, metrics.evaluate(frame, scores))


class Episode(TypedDict):
    context: DriftContext
    start_version: str | None


def _episode(settings: Settings, state: DriftState, hour: Hour) -> Episode:
    """What `train` reads of the drift episode for `hour`: the context (mode, this hour's anomalies,
    changed slices, what replay leaves out) and, in adapt mode, the shadow chain's head it starts from."""
    from incremental.judge import drift

    context = drift.context(state, hour, settings.drift)
    return {"context": context, "start_version": state.shadow_version if context["mode"] == drift.ADAPT else None}


def _mode_settings(settings: Settings, mode: str) -> Settings:
    if mode != "adapt":
        return settings
    a = settings.drift.adapt
    return settings.with_training(learning_rate=a.learning_rate, max_steps=a.max_steps,
                                  replay_fraction=a.replay_fraction, replay_hours=a.replay_hours,
                                  l2sp_strength=a.l2sp_strength)


def train_step(
    settings: Settings, hour: Hour, monitored: Monitored | None = None, *,
    overrides: dict[str, float | int] | None = None, airflow_run_id: str | None = None,
) -> Trained:
    """Update the champion on the hour, or find the version this partition already produced, or
    skip an hour the champion's lineage already trained on (never trained into it twice).

    `monitored`: what `monitor_step` handed on for this hour (the mode and the drift context,
    the shadow chain's head); without it (`incremental train`) they are read from the drift state."""
    from incremental.judge import anchor, drift, drift_rule
    from incremental.model.update import holdout_uri, train_hour
    from incremental.registry import champion as registry

    if monitored is not None and monitored.hour != hour:
        raise PipelineError(f"train of hour {hour} was handed the monitoring of {monitored.hour}")
    episode: Episode = ({"context": monitored.context, "start_version": monitored.start_version}
                        if monitored is not None else _episode(settings, drift.load_state(settings), hour))
    context: DriftContext = episode["context"]
    part = validated_partition(settings, hour, "it cannot be trained on")
    assert part.manifest is not None  # a validated hour has one
    sha = part.manifest["sha256"]
    champion = tracking.champion(settings)  # reuse only what the current champion would make again
    existing = registry.find_processed(settings, hour, sha, champion[0] if champion else None)
    if existing is not None and not overrides:
        log.info("hour %s (partition %s) already produced version %s: reusing it", hour, sha[:12],
                 existing.version)
        return Trained(hour=hour, reused_version=str(existing.version), run_id=existing.run_id, partition_sha256=sha)
    skipped = lineage.already_trained(settings, hour, champion[0] if champion else None, sha,
                                      start_version=episode["start_version"])
    if skipped is not None:
        log.info("hour %s: %s", hour, skipped.message)
        return Trained(hour=hour, partition_sha256=sha, skipped=skipped.message, champion=skipped.champion,
                       trained_by=skipped.trained_by, trained_through=skipped.trained_through)
    champion = tracking.champion(settings)
    if champion is None and anchor.current(settings.lake) is None:  # never bootstrapped: an update from the base
        # weights would train for minutes, then fail at the gate for want of the anchor set a first model freezes
        raise PipelineError(f"no champion yet under {settings.home}: train the first one with `incremental bootstrap "
                            f"--start ISO --end ISO` on the hours validated so far (it also freezes the anchor set), "
                            f"then run hour {hour} again")
    result = train_hour(_mode_settings(settings, context["mode"]), part, airflow_run_id=airflow_run_id,
                        overrides=overrides, start_version=episode["start_version"],
                        stale=drift_rule.stale_rows(context))
    return Trained(hour=hour, interval_end=hour + HOUR, drift=context, compare_with=champion[0] if champion else None,
                   run_id=result.run_id, model_uri=result.model_uri, holdout_uri=holdout_uri(result.run_id, result.holdout_path),
                   parent_version=result.parent_version, data_hash=result.data_hash, partition_sha256=sha,
                   resumed_from_step=result.resumed_from_step,
                   train_metrics={k: float(v) for k, v in result.metrics.items()})


def run_hour(
    settings: Settings, hour: Hour, *, overrides: dict[str, float | int] | None = None,
    force_promote_reason: str | None = None, dry_run: bool = False, airflow_run_id: str | None = None,
) -> HourRun:
    """The whole hour without Airflow: extract -> validate -> monitor -> train -> evaluate ->
    register/reject -> catch-up (only when a drift was declared).

    Two runs of the same hour take turns (`run_lock`): the second waits for the first to finish,
    saying so, then finds what the first made (its version, reused; or its skip) instead of
    judging the same candidate again."""
    from incremental.progress import duration
    from incremental.progress import log as progress
    from incremental.retrain import catch_up_step

    began = time.perf_counter()

    def done(what: str) -> None:  # a line per stage: the hour is never silent before training starts
        progress.info("hour %s: %s (%s)", hour, what, duration(time.perf_counter() - began))

    with run_lock(settings, hour):
        extracted = extract_step(settings, hour)
        done(f"extracted, {extracted.rows} rows")
        validated = validate_step(settings, hour)
        if not validated.validated:
            return HourRun(hour=hour, status="quarantined", rows=extracted.rows, summary=validated.summary,
                           lake_key=validated.lake_key)
        done("validated")
        monitored = monitor_step(settings, hour, dry_run=dry_run)
        done(f"scored by champion {monitored.champion_version}, mode {monitored.mode}" if monitored.champion_version
             else f"not scored ({monitored.note}), mode {monitored.mode}")
        trained = train_step(settings, hour, monitored, overrides=overrides, airflow_run_id=airflow_run_id)
        done(f"reusing version {trained.reused_version}" if trained.reused_version
             else "already in the champion's lineage" if trained.skipped else "trained")
        evaluation = verdict.evaluate_step(settings, hour, trained)
        registered = verdict.register_step(settings, hour, trained, evaluation, airflow_run_id=airflow_run_id,
                                           force_promote_reason=force_promote_reason, dry_run=dry_run)
        caught_up = catch_up_step(settings, hour, airflow_run_id=airflow_run_id) if not dry_run else None
        return HourRun(hour=hour, status="done", rows=extracted.rows, warnings=validated.warnings,
                       monitored_mode=monitored.mode, drift=monitored.assessment, registered=registered,
                       catch_up=caught_up if caught_up is not None and caught_up.registered is not None else None)


# The longest a run of an hour waits for another run of the same hour: the hourly DAG's run
# timeout, longer than any one run. On an object-store lake the lock is a lease of RUN_LEASE_S
# (a run that died holding it blocks the next one that long at most).
RUN_WAIT_S = 3 * 3600.0
RUN_LEASE_S = 3600.0


def run_lock_name(hour: Hour) -> str:
    """The lake lock (`incremental.data.lake_lock`) that a run of the hour holds from extract to catch-up."""
    return f"run-{hour:%Y%m%dT%H}"


@contextmanager
def run_lock(settings: Settings, hour: Hour, timeout: float = RUN_WAIT_S) -> Iterator[None]:
    """Hold the hour's run lock: one run of an hour at a time, the next one waiting (and saying so)."""
    name = run_lock_name(hour)
    with ExitStack() as held:
        try:  # free: most runs
            held.enter_context(lake_lock.lock(settings.lake, name, timeout=0.0, lease=RUN_LEASE_S))
        except lake_lock.LockTimeout as busy:
            log.warning("hour %s is being run by another process: waiting for it to finish (up to %.0f min; "
                        "the lock is held by %s), then going on with what it made", hour, timeout / 60,
                        getattr(busy, "holder", None) or "a process this worker cannot name")
            try:
                held.enter_context(lake_lock.lock(settings.lake, name, timeout=timeout, lease=RUN_LEASE_S))
            except lake_lock.LockTimeout:
                raise PipelineError(f"hour {hour} has been run by another process for more than {timeout / 60:.0f} "
                                    f"min (lake lock {name}): is it stuck? Stop it, then run the hour again") from None
        yield
