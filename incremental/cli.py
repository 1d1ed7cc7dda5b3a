"""`incremental`: the command-line front on the pipeline (the Airflow DAGs are the other front).

Every command reads the settings from the environment (see `incremental.config`), so the
same command works on the embedded default and on PostgreSQL/an MLflow server.
Exit codes: 0 done (an hour that was rejected by the gate is still "done"), 1 the hour was
quarantined, 2 bad input or configuration (the message names what is wrong).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from incremental.config import Settings, load_settings
from incremental.data import lake
from incremental.data import quarantine as lake_quarantine
from incremental.data.warehouse import Warehouse
from incremental.errors import IncrementalError, InputError, redact_url, require_reason
from incremental.hours import HOUR, hours, iso_hour, parse_hour
from incremental.runtime import prepare_process
from incremental.sim.faults import FAULTS

EXIT_QUARANTINED = 1
EXIT_BAD_INPUT = 2


class Quarantined(IncrementalError):
    """An hour failed validation; the message says why and where the data went."""


def _hour(text: str) -> datetime:
    try:
        hour = parse_hour(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    except OverflowError:  # the offset moves it out of datetime's range: before year 1 (or after 9999) in UTC
        raise argparse.ArgumentTypeError(f"{text!r}: out of range in UTC (the offset moves it before year 1 or "
                                         "after year 9999)") from None
    try:
        hour + HOUR  # an interval must be able to end: 9999-12-31T23:00 cannot  # noqa: B018
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r}: the hour after it is out of range (beyond year 9999)") from None
    return hour


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least 1")
    return value


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port: use 1..65535")
    return port


def _hours(args: argparse.Namespace) -> list[datetime]:
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
        print(f"{iso_hour(hour)}  {manifest['rows']:>8} rows  sha256 {manifest['sha256'][:16]}  "
              f"{lake.partition_dir(settings.lake, hour)}")


def _each_hour(args: argparse.Namespace, validate: Callable[[datetime], Any], what: str) -> None:
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
    print(f"{'hour':<18} {'status':<12} {'rows':>8} {'quarantined':>11} {'parts':>5}  path")
    for hour in _hours(args):
        part = lake.partition(settings.lake, hour)
        rows = part.manifest["rows"] if part.manifest and part.status != "quarantined" else ""
        counts = lake_quarantine.row_counts(settings.lake, hour)
        parts = f"{len(part.parts)}" + (f"+{part.pending_parts}" if part.status == "validated" and part.pending_parts else "")
        gone = lake.missing_parts(part)  # a validated hour whose file was deleted is not validated data
        status = "damaged" if gone else part.status
        print(f"{iso_hour(hour)}  {status:<12} {rows:>8} {counts['quarantined'] or '':>11} "
              f"{parts if part.manifest else '':>5}  {part.path or ''}")
        if gone:
            print(f"    {part.status} but missing part(s): {', '.join(gone)} (restore them from a backup)")


def cmd_readmit(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.validation.validate import readmit_hour

    _each_hour(args, lambda hour: readmit_hour(settings.lake, hour, settings.validation, args.reason),
               "still quarantined after re-admission")


# --- model plane --------------------------------------------------------------------------
def cmd_train(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.pipeline import train_step

    result = train_step(settings, args.start)
    if result.get("skipped"):
        print(f"{result['hour']}  skipped: {result['skipped']}")
        return
    if result.get("reused_version"):
        print(f"hour already processed: version {result['reused_version']} (MLflow run {result['run_id']})")
        return
    # train_step hands over what every worker can resolve (URIs, no local paths): print those
    print(f"MLflow run {result['run_id']}  (mode {result['mode']})")
    print(f"candidate  {result['model_uri']}")
    print(f"parent     {result['parent_version'] or 'base weights'}; holdout {result['holdout_uri']}")


def cmd_bootstrap(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.pipeline import full_retrain

    _print_decision(full_retrain(settings, args.start, args.end, anchor_size=args.anchor_size))


def cmd_benchmark_freeze(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.pipeline import freeze_anchor

    if args.refresh:  # replacing the forgetting baseline is a recorded human decision (the DAG asks the same)
        require_reason(args.reason, "benchmark freeze --refresh (--reason)")
    _print_json(freeze_anchor(settings, args.start, args.end, args.size, args.reason, refresh=args.refresh))


def cmd_benchmark_show(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.judge import anchor

    print(anchor.show(settings.lake))


def cmd_run_hour(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.pipeline import run_hour

    hours = _hours(args)
    if args.force_promote is not None:  # before any training: a short reason would fail after it
        require_reason(args.force_promote, "--force-promote")
    for i, hour in enumerate(hours):
        result = run_hour(settings, hour, force_promote_reason=args.force_promote, dry_run=args.dry_run)
        if result["status"] == "quarantined":
            print(f"{result['hour']}  QUARANTINED: not trained\n{result['summary']}")
            # the range stops here: an update never skips an hour (the next trains on the champion of this one)
            rest = hours[i + 1:]
            untried = (f"; not attempted: {iso_hour(rest[0])}" + (f" .. {iso_hour(rest[-1])}" if len(rest) > 1 else "")
                       + " (fix or re-admit the quarantined hour, then run them)" if rest else "")
            raise Quarantined(f"hour {result['hour']} was quarantined; data kept at {settings.lake / result['lake_key']}"
                              f"{untried}")
        _print_decision(result)


def _print_decision(result: dict) -> None:
    if result.get("decision") == "skipped":  # nothing trained: the hour is already in the champion's lineage
        print(f"{result['hour']}  skipped: {result['skipped']}  (champion {result.get('champion')})")
    else:
        reused = " (already processed: existing version)" if result.get("reused") else ""
        mode = f"  mode {result['mode']}" if result.get("mode") else ""
        print(f"{result['hour']}  {str(result['decision']).upper()}  version {result['version']}{reused}  "
              f"champion {result.get('champion')}{mode}")
        for line in (result.get("drift") or {}).get("evidence", []):
            print(f"    drift: {line}")
        for reason in result.get("reasons", []):
            print(f"    - {reason}")
    caught = result.get("catch_up")
    if caught:
        print(f"    catch-up retrain on {'/'.join(caught['window'])}: {str(caught['decision']).upper()} "
              f"version {caught['version']}  champion {caught['champion']}")
        for reason in caught.get("reasons", []):
            print(f"      - {reason}")


def cmd_drift(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.judge import anchor, drift
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
    records = drift.records(settings)[-args.hours:]
    if records:
        print("champion's prequential AUC (before training), last hours:")
        shown = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
        for r in records:
            print(f"  {r['hour']}  v{r['champion_version']}  AUC {shown(r['auc'])}  NDCG@10 {shown(r['ndcg@10'])}"
                  f"  rows {r['rows'] if r['rows'] is None else int(r['rows'])}")



def cmd_promote(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.registry import champion as registry

    _print_json(registry.promote(settings, args.version, args.reason))


def cmd_rollback(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.registry import champion as registry

    _print_json(registry.rollback(settings, args.reason, to=args.to))


def cmd_history(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.registry import champion as registry

    print(registry.format_history(registry.history(settings)))


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    from incremental.serving.server import serve

    serve(settings, host=args.host, port=args.port, poll_seconds=args.poll_seconds)


# --- the parser ---------------------------------------------------------------------------
def _command(sub: argparse._SubParsersAction, name: str, handler: Callable[[Settings, argparse.Namespace], None],
             help: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help)
    p.set_defaults(handler=handler)
    return p


def _interval(p: argparse.ArgumentParser, end_required: bool = False) -> None:
    p.add_argument("--start", type=_hour, required=True, help="first hour, ISO UTC (e.g. 2026-01-01T05:00)")
    default = "" if end_required else " (default: start + 1h)"
    p.add_argument("--end", type=_hour, required=end_required, help=f"end of the range, exclusive{default}")


def _data_commands(sub: argparse._SubParsersAction) -> None:
    """The warehouse, its inputs (simulated or imported) and the lake's hours."""
    p = sub.add_parser("warehouse", help="warehouse administration")
    wsub = p.add_subparsers(dest="warehouse_command", required=True)
    w = wsub.add_parser("init", help="create the tables (idempotent)")
    w.set_defaults(handler=cmd_warehouse_init)

    p = _command(sub, "simulate", cmd_simulate, "write a synthetic catalogue and hourly traffic into the warehouse")
    _interval(p, end_required=True)
    p.add_argument("--rate", type=int, default=5000, help="impressions per hour")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenario", choices=("steady", "drift"), default="steady")
    p.add_argument("--drift-at", type=_hour, default=None, help="drift scenario: first drifted hour (default: midpoint)")
    p.add_argument("--fault", action="append", metavar="KIND",
                   help=f"inject bad input of this kind into every simulated hour (repeatable): {', '.join(FAULTS)}")

    p = _command(sub, "import-judgments", cmd_import_judgments,
                 "turn a relevance-judgment CSV into catalogue rows and impressions")
    p.add_argument("path", type=Path)
    p.add_argument("--query-col", required=True)
    p.add_argument("--title-col", required=True)
    p.add_argument("--grade-col", required=True)
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--slice-by", choices=("brand", "hash"), default="brand")
    p.add_argument("--start", type=_hour, required=True)
    p.add_argument("--rate", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)

    p = _command(sub, "extract", cmd_extract, "extract hours from the warehouse into the lake")
    _interval(p)
    p = _command(sub, "validate", cmd_validate, "validate extracted hours (quarantine on critical failures)")
    _interval(p)
    p = _command(sub, "partitions", cmd_partitions, "list hours with their status, live rows and rows in quarantine")
    _interval(p)
    p = _command(sub, "readmit", cmd_readmit, "after a fix, put an hour's quarantined rows (or whole hour) back and "
                 "validate them again (recorded in the hour's manifest)")
    _interval(p)
    p.add_argument("--reason", required=True, help="what was fixed (recorded)")


def _training_commands(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "train", cmd_train,
                 "update the champion on one validated hour (prints the MLflow run and the candidate); an hour "
                 "the champion's lineage already trained on is skipped (a full retrain retrains old hours)")
    p.add_argument("--start", type=_hour, required=True)
    p = _command(sub, "bootstrap", cmd_bootstrap,
                 "train from the base weights on a window of validated hours, through the gate")
    _interval(p, end_required=True)
    p.add_argument("--anchor-size", type=int, default=4000, help="rows of the anchor set frozen if none exists yet")
    p = _command(sub, "run-hour", cmd_run_hour,
                 "extract -> validate -> monitor -> train -> evaluate -> register/reject (-> catch-up), for each "
                 "hour; an hour the champion's lineage already trained on is skipped, not trained again; two runs "
                 "of one hour take turns")
    _interval(p)
    p.add_argument("--force-promote", metavar="REASON", help="promote even if the gate rejects (recorded)")
    p.add_argument("--dry-run", action="store_true", help="decide but register nothing")


def _benchmark_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="the frozen anchor set (the forgetting benchmark)")
    bsub = p.add_subparsers(dest="benchmark_command", required=True)
    b = bsub.add_parser("freeze", help="freeze a stratified sample of validated hours as the anchor set")
    _interval(b, end_required=True)
    b.add_argument("--size", type=int, default=4000)
    b.add_argument("--reason", default="", help="why (recorded)")
    b.add_argument("--refresh", action="store_true", help="replace the existing anchor (it is kept in history)")
    b.set_defaults(handler=cmd_benchmark_freeze)
    b = bsub.add_parser("show", help="what the anchor set holds")
    b.set_defaults(handler=cmd_benchmark_show)


def _registry_commands(sub: argparse._SubParsersAction) -> None:
    """The people's side of the registry (promote, roll back, history), the drift rule and serving."""
    p = _command(sub, "promote", cmd_promote, "a person promotes a version to champion (overrides the gate; recorded)")
    p.add_argument("--version", required=True)
    p.add_argument("--reason", required=True)
    p = _command(sub, "rollback", cmd_rollback, "make an earlier champion the champion again (recorded)")
    p.add_argument("--to", help="version (default: the previous champion)")
    p.add_argument("--reason", required=True)
    _command(sub, "history", cmd_history, "versions with decision, mode, interval, key metrics and champion periods")
    p = _command(sub, "drift", cmd_drift,
                 "the drift rule's state: mode, episode, changed slices, the champion's prequential record")
    p.add_argument("--hours", type=_positive, default=12, help="how many recent hours of the record to show")
    p = _command(sub, "serve", cmd_serve,
                 "serve the champion over HTTP (MLflow's scoring protocol; POST /reload follows the alias)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8000, help="TCP port, 1..65535")
    p.add_argument("--poll-seconds", type=float, default=0, help="also re-check the champion alias this often (0: off)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="incremental", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_data_commands, _training_commands, _benchmark_commands, _registry_commands):
        add(sub)
    return parser


def _one_line(exc: BaseException, settings: Settings | None) -> str:
    """What the CLI prints for an error that means bad input, configuration or environment."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        where = settings.mlflow_uri if settings is not None else "INCREMENTAL_MLFLOW_URI"
        text = str(exc.message if hasattr(exc, "message") else exc).strip().splitlines()
        line = f"MLflow at {where}: {text[0] if text else type(exc).__name__}"
    elif isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.filename is not None:
        action = "cannot write" if isinstance(exc, PermissionError) or exc.errno in (errno.EROFS, errno.ENOSPC) else "cannot use"
        line = f"{action} {exc.filename}: {exc.strerror}"
    else:
        line = str(exc)
    return redact_url(line)  # MLflow's own message repeats the URL, password included


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prepare_process(serving=args.command == "serve")  # this process's environment, set once, here
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_guarded(lambda settings: args.handler(settings, args))


def run_guarded(work: Callable[[Settings], None]) -> int:
    """Run `work` with the settings; bad input or a refusal of the environment is one line on
    stderr and exit 2, a bug keeps its traceback (never a password). Also the entry of
    `python -m benchmarks.continual`."""
    from mlflow.exceptions import MlflowException

    logging.getLogger("incremental.progress").setLevel(logging.INFO)  # long work always shows steps, rate, time left
    settings = None
    try:
        settings = load_settings()
        work(settings)
    except Quarantined as exc:
        print(f"incremental: {redact_url(str(exc))}", file=sys.stderr)
        return EXIT_QUARANTINED
    except IncrementalError as exc:
        print(f"incremental: error: {_one_line(exc, settings)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (MlflowException, OSError) as exc:
        # the environment, not the code: MLflow refused or failed a request; a file or folder
        # (a read-only lake, a full disk) cannot be written.
        if isinstance(exc, OSError) and exc.filename is None:
            raise
        print(f"incremental: error: {_one_line(exc, settings)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug keeps its traceback, but never shows a password
        import traceback

        text = "".join(traceback.format_exception(exc))
        if redact_url(text) == text:
            raise
        print(redact_url(text), file=sys.stderr, end="")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
