"""One hour, stage by stage: the functions the CLI (`incremental run-hour`) and the DAGs call.

    extract_step -> validate_step -> monitor_step -> train_step -> evaluate_step -> register_step
                                                                               -> catch_up_step

`monitor_step` is test-then-train: the champion scores the hour before anything trains on it,
and the drift rule (`incremental.judge.drift`) reads that record to choose the hour's mode (normal or
adapt); `catch_up_step` retrains on the recent window when a drift was declared.

Each takes the settings and the hour and returns a small JSON-able dict: lake keys (relative to
the lake root), MLflow run ids, `runs:/` and `models:/` URIs, versions and metrics. That is all
that travels between Airflow tasks, which may run on machines that share no disk: data stays in
the lake, models, holdouts and evaluations in MLflow (read back by URI). Reprocessing an hour whose partition was already turned into a model version
returns that version instead of training again (no second version for the same inputs); an hour
the champion's lineage already trained on (`incremental.registry.lineage`) is skipped, never trained into
it twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any

import pyarrow as pa

from incremental.config import Settings
from incremental.data import lake, lake_lock, storage
from incremental.errors import IncrementalError
from incremental.handover import Evaluated
from incremental.hours import HOUR, iso_hour, parse_hour
from incremental.model import replay
from incremental.registry import lineage, links, tracking

log = logging.getLogger(__name__)


class PipelineError(IncrementalError, RuntimeError):
    """A stage cannot run on this hour; the message says why."""


def lake_key(settings: Settings, path: storage.LakePath | str) -> str:
    """A lake object as its key under the lake root: what every worker can resolve, never a local path."""
    return storage.key(settings.lake, path)


def mlflow_urls(settings: Settings, run_id: str | None, version: str | None) -> dict[str, str]:
    urls = {}
    if run_id:
        client = tracking.configure(settings)
        experiment = client.get_run(run_id).info.experiment_id
        urls["mlflow_run_url"] = links.run_url(settings.mlflow_ui_url, run_id, experiment)
    if version:
        urls["model_version_url"] = links.model_version_url(settings.mlflow_ui_url, settings.model_name, version)
    return urls


# --- the stages ----------------------------------------------------------------------------
def extract_step(settings: Settings, start: datetime) -> dict[str, Any]:
    from incremental.data.extract import extract_hour
    from incremental.data.warehouse import Warehouse

    start = parse_hour(start)
    manifest = extract_hour(Warehouse(settings.warehouse_url), settings.lake, start)
    return {"hour": iso_hour(start), "rows": manifest["rows"], "sha256": manifest["sha256"],
            "delta_rows": manifest.get("delta_rows"),
            "lake_key": lake_key(settings, lake.partition_dir(settings.lake, start))}


def validate_step(settings: Settings, start: datetime) -> dict[str, Any]:
    from incremental.validation.validate import validate_hour

    start = parse_hour(start)
    report = validate_hour(settings.lake, start, settings.validation)
    return {"hour": iso_hour(start), "status": report.status, "rows": report.rows, "summary": report.summary(),
            "warnings": [c.message for c in report.warnings], "lake_key": lake_key(settings, report.path),
            "data_docs": lake_key(settings, report.data_docs) if report.data_docs else None,
            "part": report.part, "quarantined_rows": report.quarantined_rows,
            "quarantined_rows_key": lake_key(settings, report.rows_path) if report.rows_path else None,
            "hour_validated": report.hour_validated}


def monitor_step(settings: Settings, start: datetime, *, dry_run: bool = False) -> dict[str, Any]:
    """The champion scores the validated hour (before anything trains on it); the drift rule decides the mode.

    Test, then train: an hour is scored once, by the champion served when it first arrived. A
    re-run or backfill of the hour keeps that record (a later champion may have trained on the
    hour: its score there would be train-on-test). A dry run records nothing and moves no
    episode: it says what the rule would decide."""
    from incremental.judge import drift

    start = parse_hour(start)
    state = drift.load_state(settings)
    found = tracking.champion(settings)
    if found is None:
        return {"hour": iso_hour(start), "mode": state.mode, "note": "no champion yet: nothing to score"}
    version = found[0]
    recs = drift.records(settings)
    scored = [r for r in recs if parse_hour(r["hour"]) == start and r.get("source", drift.PREQUENTIAL)
              == drift.PREQUENTIAL]
    trained_until = lineage.of(settings, version).trained_through if not scored else None
    if not scored and trained_until is not None and start < trained_until:
        # never scored on arrival (a backfill of older hours, a window before the first champion,
        # an hour that arrived after a later one): this champion, an ancestor or their replay may
        # have trained on it; no record
        log.warning("hour %s is not scored: champion version %s's lineage trained on hours up to %s (train-on-test)",
                    iso_hour(start), version, iso_hour(trained_until))
    elif not scored:
        record = _record(settings, version, start)
        if dry_run:
            recs = [*recs, record]
        else:
            drift.record_once(settings, record)  # another run of the hour may have scored it meanwhile
            recs = drift.records(settings)
    elif scored[0]["champion_version"] != version:
        log.info("hour %s was scored by version %s when it arrived: kept (test, then train), not scored again by %s",
                 iso_hour(start), scored[0]["champion_version"], version)
    series = drift.usable(recs, state.since)
    assessment = drift.assess(series, start, settings.drift)
    if dry_run:
        return {"hour": iso_hour(start), "champion_version": version, "mode": state.mode, "dry_run": True,
                "assessment": assessment.to_dict()}
    observed = drift.observe(settings, assessment, start, champion=version)
    if observed["declared_now"]:
        observed["anchor"] = roll_anchor(settings, start, reason=f"drift declared at {iso_hour(start)}: "
                                         + "; ".join(observed["assessment"]["evidence"])[:500],
                                         stable=observed["assessment"]["stable_slices"])
    return {"hour": iso_hour(start), "champion_version": version, **observed}


def _record(settings: Settings, version: str, hour: datetime) -> dict[str, Any]:
    """Score `version` on all the hour's rows: its prequential record (test, then train)."""
    from incremental.judge import drift, metrics
    from incremental.judge.evaluate import score_dir

    part = lake.partition(settings.lake, hour)
    if part.status != "validated":
        raise PipelineError(f"hour {iso_hour(hour)} is {part.status}, not validated: nothing to monitor")
    frame = lake.read_partition(part).to_pandas()
    scores = score_dir(tracking.version_model_dir(settings, version), frame, settings)
    return drift.make_record(hour, version, metrics.evaluate(frame, scores))


def roll_anchor(settings: Settings, start: datetime, reason: str, stable: list[str]) -> dict[str, Any]:
    """Replace the anchor by a sample of the holdout sessions of the last `catch_up_hours`
    validated hours (recorded in the anchor history), carrying over the rows of the `stable`
    categories (in line with their reference this hour, or on their last K hours pooled,
    `drift.assess`) from the old anchor and earlier holdout sessions (`_stable_rows`): what the
    data show still holds stays protected, held to the champion of the declaration (the
    anchor's baseline, `gate` ``anchor_cumulative_auc_drop``). A category unsure or too thin to
    judge is not carried (still replayed): protecting it on old rows blocked the adaptation of
    one that had in fact changed (tried: `tests/e2e/test_drift_response.py`, every adapt
    candidate rejected on `storage`)."""
    from incremental.judge import anchor

    current = anchor.current(settings.lake)
    window = _recent_window(settings, start)
    carry = _stable_rows(settings, stable, window[0]) if current is not None and stable else None
    return freeze_anchor(settings, window[0], window[1], current.size if current else 4000, reason=reason,
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


def _recent_window(settings: Settings, start: datetime) -> tuple[datetime, datetime]:
    """[first, start + 1h) over the last `catch_up_hours` validated hours up to `start`."""
    end = start + HOUR
    parts = lake.validated_partitions(settings.lake, end, settings.drift.catch_up_hours * 4)
    recent = sorted(p.start for p in parts)[-settings.drift.catch_up_hours:]
    return (recent[0] if recent else start), end


def _mode_settings(settings: Settings, mode: str) -> Settings:
    if mode != "adapt":
        return settings
    a = settings.drift.adapt
    return settings.with_training(learning_rate=a.learning_rate, max_steps=a.max_steps,
                                  replay_fraction=a.replay_fraction, replay_hours=a.replay_hours,
                                  l2sp_strength=a.l2sp_strength)


def _stale_rows(context: dict[str, Any]) -> tuple[replay.Stale, ...]:
    """The rules of what replay and the catch-up leave out (`drift.stale_rules`), as `replay.Stale`."""
    return tuple(replay.Stale.from_dict(rule) for rule in context.get("stale", []))


def train_step(
    settings: Settings, start: datetime, *, overrides: dict[str, Any] | None = None, airflow_run_id: str | None = None
) -> dict[str, Any]:
    """Update the champion on the hour, or find the version this partition already produced, or
    skip an hour the champion's lineage already trained on (never trained into it twice)."""
    from incremental.judge import drift
    from incremental.model.update import holdout_uri, train_hour
    from incremental.registry import champion as registry

    start = parse_hour(start)
    state = drift.load_state(settings)
    context = drift.context(state, start, settings.drift)
    part = lake.partition(settings.lake, start)
    if part.status != "validated":
        raise PipelineError(f"hour {iso_hour(start)} is {part.status}, not validated: it cannot be trained on")
    assert part.manifest is not None  # a validated hour has one
    sha = part.manifest["sha256"]
    champion = tracking.champion(settings)  # reuse only what the current champion would make again
    existing = registry.find_processed(settings, start, sha, champion[0] if champion else None)
    if existing is not None and not overrides:
        log.info("hour %s (partition %s) already produced version %s: reusing it", iso_hour(start), sha[:12],
                 existing.version)
        return {"hour": iso_hour(start), "reused_version": str(existing.version), "run_id": existing.run_id,
                "partition_sha256": sha}
    adapting = context["mode"] == "adapt"
    skipped = already_trained(settings, start, champion[0] if champion else None, sha,
                              start_version=state.shadow_version if adapting else None)
    if skipped is not None:
        log.info("hour %s: %s", iso_hour(start), skipped["skipped"])
        return {"hour": iso_hour(start), "reused_version": None, "partition_sha256": sha, **skipped}
    champion = tracking.champion(settings)
    result = train_hour(_mode_settings(settings, context["mode"]), start, airflow_run_id=airflow_run_id,
                        overrides=overrides, start_version=state.shadow_version if adapting else None,
                        stale=_stale_rows(context))
    return {
        "hour": iso_hour(start),
        "interval_end": iso_hour(start + HOUR),
        "reused_version": None,
        "mode": context["mode"],
        "drift": context,
        "compare_with": champion[0] if champion else None,
        "run_id": result.run_id,
        "model_uri": result.model_uri,
        "holdout_uri": holdout_uri(result.run_id, result.holdout_path),
        "parent_version": result.parent_version,
        "data_hash": result.data_hash,
        "partition_sha256": sha,
        "resumed_from_step": result.resumed_from_step,
        "train_metrics": {k: float(v) for k, v in result.metrics.items()},
    }


def already_trained(settings: Settings, start: datetime, champion: str | None, sha256: str, *,
                    start_version: str | None = None) -> dict[str, Any] | None:
    """Why the hour is not trained on, when the champion's lineage already trained on it as a fresh
    hour (`incremental.registry.lineage`): a re-run or backfill of an hour the champion learnt, an hour of
    the window it was bootstrapped on, or (`start_version`, a drift episode's shadow chain) of the
    model the update would start from. Training overrides do not change that: an hour is never
    trained into the champion twice; a full retrain (`incremental bootstrap`) retrains old hours.
    Rows that reached the hour since (late or re-admitted rows: a new partition identity) are not
    trained as an update of their own either; they reach the champion through the replay of the
    hours after it and through a full retrain. None: no such lineage trained on the hour."""
    for version, whose in ((champion, "champion"), (start_version, "the drift episode's shadow chain at")):
        if version is None or (whose != "champion" and version == champion):
            continue
        found = lineage.of(settings, version)
        trained = found.trained(start)
        if trained is None:
            continue
        through = iso_hour(found.trained_through) if found.trained_through else "?"
        by = "" if trained.version == str(version) else f", by its ancestor v{trained.version}"
        changed = ("" if trained.same_data(sha256) else "; rows that reached the hour since (late or re-admitted) "
                   "are not trained as an update of their own: the replay of later hours and a full retrain use them")
        message = (f"hour {iso_hour(start)} is already in {whose} v{version}'s training data (trained through "
                   f"{through}{by}): not trained again{changed}; a full retrain (incremental bootstrap --start ... "
                   "--end ...) retrains old hours")
        return {"skipped": message, "champion": champion, "trained_by": trained.version, "trained_through": through}
    return None


def evaluate_step(settings: Settings, start: datetime, trained: dict[str, Any]) -> Evaluated:
    """Score the candidate (and its parent) on the fresh holdout and the anchor set; apply the gate."""
    from incremental.judge import evaluate

    if trained.get("skipped"):
        return Evaluated(hour=trained["hour"], skipped=trained["skipped"])
    if trained.get("reused_version"):
        return Evaluated(hour=trained["hour"], reused_version=trained["reused_version"])
    evaluation = evaluate.evaluate_candidate(settings, trained, trained.get("drift"))
    return Evaluated(
        hour=trained["hour"],
        run_id=trained["run_id"],
        evaluation_uri=evaluation["uri"],
        decision=evaluation["decision"]["decision"],
        reasons=tuple(evaluation["decision"]["reasons"]),
        key_metrics=evaluation["key_metrics"],
    )


def register_step(
    settings: Settings,
    start: datetime,
    trained: dict[str, Any],
    evaluation: Evaluated,
    *,
    airflow_run_id: str | None = None,
    force_promote_reason: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Register the candidate as a version; approved -> champion (compare-and-set); report to MLflow."""
    from incremental.registry import champion as registry
    from incremental.registry import review as report

    start = parse_hour(start)
    if trained.get("skipped"):  # nothing trained: no version, the champion unchanged
        return {"hour": iso_hour(start), "version": None, "decision": "skipped", "skipped": trained["skipped"],
                "reasons": [trained["skipped"]], "reused": False, "trained_by": trained.get("trained_by"),
                "champion": tracking.champion_version(tracking.configure(settings), settings.model_name)}
    if trained.get("reused_version"):
        version = trained["reused_version"]
        mv = tracking.configure(settings).get_model_version(settings.model_name, version)
        out = {"hour": iso_hour(start), "version": version, "decision": mv.tags.get("decision"),
               "reasons": json.loads(mv.tags.get("reasons", "[]")), "reused": True}
        if force_promote_reason and not dry_run:
            out["override"] = registry.promote(settings, version, force_promote_reason)
        out["champion"] = tracking.champion_version(tracking.configure(settings), settings.model_name)
        return {**out, **mlflow_urls(settings, trained.get("run_id"), version)}

    from incremental.judge.evaluate import load_evaluation

    full = load_evaluation(settings, trained["run_id"])
    decision = full["decision"]
    if dry_run:
        return {"hour": iso_hour(start), "version": None, "decision": decision["decision"], "dry_run": True,
                "reasons": decision["reasons"], "champion": (champion := tracking.champion(settings)) and champion[0],
                **mlflow_urls(settings, trained["run_id"], None)}
    registered = registry.register_candidate(
        settings,
        model_uri=trained["model_uri"],
        run_id=trained["run_id"],
        interval_start=parse_hour(full["interval_start"]),
        interval_end=parse_hour(full["interval_end"]),
        parent_version=trained["parent_version"],
        expected_champion=trained.get("compare_with", trained["parent_version"]),
        data_hash=trained["data_hash"],
        partition_sha256=trained.get("partition_sha256"),
        approved=decision["approved"],
        reasons=decision["reasons"],
        metrics=full["key_metrics"],
        airflow_run_id=airflow_run_id,
        anchor_sha256=full.get("anchor", {}).get("sha256"),
        extra_tags=_drift_tags(full),
    )
    if not registered["reused"]:
        from incremental.judge import drift

        drift.after_decision(settings, start, registered["version"], registered["decision"],
                             trained.get("kind", "hourly"), improved=_improved(full), forgot=_forgot(decision))
    if force_promote_reason and registered["decision"] != "approved":
        registered["override"] = registry.promote(settings, registered["version"], force_promote_reason)
        registered["champion"] = registered["override"]["champion"]
    if not registered["reused"]:
        report.log_report(settings, trained["run_id"], full, registered)
    context = full.get("drift") or {}
    return {"hour": iso_hour(start), **registered, "mode": full.get("mode", "normal"),
            "changed_slices": context.get("changed_slices", []),
            "drift_evidence": context.get("anomalous", []) or context.get("evidence", []),
            **mlflow_urls(settings, trained["run_id"], registered["version"])}


def _improved(evaluation: dict[str, Any]) -> bool:
    """The candidate is significantly better than the champion on its fresh holdout (NDCG@10 or AUC)."""
    relative = (evaluation.get("candidate") or {}).get("holdout_vs_champion") or {}
    return any((relative.get(m) or {}).get("verdict") == "better" for m in ("ndcg@10", "auc"))


def _forgot(decision: dict[str, Any]) -> bool:
    """A forgetting check failed: the candidate broke what still holds on the anchor set."""
    return any(c["name"].startswith("anchor_") and not c["passed"] for c in decision.get("checks", []))


def _drift_tags(evaluation: dict[str, Any]) -> dict[str, str]:
    """What a reviewer needs on the version: the mode, the drift evidence, the slices judged changed."""
    context = evaluation.get("drift") or {}
    return {"mode": evaluation.get("mode", "normal"), "kind": evaluation.get("kind", "hourly"),
            "compared_with": str(evaluation.get("compared_with") or ""),
            "changed_slices": ",".join(context.get("changed_slices", [])),
            "drift_evidence": " | ".join(context.get("anomalous", []) or context.get("evidence", []))[:4000]}


def catch_up_step(settings: Settings, start: datetime, *, airflow_run_id: str | None = None) -> dict[str, Any]:
    """When a drift was declared and its catch-up has not run: retrain from the base weights on
    what still holds, through the same (relative) gate. That is the validated hours of the adapt
    replay window (`drift.adapt.replay_hours`) less the stale rows (the changed slices' rows from
    before the drift), judged on the holdout of the last `catch_up_hours` hours (the new regime).
    Tried before: a retrain on those last hours alone ranked the drifted slices well and had
    forgotten the others (anchor AUC of unchanged categories from 0.75-0.86 down to 0.24-0.47)."""
    from incremental.judge import drift

    start = parse_hour(start)
    state = drift.load_state(settings)
    if state.mode != drift.ADAPT or state.catch_up != "pending":
        return {"hour": iso_hour(start), "skipped": f"mode {state.mode}, catch-up {state.catch_up or 'not needed'}"}
    context = drift.context(state, start, settings.drift)
    recent_start, end = _recent_window(settings, start)
    window = lake.validated_partitions(settings.lake, end, settings.drift.adapt.replay_hours)
    window_start = min([p.start for p in window], default=recent_start)
    result = full_retrain(settings, window_start, end, airflow_run_id=airflow_run_id, kind="catch_up",
                          context={**context, "mode": "catch_up"}, stale=_stale_rows(context),
                          holdout_from=recent_start, hour=start)
    return {**result, "hour": iso_hour(start), "window": [iso_hour(window_start), iso_hour(end)],
            "judged_on": [iso_hour(recent_start), iso_hour(end)]}


def run_hour(
    settings: Settings,
    start: datetime,
    *,
    overrides: dict[str, Any] | None = None,
    force_promote_reason: str | None = None,
    dry_run: bool = False,
    airflow_run_id: str | None = None,
) -> dict[str, Any]:
    """The whole hour without Airflow: extract -> validate -> monitor -> train -> evaluate ->
    register/reject -> catch-up (only when a drift was declared).

    Two runs of the same hour take turns (`run_lock`): the second waits for the first to finish,
    saying so, then finds what the first made (its version, reused; or its skip) instead of
    judging the same candidate again."""
    start = parse_hour(start)
    with run_lock(settings, start):
        return _run_hour(settings, start, overrides=overrides, force_promote_reason=force_promote_reason,
                         dry_run=dry_run, airflow_run_id=airflow_run_id)


# The longest a run of an hour waits for another run of the same hour: the hourly DAG's run
# timeout, longer than any one run. On an object-store lake the lock is a lease of RUN_LEASE_S
# (a run that died holding it blocks the next one that long at most).
RUN_WAIT_S = 3 * 3600.0
RUN_LEASE_S = 3600.0


def run_lock_name(start: datetime) -> str:
    """The lake lock (`incremental.data.lake_lock`) that a run of the hour holds from extract to catch-up."""
    return f"run-{parse_hour(start):%Y%m%dT%H}"


@contextmanager
def run_lock(settings: Settings, start: datetime, timeout: float = RUN_WAIT_S) -> Iterator[None]:
    """Hold the hour's run lock: one run of an hour at a time, the next one waiting (and saying so)."""
    hour, name = iso_hour(start), run_lock_name(start)
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


def _run_hour(
    settings: Settings,
    start: datetime,
    *,
    overrides: dict[str, Any] | None,
    force_promote_reason: str | None,
    dry_run: bool,
    airflow_run_id: str | None,
) -> dict[str, Any]:
    extracted = extract_step(settings, start)
    validated = validate_step(settings, start)
    if validated["status"] != "validated":
        return {"hour": iso_hour(start), "status": "quarantined", "rows": extracted["rows"],
                "summary": validated["summary"], "lake_key": validated["lake_key"]}
    monitored = monitor_step(settings, start, dry_run=dry_run)
    trained = train_step(settings, start, overrides=overrides, airflow_run_id=airflow_run_id)
    evaluation = evaluate_step(settings, start, trained)
    registered = register_step(settings, start, trained, evaluation, airflow_run_id=airflow_run_id,
                               force_promote_reason=force_promote_reason, dry_run=dry_run)
    caught_up = catch_up_step(settings, start, airflow_run_id=airflow_run_id) if not dry_run else None
    out = {"status": "done", "rows": extracted["rows"], "warnings": validated["warnings"],
           "mode": monitored.get("mode"), "drift": monitored.get("assessment"), **registered}
    if caught_up and "skipped" not in caught_up:
        out["catch_up"] = {k: caught_up.get(k) for k in ("window", "version", "decision", "reasons", "champion")}
        out["champion"] = caught_up.get("champion", out.get("champion"))
    return out


def full_retrain(
    settings: Settings, start: datetime, end: datetime, *, airflow_run_id: str | None = None,
    anchor_size: int = 4000, dry_run: bool = False, kind: str = "full_retrain",
    context: dict[str, Any] | None = None, stale: tuple[replay.Stale, ...] = (), holdout_from: datetime | None = None,
    hour: datetime | None = None,
) -> dict[str, Any]:
    """Train from the base weights on the validated hours of [start, end), through the same gate.

    Compared with (and compare-and-set against) the champion at the time training started; the
    first champion is judged by value thresholds only. Freezes the anchor set on the window if
    there is none yet, after training succeeded (anchor rows are holdout sessions, which
    training never sees, so the order changes no model). `hour`: the hour it runs for (a
    catch-up: the hour that found it pending, up to `replay_hours` after `start`); the decision,
    its drift alerts and what it hands over name that hour (default: `start`).
    """
    from incremental.judge import anchor
    from incremental.model.update import bootstrap, holdout_uri

    start, end = parse_hour(start), parse_hour(end)
    incumbent = tracking.champion(settings)
    result = bootstrap(settings, start, end, airflow_run_id=airflow_run_id, stale=stale, holdout_from=holdout_from)
    if anchor.current(settings.lake) is None:  # only once training worked: a failed bootstrap freezes nothing
        freeze_anchor(settings, start, end, anchor_size, reason="first bootstrap: no anchor yet", refresh=False)
    trained = {
        "hour": iso_hour(start),
        "interval_end": iso_hour(end),
        "reused_version": None,
        "run_id": result.run_id,
        "model_uri": result.model_uri,
        "holdout_uri": holdout_uri(result.run_id, result.holdout_path),
        "parent_version": incumbent[0] if incumbent else None,  # what it must beat and replace
        "data_hash": result.data_hash,
        "partition_sha256": None,
        "kind": kind,
        "mode": (context or {}).get("mode", kind),
        "drift": context or {"mode": kind, "anomalous": [], "changed_slices": []},
        "train_metrics": {k: float(v) for k, v in result.metrics.items()},
    }
    evaluation = evaluate_step(settings, start, trained)
    return register_step(settings, hour or start, trained, evaluation, airflow_run_id=airflow_run_id, dry_run=dry_run)


def freeze_anchor(settings: Settings, start: datetime, end: datetime, size: int, reason: str,
                  refresh: bool = False, carry: Any = None, protected: list[str] | None = None) -> dict[str, Any]:
    """Freeze (or refresh) the anchor; the champion of the moment becomes its forgetting baseline,
    held on the `protected` categories (None: all of them)."""
    from incremental.judge import anchor

    champion = tracking.champion(settings)
    info = anchor.freeze(settings.lake, parse_hour(start), parse_hour(end), size,
                         seed=settings.training.seed, reason=reason, refresh=refresh,
                         holdout_fraction=settings.training.holdout_fraction, carry=carry,
                         baseline_version=champion[0] if champion else None, protected_categories=protected)
    return {"sha256": info.sha256, "rows": info.rows, "reason": reason, "baseline_version": info.baseline_version,
            "protected_categories": info.protected_categories,
            "lake_key": lake_key(settings, anchor.anchor_dir(settings.lake))}
