"""`python -m benchmarks.continual` (from the repository root): the prequential benchmark; `--help` lists
the arms, scenarios and presets."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from benchmarks.continual import main
from benchmarks.continual.plan import add_arguments
from incremental.cli import run_guarded
from incremental.config import Settings
from incremental.errors import IncrementalError, InputError
from incremental.runtime import prepare_process


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.continual",
        description="Test-then-train over a window of hours: each hour is scored by the model every arm "
                    "served before it, then the arm learns from it.")
    add_arguments(parser)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prepare_process()
    # the progress of long work (a bootstrap, a full retrain: minutes each) shows as in the CLI
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def work(settings: Settings) -> None:
        try:
            main(args, settings.config_file)
        except ValueError as exc:  # the plan's "bad arguments" (an unknown arm, a drift hour outside the hours)
            if isinstance(exc, IncrementalError):
                raise
            raise InputError(str(exc)) from exc

    return run_guarded(work)


if __name__ == "__main__":
    sys.exit(run())
