"""`incremental`: the command-line front on the pipeline (the Airflow DAGs are the other front).

This module is the process's edge: the arguments (an hour is parsed here, once, into an aware UTC
datetime on the hour: `_hour`), and what an error becomes (`run_guarded`); what each command does
is in `incremental.commands`. Every command reads the settings from the environment (see
`incremental.config`), so the same command works on the embedded default and on PostgreSQL/an MLflow server.
Exit codes: 0 done (an hour that was rejected by the gate is still "done"), 1 the hour was
quarantined, 2 bad input or configuration (the message names what is wrong).
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from incremental import commands
from incremental.commands import Quarantined
from incremental.config import Settings, load_settings
from incremental.errors import IncrementalError, redact_url
from incremental.hours import HOUR, Hour, parse_hour
from incremental.runtime import prepare_process
from incremental.sim.faults import FAULTS

EXIT_QUARANTINED = 1
EXIT_BAD_INPUT = 2


def _hour(text: str) -> Hour:
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


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number no less than `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: at least {minimum}")
        return value
    return parse


_positive, _non_negative = _at_least(1), _at_least(0)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port: use 1..65535")
    return port


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
    w.set_defaults(handler=commands.cmd_warehouse_init)

    p = _command(sub, "simulate", commands.cmd_simulate, "write a synthetic catalogue and hourly traffic into the warehouse")
    _interval(p, end_required=True)
    p.add_argument("--rate", type=int, default=5000, help="impressions per hour")
    p.add_argument("--seed", type=int, default=0, help="the catalogue and the traffic (default: %(default)s)")
    p.add_argument("--scenario", choices=("steady", "drift"), default="steady",
                   help="steady: seasonality and vocabulary drift only; drift: also a sustained change of what some "
                   "queries mean (default: %(default)s)")
    p.add_argument("--drift-at", type=_hour, default=None, help="drift scenario: first drifted hour (default: midpoint)")
    p.add_argument("--fault", action="append", metavar="KIND",
                   help=f"inject bad input of this kind into every simulated hour (repeatable): {', '.join(FAULTS)}")

    p = _command(sub, "import-judgments", commands.cmd_import_judgments,
                 "turn a relevance-judgment CSV into catalogue rows and impressions")
    p.add_argument("path", type=Path, help="the CSV, or a .zip holding one")
    p.add_argument("--query-col", required=True, help="the column of the search queries")
    p.add_argument("--title-col", required=True, help="the column of the product titles")
    p.add_argument("--grade-col", required=True, help="the column of the graded relevance (numbers; clicks are drawn "
                   "from the grade, scaled to [0, 1] over the file, times the position bias)")
    p.add_argument("--encoding", default="utf-8", help="the file's text encoding (default: %(default)s; the Home Depot "
                   "set is latin-1)")
    p.add_argument("--slice-by", choices=("brand", "hash"), default="brand",
                   help="category of a product: its brand (the title's first word; pages ordered by brand, so the mix "
                   "drifts from hour to hour) or a hash bucket (every hour alike) (default: %(default)s)")
    p.add_argument("--start", type=_hour, required=True, help="the first hour of the impressions (ISO, on the hour)")
    p.add_argument("--rate", type=int, default=2000, help="impressions an hour (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="positions, clicks, users and delays (default: %(default)s)")

    p = _command(sub, "extract", commands.cmd_extract, "extract hours from the warehouse into the lake")
    _interval(p)
    p = _command(sub, "validate", commands.cmd_validate, "validate extracted hours (quarantine on critical failures)")
    _interval(p)
    p = _command(sub, "partitions", commands.cmd_partitions, "list hours with their status, live rows and rows in quarantine")
    _interval(p)
    p = _command(sub, "readmit", commands.cmd_readmit, "after a fix, put an hour's quarantined rows (or whole hour) back and "
                 "validate them again (recorded in the lake table's log)")
    _interval(p)
    p.add_argument("--reason", required=True, help="what was fixed (recorded)")


def _training_commands(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "train", commands.cmd_train,
                 "update the champion on one validated hour (prints the MLflow run and the candidate); an hour "
                 "the champion's lineage already trained on is skipped (a full retrain retrains old hours)")
    p.add_argument("--start", type=_hour, required=True, help="the hour (ISO, on the hour, UTC)")
    p = _command(sub, "bootstrap", commands.cmd_bootstrap,
                 "train from the base weights on a window of validated hours, through the gate")
    _interval(p, end_required=True)
    p.add_argument("--anchor-size", type=int, default=4000, help="rows of the anchor set frozen if none exists yet")
    p.add_argument("--nproc", type=_positive, default=1,
                   help="train on this many processes of this machine (torchrun, DDP: one shard of the window's "
                        "sessions each; one GPU each when there are GPUs); default 1, a single process")
    p.add_argument("--dry-run", action="store_true", help="decide but register nothing")
    p.add_argument("--airflow-run-id", default=None, help=argparse.SUPPRESS)  # the DAG's run, recorded on the MLflow run
    p.add_argument("--result-json", type=Path, default=None,
                   help="also write the decision as JSON to this file (what the full-retrain DAG reads back)")
    p = _command(sub, "catch-up", commands.cmd_catch_up,
                 "the catch-up retrain a declared drift left pending: the champion retrained on what still holds "
                 "(the hourly DAG's catch_up task), through the gate; nothing when none is pending")
    p.add_argument("--hour", type=_hour, required=True,
                   help="the hour it runs for (the catch-up window ends after it), ISO UTC")
    p.add_argument("--nproc", type=_positive, default=1,
                   help="train on this many processes of this machine (torchrun, DDP, as bootstrap --nproc); "
                        "default 1, a single process")
    p.add_argument("--dry-run", action="store_true", help="decide but register nothing (the catch-up stays pending)")
    p.add_argument("--airflow-run-id", default=None, help=argparse.SUPPRESS)
    p.add_argument("--result-json", type=Path, default=None,
                   help="also write the decision as JSON to this file (what the hourly DAG reads back)")
    p = _command(sub, "run-hour", commands.cmd_run_hour,
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
    b.add_argument("--size", type=int, default=4000, help="rows sampled from the window's holdout sessions "
                   "(default: %(default)s)")
    b.add_argument("--reason", default="", help="why (recorded)")
    b.add_argument("--refresh", action="store_true", help="replace the existing anchor (it is kept in history)")
    b.set_defaults(handler=commands.cmd_benchmark_freeze)
    b = bsub.add_parser("show", help="what the anchor set holds")
    b.set_defaults(handler=commands.cmd_benchmark_show)


def _registry_commands(sub: argparse._SubParsersAction) -> None:
    """The people's side of the registry (promote, roll back, history), the drift rule and serving."""
    p = _command(sub, "promote", commands.cmd_promote, "a person promotes a version to champion (overrides the gate; recorded)")
    p.add_argument("--version", required=True, help="the registered model version to make the champion")
    p.add_argument("--reason", required=True, help="why a person overrides the gate (recorded)")
    p = _command(sub, "rollback", commands.cmd_rollback, "make an earlier champion the champion again (recorded)")
    p.add_argument("--to", help="version (default: the previous champion)")
    p.add_argument("--reason", required=True, help="why (recorded)")
    _command(sub, "history", commands.cmd_history, "versions with decision, mode, interval, key metrics and champion periods")
    _command(sub, "migrate-lake", commands.cmd_migrate_lake,
             "move a lake in the format before Delta Lake (Parquet parts + manifests) into the search_logs table")
    p = _command(sub, "maintain-lake", commands.cmd_maintain_lake,
                 "compact small files, checkpoint and vacuum the lake's table, keeping every version live models trained at")
    p.add_argument("--dry-run", action="store_true", help="change nothing: list what each step would do")
    p.add_argument("--recent", type=_positive, default=10, help="keep the rows of this many latest versions too "
                   "(besides the champion and its parents)")
    p.add_argument("--retention-hours", type=_non_negative, default=168,
                   help="delete no file removed (or never committed) less than this long ago (default: a week)")
    p = _command(sub, "training-rows", commands.cmd_training_rows,
                 "rebuild a model version's training hours by time travel in the lake's table (checked byte for byte)")
    p.add_argument("--version", required=True, help="the registered model version")
    p.add_argument("--out", required=True, help="a new or empty folder for one Parquet file per hour")
    p = _command(sub, "drift", commands.cmd_drift,
                 "the drift rule's state: mode, episode, changed slices, the champion's prequential record")
    p.add_argument("--hours", type=_positive, default=12, help="how many recent hours of the record to show")
    p = _command(sub, "serve", commands.cmd_serve,
                 "serve the champion over HTTP (MLflow's scoring protocol; POST /reload follows the alias)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
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
