"""The command line of a full retrain on several processes: `torchrun` over `incremental bootstrap`.

Standard library only: the full-retrain DAG builds its command with it, and the CLI
(`incremental bootstrap --nproc N`) launches the same one. Each process then finds its rank in
the environment torchrun sets (`incremental.model.distributed`).
"""

from __future__ import annotations

import sys
from datetime import datetime

from incremental.hours import iso_hour


def bootstrap_args(start: datetime, end: datetime, *, nproc: int = 1, anchor_size: int | None = None,
                   dry_run: bool = False, airflow_run_id: str | None = None, result_json: str | None = None,
                   verbose: bool = False) -> list[str]:
    """`incremental bootstrap`'s arguments (after the program name) for one window."""
    args = ["-v"] if verbose else []
    args += ["bootstrap", "--start", iso_hour(start), "--end", iso_hour(end)]
    if nproc != 1:
        args += ["--nproc", str(nproc)]
    if anchor_size is not None:
        args += ["--anchor-size", str(anchor_size)]
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
