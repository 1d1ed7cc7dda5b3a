"""What each `incremental` command does, once its arguments are parsed (`incremental.cli`: the
parser, and the process's edge that turns errors into exit codes).

Every command takes the settings and the parsed arguments, whose hours are already aware UTC
datetimes on the hour (`incremental.cli`'s argument types parse them, once); it prints for a
person, or JSON where a script reads the result.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from incremental.config import Settings
from incremental.data import files, lake
from incremental.data import quarantine as lake_quarantine
from incremental.data.warehouse import Warehouse
from incremental.errors import IncrementalError, InputError, require_reason
from incremental.hours import HOUR, Hour, hours, iso_hour

if TYPE_CHECKING:
    from pathlib import Path

    from incremental.handover import CaughtUp, HourRun, Registered
    from incremental.validation.report import ValidationReport


class Quarantined(IncrementalError):
    """An hour failed validation; the message says why and where the data went."""


def _hours(args: argparse.Namespace) -> list[Hour]:
    """The hours of `--start` .. `--end` (default: the start's hour alone)."""
    end = args.end or args.start + HOUR
    if end <= args.start:
        raise InputError(f"--end {iso_hour(end)} must be after --start {iso_hour(args.start)}")
    return hours(args.start, end)


def _print_json(payload: object) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))


# --- data plane ---------------------------------------------------------------------------
def cmd_warehouse_init(settings: Settings, args: argparse.Namespace) -> None:
    warehouse = Warehouse(settings.warehouse_url)
    warehouse.init_schema()
    print(f"warehouse ready: {warehouse}")


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.sim.simulate import simulate

    if args.scenario == "drift" and args.drift_at is not None and args.end is not None and args.drift_at >= args.end:
        # before the window is a drift simulated hour by hour (every hour drifted); after it, none would be
        raise InputError(f"--drift-at {iso_hour(args.drift_at)} is not before --end {iso_hour(args.end)}: no "
                         "hour of the window would drift (the hours before a drift are the steady scenario's)")
    summary = simulate(
        Warehouse(settings.warehouse_url),
        args.start,
        args.end,
        rate=args.rate,
        seed=args.seed,
        scenario=args.scenario,
        faults=args.fault or (),
        drift_at=args.drift_at,
    )
    _print_json(summary)


def cmd_import_judgments(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.sim.judgments import import_judgments

    summary = import_judgments(
        Warehouse(settings.warehouse_url),
        args.path,
        query_col=args.query_col,
        title_col=args.title_col,
        grade_col=args.grade_col,
        encoding=args.encoding,
        slice_by=args.slice_by,
        start=args.start,
        rate=args.rate,
        seed=args.seed,
    )
    _print_json(summary)


def cmd_extract(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.data.extract import extract_hour

    warehouse = Warehouse(settings.warehouse_url)
    for hour in _hours(args):
        manifest = extract_hour(warehouse, settings.lake, hour)
        where = (f"staged {manifest['staged']}" if manifest.get("staged") else
                 f"table version {manifest['version']}" if manifest.get("version") is not None else "")
        print(f"{iso_hour(hour)}  {manifest['rows']:>8} rows  sha256 {manifest['sha256'][:16]}  {where}")


def _each_hour(args: argparse.Namespace, validate: Callable[[Hour], ValidationReport], what: str) -> None:
    """Validate (or re-admit) each hour of the interval, print its summary; raise if any is quarantined."""
    quarantined = []
    for hour in _hours(args):
        report = validate(hour)
        print(report.summary())
        if report.status == "quarantined":
            quarantined.append(iso_hour(hour))
    if quarantined:
        raise Quarantined(f"{what}: {', '.join(quarantined)}")


def cmd_validate(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.validation.validate import validate_hour

    _each_hour(args, lambda hour: validate_hour(settings.lake, hour, settings.validation), "quarantined")


def cmd_partitions(settings: Settings, args: argparse.Namespace) -> None:
    print(f"{'hour':<18} {'status':<12} {'rows':>8} {'pending':>8} {'quarantined':>11} {'version':>7}  path")
    for hour in _hours(args):
        part = lake.partition(settings.lake, hour)
        counts = lake_quarantine.row_counts(settings.lake, hour)
        rows = counts["validated"] if part.status == "validated" else counts["extracted"] if part.status == "extracted" else ""
        pending = counts["extracted"] if part.status == "validated" else ""
        gone = lake.missing_parts(part)  # a validated hour whose file was deleted is not validated data
        status = "damaged" if gone else part.status
        version = part.version if part.version is not None else ""
        print(f"{iso_hour(hour)}  {status:<12} {rows:>8} {pending or '':>8} {counts['quarantined'] or '':>11} "
              f"{version:>7}  {part.path or ''}")
        if gone:
            print(f"    {part.status} but missing data file(s): {', '.join(gone)} (restore them from a backup)")


def cmd_readmit(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.validation.validate import readmit_hour

    _each_hour(args, lambda hour: readmit_hour(settings.lake, hour, settings.validation, args.reason),
               "still quarantined after re-admission")


# --- model plane --------------------------------------------------------------------------
def cmd_train(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.pipeline import train_step

    trained = train_step(settings, args.start)
    if trained.skipped is not None:
        print(f"{iso_hour(trained.hour)}  skipped: {trained.skipped}")
        return
    if trained.reused_version is not None:
        print(f"hour already processed: version {trained.reused_version} (MLflow run {trained.run_id})")
        return
    # train_step hands over what every worker can resolve (URIs, no local paths): print those
    print(f"MLflow run {trained.run_id}  (mode {trained.mode})")
    print(f"candidate  {trained.model_uri}")
    print(f"parent     {trained.parent_version or 'base weights'}; holdout {trained.holdout_uri}")


def cmd_bootstrap(settings: Settings, args: argparse.Namespace) -> None:
    """A full retrain: in this process, or (`--nproc N`, N > 1) in N processes started by torchrun,
    each of which runs this command again (with WORLD_SIZE set: `model.distributed`)."""
    from incremental import launch
    from incremental.model import distributed
    from incremental.model.update import bootstrap_window
    from incremental.retrain import full_retrain

    if args.end <= args.start:
        raise InputError(f"--end {iso_hour(args.end)} must be after --start {iso_hour(args.start)}")
    launched = distributed.from_env()  # set by torchrun
    if launched is None and args.nproc > 1:
        launch.check_split(*bootstrap_window(settings, args.start, args.end), args.nproc)
        launch.run_sharded("bootstrap", args.nproc, launch.bootstrap_args(
            args.start, args.end, anchor_size=args.anchor_size, dry_run=args.dry_run,
            airflow_run_id=args.airflow_run_id, result_json=str(args.result_json) if args.result_json else None,
            verbose=logging.getLogger().isEnabledFor(logging.INFO)))
        return
    launch.check_launched(launched, args.nproc)
    with distributed.session() as group:
        registered = full_retrain(settings, args.start, args.end, anchor_size=args.anchor_size, dry_run=args.dry_run,
                                  airflow_run_id=args.airflow_run_id)
    if group is not None and not group.is_main:
        return  # rank 0 prints the decision
    _print_decision(registered)
    if args.result_json is not None:
        files.atomic_write_json(args.result_json, registered.to_dict())


def cmd_catch_up(settings: Settings, args: argparse.Namespace) -> None:
    """The catch-up retrain the drift state asks for at `--hour` (nothing when none is pending): in
    this process, or (`--nproc N`, N > 1) in N processes started by torchrun, as `bootstrap` does."""
    from incremental import launch
    from incremental.handover import CaughtUp
    from incremental.judge.drift_rule import stale_rows
    from incremental.model import distributed
    from incremental.model.update import bootstrap_window
    from incremental.retrain import catch_up_settings, catch_up_step, pending_catch_up

    launched = distributed.from_env()  # set by torchrun
    if launched is None and args.nproc > 1:
        plan = pending_catch_up(settings, args.hour)
        if isinstance(plan, str):  # nothing to train: no process to start
            _caught_up(CaughtUp(hour=args.hour, skipped=plan), args.result_json)
            return
        launch.check_split(*bootstrap_window(catch_up_settings(settings), plan.start, plan.end), args.nproc,
                     stale=stale_rows(plan.context), holdout_from=plan.holdout_from)
        launch.run_sharded("catch-up", args.nproc, launch.catch_up_args(
            args.hour, dry_run=args.dry_run, airflow_run_id=args.airflow_run_id,
            result_json=str(args.result_json) if args.result_json else None,
            verbose=logging.getLogger().isEnabledFor(logging.INFO)))
        return
    launch.check_launched(launched, args.nproc)
    with distributed.session() as group:
        caught = catch_up_step(settings, args.hour, airflow_run_id=args.airflow_run_id, dry_run=args.dry_run)
    if group is not None and not group.is_main:
        return  # rank 0 prints the decision
    _caught_up(caught, args.result_json)


def _caught_up(caught: CaughtUp, result_json: Path | None) -> None:
    """A catch-up's decision (or why there was none), printed and, with `result_json`, written as JSON."""
    if caught.registered is None or caught.window is None or caught.judged_on is None:
        print(f"{iso_hour(caught.hour)}  no catch-up: {caught.skipped}")
    else:
        _print_decision(caught.registered)
        print(f"    catch-up retrain of the champion on {'/'.join(iso_hour(h) for h in caught.window)} (less the "
              f"stale rows), judged on {'/'.join(iso_hour(h) for h in caught.judged_on)}")
    if result_json is not None:
        files.atomic_write_json(result_json, caught.to_dict())


def cmd_benchmark_freeze(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.retrain import freeze_anchor

    if args.refresh:  # replacing the forgetting baseline is a recorded human decision (the DAG asks the same)
        require_reason(args.reason, "benchmark freeze --refresh (--reason)")
    _print_json(freeze_anchor(settings, args.start, args.end, args.size, args.reason, refresh=args.refresh).to_dict())


def cmd_benchmark_show(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.judge import anchor

    print(anchor.show(settings.lake))


def cmd_run_hour(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.pipeline import run_hour

    todo = _hours(args)
    if args.force_promote is not None:  # before any training: a short reason would fail after it
        require_reason(args.force_promote, "--force-promote")
    for i, hour in enumerate(todo):
        run = run_hour(settings, hour, force_promote_reason=args.force_promote, dry_run=args.dry_run)
        if run.registered is None:  # quarantined
            print(f"{iso_hour(hour)}  QUARANTINED: not trained\n{run.summary}")
            # the range stops here: an update never skips an hour (the next trains on the champion of this one)
            rest = todo[i + 1:]
            untried = (f"; not attempted: {iso_hour(rest[0])}" + (f" .. {iso_hour(rest[-1])}" if len(rest) > 1 else "")
                       + " (fix or re-admit the quarantined hour, then run them)" if rest else "")
            raise Quarantined(f"hour {iso_hour(hour)} was quarantined; data kept at {settings.lake / str(run.lake_key)}"
                              f"{untried}")
        _print_decision(run.registered, run)


def _print_decision(registered: Registered, run: HourRun | None = None) -> None:
    """The decision on an hour (or a window), its reasons; for a run of the hour also the drift
    rule's evidence and the catch-up retrain when one ran."""
    champion = run.champion if run is not None else registered.champion
    mode = run.mode if run is not None else registered.mode
    if registered.decision == "skipped":  # nothing trained: the hour is already in the champion's lineage
        print(f"{iso_hour(registered.hour)}  skipped: {registered.skipped}  (champion {champion})")
    else:
        reused = " (already processed: existing version)" if registered.reused else ""
        shown_mode = f"  mode {mode}" if mode else ""
        print(f"{iso_hour(registered.hour)}  {str(registered.decision).upper()}  version {registered.version}{reused}  "
              f"champion {champion}{shown_mode}")
        for line in run.drift["evidence"] if run is not None and run.drift else []:
            print(f"    drift: {line}")
        for reason in registered.reasons:
            print(f"    - {reason}")
    if run is not None and run.catch_up is not None:
        _print_catch_up(run.catch_up)


def _print_catch_up(caught: CaughtUp) -> None:
    if caught.registered is None or caught.window is None:
        return
    print(f"    catch-up retrain on {'/'.join(iso_hour(h) for h in caught.window)}: "
          f"{str(caught.registered.decision).upper()} version {caught.registered.version}  "
          f"champion {caught.registered.champion}")
    for reason in caught.registered.reasons:
        print(f"      - {reason}")


def cmd_drift(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.judge import anchor, drift, prequential
    from incremental.model import replay

    state = drift.load_state(settings)
    print(f"mode: {state.mode}" + (f" (drift declared at {state.declared_at}; catch-up {state.catch_up}; "
                                  f"promoted so far: {', '.join(state.promoted) or 'none'}; "
                                  f"shadow chain at version {state.shadow_version or '-'})" if state.declared_at else ""))
    print(f"slices judged changed: {', '.join(state.changed_slices) or 'none'}")
    if state.declared_at:
        print(f"slices measured stable (protected on their old anchor rows): {', '.join(state.stable_slices) or 'none'}")
    info = anchor.current(settings.lake)
    if info is not None and info.baseline_version:
        limit = (f" (mean category AUC at most {settings.gate.max_cumulative_auc_drop} below it, beyond noise)"
                 if info.protected_categories != [] else "")
        print(anchor.budget_line(info) + limit)
    for line in state.evidence or (state.last or {}).get("evidence", []):
        print(f"  {line}")
    for episode in state.episodes:
        print(f"episode {episode['declared_at']} .. {episode['ended_at']} ({episode['how']}): promoted "
              f"{', '.join(episode['promoted']) or 'none'}, replacing {episode['replaced']}; "
              f"changed: {', '.join(episode['changed_slices']) or 'overall'}; "
              f"stable: {', '.join(episode.get('stable_slices', [])) or 'none measured'}")
    for rule in drift.stale_rules(state, settings.drift):
        print(f"left out of replay and catch-up: {replay.Stale.from_dict(rule).describe()}")
    records = prequential.records(settings)[-args.hours:]
    if records:
        print("champion's prequential AUC (before training), last hours:")
        shown = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
        for r in records:
            print(f"  {r['hour']}  v{r['champion_version']}  AUC {shown(r['auc'])}  NDCG@10 {shown(r['ndcg@10'])}"
                  f"  rows {r['rows'] if r['rows'] is None else int(r['rows'])}")



def cmd_promote(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.registry import champion as registry

    _print_json(registry.promote(settings, args.version, args.reason).to_dict())


def cmd_rollback(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.registry import champion as registry

    _print_json(registry.rollback(settings, args.reason, to=args.to).to_dict())


def cmd_migrate_lake(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.data.migrate import OLD, migrate

    done = migrate(settings.lake)
    for h in done:
        what = "already in the table" if h.version is None and (h.validated or h.extracted or h.quarantined) == 0 \
            else f"table version {h.version}"
        print(f"{iso_hour(h.start)}  validated {h.validated:>8}  extracted {h.extracted:>7}  quarantined "
              f"{h.quarantined:>6}" + (f" (+{h.kept_as_file} kept as a file)" if h.kept_as_file else "") + f"  {what}")
    print(f"{len(done)} hour(s); the old hours are kept in {settings.lake / OLD} (delete it once you have checked)")


def cmd_maintain_lake(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.data.maintain import maintain
    from incremental.registry.lineage import live_versions

    live = live_versions(settings, args.recent)
    done = maintain(settings.lake, live.oldest_table_version, retention_hours=args.retention_hours,
                    dry_run=args.dry_run)
    would = "would be " if done.dry_run else ""
    kept = f"from version {done.keep_from}" if done.keep_from is not None else "the latest version only"
    print(f"live model versions: {', '.join(live.versions) or 'none'}; table versions kept readable: {kept}")
    for line in done.compacted:
        print(f"compacted{' (dry run)' if done.dry_run else ''}: {line}")
    if done.checkpoint is not None:
        print(f"checkpoint at version {done.checkpoint}")
    print(f"{len(done.vacuumed)} data file(s) no kept version needs {would}deleted")
    for path in done.vacuumed:
        print(f"  {path}")


def cmd_training_rows(settings: Settings, args: argparse.Namespace) -> None:
    from pathlib import Path

    from incremental.model.rebuild import lineage_of, rebuild

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out {out} is not empty: name a new or empty folder")
    for hour in rebuild(settings, lineage_of(settings, args.version), out):
        print(f"{hour.hour}  {hour.rows:>8} rows  table version {hour.table_version}  sha256 {hour.sha256[:16]}  "
              f"identical  {hour.path}")


def cmd_history(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.registry.history import format_history, history

    print(format_history(history(settings)))


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.serving.server import serve

    serve(settings, host=args.host, port=args.port, poll_seconds=args.poll_seconds)
