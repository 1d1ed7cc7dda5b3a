"""The reliability suite: the CLI as an operator runs it, in subprocesses, against real parts.

Every case runs `python -m incremental.cli ...` with its own INCREMENTAL_HOME, the tiny model and
`fast.yaml`, and judges what an operator sees: the exit code, one message line naming what is
wrong, and never a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAST_CONFIG = Path(__file__).resolve().parent / "fast.yaml"
FAULTS_DIR = Path(__file__).resolve().parents[1] / "faults"  # sitecustomize.py: test-only crashes


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCREMENTAL_") or k == "INCREMENTAL_REQUIRE_SERVICES"}
    env.update({
        "INCREMENTAL_HOME": str(home), "INCREMENTAL_BASE_MODEL": "tiny", "INCREMENTAL_CONFIG": str(FAST_CONFIG),
        "HF_HUB_OFFLINE": "1", "GX_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    })
    env.update(extra)
    return env


def crash_env(**fault: str) -> dict[str, str]:
    """What a child needs to crash where a test wants it (`tests/faults/sitecustomize.py`): that
    folder first on PYTHONPATH, and `kill_at_step="N"` or `kill_in_registration="1"`."""
    return {"PYTHONPATH": f"{FAULTS_DIR}{os.pathsep}{REPO}",
            **{f"INCREMENTAL_TEST_FAULT_{name.upper()}": value for name, value in fault.items()}}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "incremental.cli", *args]


def cli(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command(*args), env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def assert_clean_error(result: subprocess.CompletedProcess[str], *needles: str, hidden: tuple[str, ...] = ()) -> str:
    """Exit 2, no traceback, one `incremental: error:` line that names each of `needles`."""
    detail = f"rc={result.returncode}\nstdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 2, detail
    assert "Traceback" not in result.stderr, detail
    lines = [line for line in result.stderr.splitlines() if line.startswith("incremental: error:")]
    assert len(lines) == 1, detail
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not named in {lines[0]!r}"
    for secret in hidden:
        assert secret not in result.stderr, f"{secret!r} shown in {result.stderr!r}"
    return lines[0]


def assert_ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"rc={result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}"
    return result


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_state(home: Path, model_name: str = "search-ranker") -> dict:
    """Versions (with their tags) and runs of a home's MLflow, read in a child (fresh MLflow state)."""
    code = """
import json, sys, mlflow
uri = sys.argv[1]; name = sys.argv[2]
c = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
try:
    versions = [{"version": str(v.version), "tags": v.tags, "run_id": v.run_id}
                for v in c.search_model_versions("name = " + repr(name).replace("'", '"') if "'" in name else f"name = '{name}'")]
except Exception:
    versions = []
try:
    champion = str(c.get_model_version_by_alias(name, "champion").version)
except Exception:
    champion = None
runs = [{"run_id": r.info.run_id, "status": r.info.status, "name": r.info.run_name}
        for e in c.search_experiments() for r in c.search_runs([e.experiment_id], max_results=1000)]
print(json.dumps({"versions": versions, "champion": champion, "runs": runs}))
"""
    uri = f"sqlite:///{home / 'mlflow.db'}"
    out = subprocess.run([sys.executable, "-c", code, uri, model_name], capture_output=True, text=True, timeout=300,
                         env=cli_env(home))
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def assert_consistent(home: Path, hours: list[str]) -> dict:
    """One model version per hour (none left half-registered), no MLflow run left RUNNING, and
    the champion an approved (or promoted) version."""
    state = mlflow_state(home)
    for hour in hours:
        mine = [v for v in state["versions"] if v["tags"].get("interval_start", "").startswith(hour)
                and v["tags"].get("partition_sha256")]
        parents = [v["tags"]["parent_version"] for v in mine]
        assert len(mine) >= 1, (hour, state["versions"])
        assert len(set(parents)) == len(parents), f"two versions of {hour} from the same parent: {mine}"
    assert all(v["tags"].get("registration", "done") == "done" for v in state["versions"]), state["versions"]
    assert not [r for r in state["runs"] if r["status"] == "RUNNING"], state["runs"]
    if state["champion"] is not None:
        champ = next(v for v in state["versions"] if v["version"] == state["champion"])
        assert champ["tags"]["decision"] == "approved" or champ["tags"].get("override") == "promoted", champ
    return state


@pytest.fixture
def fresh_home(tmp_path: Path) -> Path:
    return tmp_path / "var"


def prepare_home(home: Path, simulated: tuple[str, str], validated: tuple[str, str], *, rate: int = 600,
                 seed: int = 5) -> Path:
    """A DuckDB home with the hours of `simulated` in the warehouse and those of `validated`
    extracted and validated (ISO hours, [start, end))."""
    env = cli_env(home)
    assert_ok(cli(env, "simulate", "--start", simulated[0], "--end", simulated[1], "--rate", str(rate),
                  "--seed", str(seed)))
    assert_ok(cli(env, "extract", "--start", validated[0], "--end", validated[1]))
    assert_ok(cli(env, "validate", "--start", validated[0], "--end", validated[1]))
    return home


def bootstrap_champion(home: Path, start: str, end: str, *, anchor_size: int = 300) -> Path:
    """Bootstrap the first model on [start, end) and make it the champion: the tiny random model
    usually loses to BM25 on its own hours (the one check a first model fails), so a person
    promotes it, as the tests that need a champion do."""
    env = cli_env(home)
    result = assert_ok(cli(env, "bootstrap", "--start", start, "--end", end, "--anchor-size", str(anchor_size)))
    if "APPROVED  version 1" not in result.stdout:
        assert "REJECTED  version 1" in result.stdout and "holdout_vs_lexical_floor" in result.stdout, result.stdout
        assert_ok(cli(env, "promote", "--version", "1", "--reason", "tests: the tiny bootstrap is the champion"))
    return home


def hour_of(t0: datetime, k: int) -> str:
    """The CLI's spelling of hour `k` after `t0`."""
    return f"{t0 + timedelta(hours=k):%Y-%m-%dT%H:%M}"


def tag_of(t0: datetime, k: int) -> str:
    """How interval_start is tagged on a version, for hour `k` after `t0`."""
    return (t0 + timedelta(hours=k)).isoformat()[:19]
