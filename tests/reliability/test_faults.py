"""Faults in the middle of an hour, and two hours at once (issue 10): kill -9 during extraction,
training and registration, MLflow unreachable, a failed bootstrap; each followed by a rerun that
must end consistent (one version per hour and parent, nothing half-registered, no MLflow run
left RUNNING, no lock left stuck).

One DuckDB home (`world`) is prepared once per module: ten simulated hours (600 impressions
each, so that a holdout of ~120 rows always has clicks and an AUC), the first four
extracted and validated, a first champion bootstrapped on them (tiny model, `fast.yaml`). Every
case then works on hours of its own.
"""

from __future__ import annotations

import fcntl
import shutil
import signal
import subprocess
import time
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from conftest import (
    assert_clean_error,
    assert_consistent,
    assert_ok,
    bootstrap_champion,
    cli,
    cli_command,
    cli_env,
    closed_port,
    crash_env,
    hour_of,
    mlflow_state,
    prepare_home,
    tag_of,
)

from incremental.hours import Hour

pytestmark = pytest.mark.slow

T0 = Hour(2026, 6, 1, 0, tzinfo=UTC)


def hour(k: int) -> str:
    return hour_of(T0, k)


def tag(k: int) -> str:
    return tag_of(T0, k)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_home(tmp_path_factory.mktemp("faults") / "var", (hour(0), hour(10)), (hour(0), hour(4)))


@pytest.fixture(scope="module")
def world(prepared: Path) -> Path:
    return bootstrap_champion(prepared, hour(0), hour(4))


def test_a_failed_bootstrap_freezes_nothing(prepared: Path, tmp_path: Path) -> None:
    home = tmp_path / "var"
    shutil.copytree(prepared, home, ignore=shutil.ignore_patterns("*.lock", "mlflow.db", "mlartifacts"))
    env = cli_env(home, INCREMENTAL_BASE_MODEL=str(tmp_path / "no-such-model"))
    assert_clean_error(cli(env, "bootstrap", "--start", hour(0), "--end", hour(4), "--anchor-size", "300"),
                       "no-such-model")
    assert not (home / "lake" / "anchor").exists()  # before the fix: frozen, and never again freezable
    # the anchor set can still be frozen (the next bootstrap that works does it) ...
    assert_ok(cli(cli_env(home), "benchmark", "freeze", "--start", hour(0), "--end", hour(4), "--size", "100"))
    # ... once: a second freeze is refused, naming the flag that would refresh it
    refused = cli(cli_env(home), "benchmark", "freeze", "--start", hour(0), "--end", hour(4), "--size", "100")
    assert_clean_error(refused, "--refresh")


def _waits_for(stderr: Path, lock_path: Path) -> bool:
    """The child said it waits for `lock_path` (`incremental.locks`: a line after 2 s of waiting)."""
    return f"waiting for {lock_path}," in stderr.read_text(errors="replace")


def test_kill_during_extract_then_rerun(world: Path, tmp_path: Path) -> None:
    """The extraction is stopped while it waits for its turn on the DuckDB file (held here)."""
    lock_path = world / "warehouse.duckdb.lock"
    stderr = tmp_path / "stderr"
    with open(lock_path, "a") as lock, open(stderr, "w") as err:
        fcntl.flock(lock, fcntl.LOCK_EX)
        child = subprocess.Popen(cli_command("run-hour", "--start", hour(4)), env=cli_env(world),
                                 stdout=subprocess.DEVNULL, stderr=err, text=True)
        deadline = time.monotonic() + 120
        while not _waits_for(stderr, lock_path):
            assert child.poll() is None and time.monotonic() < deadline, stderr.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(0.5)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
        fcntl.flock(lock, fcntl.LOCK_UN)
    from incremental.data import lake

    assert lake.partition(world / "lake", T0 + timedelta(hours=4)).status == "missing"  # nothing half-written
    result = assert_ok(cli(cli_env(world), "run-hour", "--start", hour(4)))  # no stuck lock: it goes through
    assert "version" in result.stdout
    # each stage says it is done before training starts (a trial's run-hour was silent for its first 12 s)
    for stage in ("extracted, ", "validated (", "scored by champion ", "trained ("):
        assert stage in result.stderr, (stage, result.stderr[-2000:])
    assert_consistent(world, [tag(4)])


def test_kill_during_training_then_rerun_resumes(world: Path) -> None:
    killed = cli(cli_env(world, **crash_env(kill_at_step="10")), "run-hour", "--start", hour(5))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    running = [r for r in mlflow_state(world)["runs"] if r["status"] == "RUNNING"]
    assert len(running) == 1 and list((world / "checkpoints").glob("*/last.pt"))
    assert_ok(cli(cli_env(world), "run-hour", "--start", hour(5)))
    state = assert_consistent(world, [tag(5)])
    (version,) = [v for v in state["versions"] if v["tags"]["interval_start"].startswith(tag(5))]
    assert version["run_id"] == running[0]["run_id"]  # the killed run was resumed, not replaced
    assert not list((world / "checkpoints").glob("*/last.pt"))


def test_kill_during_registration_then_rerun_completes_it(world: Path) -> None:
    killed = cli(cli_env(world, **crash_env(kill_in_registration="1")), "run-hour", "--start", hour(6))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    before = mlflow_state(world)
    (pending,) = [v for v in before["versions"] if v["tags"]["interval_start"].startswith(tag(6))]
    assert pending["tags"]["registration"] == "pending" and before["champion"] != pending["version"]

    assert_ok(cli(cli_env(world), "run-hour", "--start", hour(6)))
    state = assert_consistent(world, [tag(6)])
    mine = [v for v in state["versions"] if v["tags"]["interval_start"].startswith(tag(6))]
    assert [v["version"] for v in mine] == [pending["version"]]  # completed, not registered twice
    assert state["champion"] == pending["version"]  # approved (fast.yaml's gate): its promotion was carried out


def test_mlflow_unreachable_then_retried(world: Path) -> None:
    port = closed_port()
    down = cli(cli_env(world, INCREMENTAL_MLFLOW_URI=f"http://127.0.0.1:{port}"), "run-hour", "--start", hour(7),
               timeout=300)
    assert_clean_error(down, f"http://127.0.0.1:{port}", "cannot be reached")
    assert_ok(cli(cli_env(world), "run-hour", "--start", hour(7)))
    assert_consistent(world, [tag(7)])


def test_two_hours_at_once_on_duckdb(world: Path, tmp_path: Path) -> None:
    """Two run-hour processes on the same DuckDB file, MLflow store and lake, made to overlap: the
    registry lock is held here until both have trained (from the same champion) and wait to
    register. The first to register becomes champion, the other is rejected as stale; run
    again, the stale hour is retrained from the new champion (before the fix: the stale version
    was handed back forever)."""
    env = cli_env(world)
    lock_path = world / "lake" / "_locks" / "registry.lock"  # the lake lock (`incremental.data.lake_lock`)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    stderrs = [tmp_path / f"stderr-{k}" for k in (8, 9)]
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        children = []
        for k, stderr in zip((8, 9), stderrs, strict=True):
            with open(stderr, "w") as err:
                children.append(subprocess.Popen(cli_command("run-hour", "--start", hour(k)), env=env,
                                                 stdout=subprocess.PIPE, stderr=err, text=True))
        deadline = time.monotonic() + 600
        while not all(_waits_for(stderr, lock_path) for stderr in stderrs):
            assert all(c.poll() is None for c in children), [s.read_text()[-3000:] for s in stderrs]
            assert time.monotonic() < deadline
            time.sleep(0.5)
        fcntl.flock(lock, fcntl.LOCK_UN)
    outputs = [(c.communicate(timeout=900)[0], stderr.read_text()) for c, stderr in zip(children, stderrs, strict=True)]
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, f"{out[-2000:]}\n{err[-5000:]}"
        assert "Could not set lock" not in err
    state = assert_consistent(world, [tag(8), tag(9)])
    mine = [v for v in state["versions"] if v["tags"]["interval_start"][:19] in (tag(8), tag(9))]
    assert len({v["tags"]["parent_version"] for v in mine}) == 1  # both trained from the same champion
    (stale,) = [v for v in mine if "stale:" in v["tags"]["reasons"]]
    (winner,) = [v for v in mine if v is not stale]
    assert state["champion"] == winner["version"]

    k = 8 if stale["tags"]["interval_start"].startswith(tag(8)) else 9
    rerun = assert_ok(cli(env, "run-hour", "--start", hour(k)))
    assert "already processed" not in rerun.stdout, rerun.stdout
    after = assert_consistent(world, [tag(k)])
    newest = max((v for v in after["versions"] if v["tags"]["interval_start"].startswith(tag(k))),
                 key=lambda v: int(v["version"]))
    assert newest["tags"]["parent_version"] == winner["version"] and after["champion"] == newest["version"]
    # and the winner's hour, run again, is not trained a second time
    assert "already processed" in assert_ok(cli(env, "run-hour", "--start", hour(17 - k))).stdout


def test_two_hours_at_once_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    home = tmp_path / "var"
    env = cli_env(home, INCREMENTAL_WAREHOUSE_URL=postgres_url)
    assert_ok(cli(env, "simulate", "--start", hour(0), "--end", hour(5), "--rate", "600", "--seed", "6"))
    assert_ok(cli(env, "extract", "--start", hour(0), "--end", hour(3)))
    assert_ok(cli(env, "validate", "--start", hour(0), "--end", hour(3)))
    assert_ok(cli(env, "benchmark", "freeze", "--start", hour(0), "--end", hour(3), "--size", "200"))
    children = [subprocess.Popen(cli_command("run-hour", "--start", hour(k)), env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for k in (3, 4)]
    outputs = [c.communicate(timeout=900) for c in children]
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, f"{out[-2000:]}\n{err[-5000:]}"
    state = assert_consistent(home, [tag(3), tag(4)])
    assert state["champion"] is not None
