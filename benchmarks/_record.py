"""Shared by the benchmarks: where results go and what describes the machine they came from."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def commit_stamp() -> dict[str, object]:
    """The commit the figures came from, and whether the tree had changes beyond it."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=RESULTS.parent, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def record(name: str, figures: dict, packages: tuple[str, ...] = ()) -> Path:
    """Write `results/<name>.json` with the figures and the machine, and print it."""
    payload = {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        **commit_stamp(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": {p: version(p) for p in packages},
        **figures,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return path
