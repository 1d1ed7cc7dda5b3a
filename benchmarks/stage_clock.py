"""`incremental run-hour` with a stopwatch per stage: `python -m benchmarks.stage_clock run-hour --start H`.

Runs the CLI's own `main` (same arguments, same output, same exit code) after wrapping the
pipeline's stage functions (`extract_step` ... `register_step`) with timers, and prints one line
to stderr at the end:

    STAGES {"process_start_and_imports": s, "extract": s, "validate": s, "train": s,
            "evaluate": s, "register": s, "cli_other": s, "total": s}

`process_start_and_imports` runs from the creation of the process (psutil) until every module
the stages import lazily (DuckDB, Great Expectations, torch, transformers, MLflow) is imported:
they are imported up front here so that the stage times are the work alone. `cli_other` is what
the CLI does between and around the stages (settings, printing). The pipeline itself is untouched
(`incremental.pipeline` and `incremental.judge.verdict` are patched in this process only); used by
benchmarks/latency_bench.py.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

STAGES = ("extract", "validate", "train", "evaluate", "register")


def process_started() -> float:
    """The wall-clock time at which this process was created."""
    import psutil

    return psutil.Process().create_time()


def import_everything() -> None:
    """What the stages import on first use, imported now (so it is counted once, up front)."""
    import incremental.cli  # noqa: F401
    import incremental.data.extract  # noqa: F401
    import incremental.judge.evaluate  # noqa: F401
    import incremental.judge.verdict  # noqa: F401
    import incremental.model.ranker  # noqa: F401  (torch, transformers)
    import incremental.model.update  # noqa: F401
    import incremental.pipeline  # noqa: F401
    import incremental.registry.champion  # noqa: F401
    import incremental.registry.review  # noqa: F401
    import incremental.validation.validate  # noqa: F401  (Great Expectations)


def timed(stages: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            stages[name] = stages.get(name, 0.0) + time.perf_counter() - started

    return wrapper


def main(argv: Sequence[str] | None = None) -> int:
    created = process_started()
    import_everything()
    from incremental import cli, pipeline
    from incremental.judge import verdict

    stages: dict[str, float] = {"process_start_and_imports": time.time() - created}
    for name in STAGES:
        owner = verdict if name in ("evaluate", "register") else pipeline  # where run_hour finds the step
        setattr(owner, f"{name}_step", timed(stages, name, getattr(owner, f"{name}_step")))
    started = time.perf_counter()
    try:
        return cli.main(argv)
    finally:
        ran = time.perf_counter() - started
        stages["cli_other"] = ran - sum(stages.get(name, 0.0) for name in STAGES)
        stages["total"] = time.time() - created
        sys.stdout.flush()
        print("STAGES " + json.dumps({k: round(v, 3) for k, v in stages.items()}), file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
