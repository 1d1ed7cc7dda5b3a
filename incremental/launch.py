"""The command line of a retrain on several processes: `torchrun` over `incremental bootstrap` (a
full retrain) or `incremental catch-up` (the catch-up retrain after a declared drift).

Light imports only (the project's errors and hours; the checks import the rest when called): the full-retrain and hourly DAGs build their commands with it, and the CLI
(`incremental bootstrap --nproc N`, `incremental catch-up --nproc N`) launches the same ones. Each process then finds its rank in
the environment torchrun sets (`incremental.model.distributed`).
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING

from incremental.errors import InputError
from incremental.hours import Hour, iso_hour

if TYPE_CHECKING:
    from incremental.config import Settings
    from incremental.data.lake import Partition
    from incremental.model.distributed import Group
    from incremental.model.replay import Stale


def bootstrap_args(start: datetime, end: datetime, *, nproc: int = 1, anchor_size: int | None = None,
                   dry_run: bool = False, airflow_run_id: str | None = None, result_json: str | None = None,
                   verbose: bool = False) -> list[str]:
    """`incremental bootstrap`'s arguments (after the program name) for one window."""
    args = ["bootstrap", "--start", iso_hour(start), "--end", iso_hour(end)]
    if anchor_size is not None:
        args += ["--anchor-size", str(anchor_size)]
    return _with_options(args, nproc=nproc, dry_run=dry_run, airflow_run_id=airflow_run_id, result_json=result_json,
                         verbose=verbose)


def catch_up_args(hour: datetime, *, nproc: int = 1, dry_run: bool = False, airflow_run_id: str | None = None,
                  result_json: str | None = None, verbose: bool = False) -> list[str]:
    """`incremental catch-up`'s arguments (after the program name) for the hour that found it pending."""
    return _with_options(["catch-up", "--hour", iso_hour(hour)], nproc=nproc, dry_run=dry_run,
                         airflow_run_id=airflow_run_id, result_json=result_json, verbose=verbose)


def _with_options(command: list[str], *, nproc: int, dry_run: bool, airflow_run_id: str | None,
                  result_json: str | None, verbose: bool) -> list[str]:
    """A training command's words (`command`) with the options the sharded launches share."""
    args = (["-v"] if verbose else []) + command
    if nproc != 1:
        args += ["--nproc", str(nproc)]
    if dry_run:
        args.append("--dry-run")
    if airflow_run_id:
        args += ["--airflow-run-id", airflow_run_id]
    if result_json:
        args += ["--result-json", result_json]
    return args


def cli_command(args: list[str], python: str | None = None) -> list[str]:
    """`incremental <args>` in this interpreter (the same virtual environment)."""
    return [python or sys.executable, "-m", "incremental.cli", *args]


def torchrun_command(nproc: int, args: list[str], python: str | None = None) -> list[str]:
    """`incremental <args>` in `nproc` processes on this machine: torchrun with a rendezvous of its
    own on a free port (`--standalone`), so two launches on one host do not collide. The `--`
    after the module: torchrun's own parser would otherwise read `--start` as its `--start-method`."""
    if nproc < 1:
        raise ValueError(f"nproc {nproc}: at least 1")
    return [python or sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "incremental.cli", "--", *args]


# --- the launcher's side, in the CLI: checks before any process starts, then torchrun ---------------
def check_launched(launched: Group | None, nproc: int) -> None:
    """Under torchrun, `--nproc` (if given) must be the number of processes it started."""
    if launched is not None and nproc not in (1, launched.world_size):
        raise InputError(f"--nproc {nproc} but torchrun started {launched.world_size} processes")


def check_split(settings: Settings, parts: list[Partition], nproc: int, *, stale: tuple[Stale, ...] = (),
                 holdout_from: Hour | None = None) -> None:
    """Check the window's training rows can be split over `nproc` processes: a clear error here,
    before any process starts, not one per rank."""
    from incremental.model import distributed
    from incremental.model.examples import training_set

    rows = training_set(settings, parts, "bootstrap", stale, holdout_from).rows
    distributed.check_world(int(rows["session_id"].nunique()), settings.training.batch_size, nproc)


def run_sharded(what: str, nproc: int, child: list[str]) -> None:
    """Run `incremental <child>` in `nproc` processes under torchrun; its exit status is this one's."""
    import subprocess

    done = subprocess.run(torchrun_command(nproc, child), check=False)
    if done.returncode != 0:
        print(f"incremental: error: the {nproc}-process {what} failed: torchrun exited {done.returncode} "
              "(each rank's error is above)", file=sys.stderr)
        raise SystemExit(done.returncode)
