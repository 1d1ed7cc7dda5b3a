"""Hours run again: two `run-hour` of the same hour at once take turns (issue 20, item 5); an
hour the champion's lineage already trained on is not trained again, and an hour that arrives
after a later one is trained once and not scored as test-then-train (item 7).

One DuckDB home (`world`) is prepared once per module, as in `test_faults.py`: nine simulated
hours (600 impressions each), the first four extracted and validated, a first champion
bootstrapped on them (tiny model, `fast.yaml`: its gate approves whatever is not stale). Every
case then works on hours of its own.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import time
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from conftest import (
    assert_consistent,
    assert_ok,
    bootstrap_champion,
    cli,
    cli_command,
    cli_env,
    hour_of,
    mlflow_state,
    prepare_home,
    tag_of,
)

from incremental import pipeline
from incremental.data import lake, table
from incremental.hours import Hour, iso_hour

pytestmark = pytest.mark.slow

T0 = Hour(2026, 7, 1, 0, tzinfo=UTC)


def hour(k: int) -> str:
    return hour_of(T0, k)


def tag(k: int) -> str:
    return tag_of(T0, k)


def versions_of(state: dict, k: int) -> list[dict]:
    return [v for v in state["versions"] if v["tags"].get("interval_start", "").startswith(tag(k))]


def update_runs_of(state: dict, k: int) -> list[dict]:
    """The MLflow runs of hourly updates of hour k (their run name starts with the hour)."""
    return [r for r in state["runs"] if (r["name"] or "").startswith(f"{T0 + timedelta(hours=k):%Y%m%dT%H}-v")]


def prequential(home: Path, k: int) -> list[dict]:
    """The hour's lines in the prequential record (test, then train)."""
    path = home / "lake" / "_drift" / "prequential.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [r for r in map(json.loads, lines) if r["hour"] == iso_hour(T0 + timedelta(hours=k))]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = prepare_home(tmp_path_factory.mktemp("reruns") / "var", (hour(0), hour(9)), (hour(0), hour(4)))
    return bootstrap_champion(home, hour(0), hour(4))


def test_two_runs_of_the_same_hour_at_once_take_turns(world: Path, tmp_path: Path) -> None:
    """Before: the second died with a traceback (`no file named model.safetensors ...
    candidates/run-...`: two judges of one candidate, one moving its directory under the other),
    later both judged the same candidate. Now the second waits for the first (the hour's run
    lock), then reuses its version: one version, one MLflow run, one prequential record."""
    env = cli_env(world)
    lock_path = world / "lake" / "_locks" / f"{pipeline.run_lock_name(T0 + timedelta(hours=4))}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    waiting = "hour 2026-07-01T04:00Z is being run by another process: waiting for it to finish"
    stderrs = [tmp_path / f"stderr-{i}" for i in range(2)]
    with open(lock_path, "a") as lock:  # held here until both runs wait for it, so that they start together
        fcntl.flock(lock, fcntl.LOCK_EX)
        children = []
        for stderr in stderrs:
            with open(stderr, "w") as err:
                children.append(subprocess.Popen(cli_command("run-hour", "--start", hour(4)), env=env,
                                                 stdout=subprocess.PIPE, stderr=err, text=True))
        deadline = time.monotonic() + 300
        while not all(waiting in stderr.read_text(errors="replace") for stderr in stderrs):
            # before: no run waited for another; both ran to the end at once
            assert all(c.poll() is None for c in children), [s.read_text()[-3000:] for s in stderrs]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        fcntl.flock(lock, fcntl.LOCK_UN)
    outputs = [(c.communicate(timeout=900)[0], stderr.read_text()) for c, stderr in zip(children, stderrs, strict=True)]
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, f"{out[-2000:]}\n{err[-5000:]}"
        assert "Traceback" not in err, err
    first, second = sorted(outputs, key=lambda o: "already processed" in o[0])
    assert "already processed" not in first[0] and "hourly update" in first[1], first  # it trained
    assert "(already processed: existing version)" in second[0], second  # it waited, then reused
    assert "hourly update" not in second[1], second[1]  # and trained nothing

    state = assert_consistent(world, [tag(4)])
    (version,) = versions_of(state, 4)
    assert f"version {version['version']}" in first[0] and f"version {version['version']}" in second[0]
    assert [r["run_id"] for r in update_runs_of(state, 4)] == [version["run_id"]]
    assert len(prequential(world, 4)) == 1


def test_an_hour_of_the_bootstrap_window_is_not_trained_again(world: Path) -> None:
    """Before: `run-hour` of an hour the first champion was bootstrapped on trained it into the
    champion a second time (a new version, approved here)."""
    env = cli_env(world)
    before = mlflow_state(world)
    champion = before["champion"]
    for args in (["run-hour", "--start", hour(2)], ["train", "--start", hour(2)]):
        result = assert_ok(cli(env, *args))
        assert "Traceback" not in result.stderr, result.stderr
        assert f"2026-07-01T02:00Z  skipped: hour 2026-07-01T02:00Z is already in champion v{champion}'s training data " \
               "(trained through 2026-07-01T" in result.stdout, result.stdout
        assert "hourly update" not in result.stderr  # nothing trained
    after = mlflow_state(world)
    assert after["versions"] == before["versions"] and after["champion"] == champion  # no new version
    assert len(after["runs"]) == len(before["runs"])  # no MLflow run
    assert prequential(world, 2) == []  # and not scored: the champion trained on it


def test_an_hour_after_a_later_one_is_trained_once_and_not_scored(world: Path) -> None:
    """Hour 06 runs after 07 (it reached the lake late): the champion that learnt 07 never
    trained on it, so it is trained, once, from that champion; it is not scored as test-then-train
    (a model that saw a later hour scores it); and neither hour is trained again when run again."""
    env = cli_env(world)
    assert_ok(cli(env, "run-hour", "--start", hour(7)))
    late = assert_ok(cli(env, "run-hour", "--start", hour(6)))
    assert "is not scored" in late.stderr and "hourly update" in late.stderr, late.stderr
    state = mlflow_state(world)
    (seven,), (six,) = versions_of(state, 7), versions_of(state, 6)
    assert six["tags"]["parent_version"] == seven["version"] == str(int(six["version"]) - 1)
    assert state["champion"] == six["version"]  # fast.yaml's gate approves what is not stale
    assert len(prequential(world, 7)) == 1 and prequential(world, 6) == []

    again = assert_ok(cli(env, "run-hour", "--start", hour(6), "--end", hour(8)))
    assert "hourly update" not in again.stderr and "Traceback" not in again.stderr, again.stderr
    assert again.stdout.count("(already processed: existing version)") == 2, again.stdout
    after = assert_consistent(world, [tag(6), tag(7)])
    assert after["versions"] == state["versions"] and len(after["runs"]) == len(state["runs"])
    assert len(prequential(world, 7)) == 1 and prequential(world, 6) == []


def test_late_rows_of_a_trained_hour_are_not_an_update_of_their_own(world: Path) -> None:
    """Rows of hour 08 that reach the warehouse after it was trained: an append, validated, the
    hour's identity changes (as before); but the hour is not trained again, whole, into the
    champion that already learnt it (before: a second version of hour 08, its old rows trained twice)."""
    env = cli_env(world)
    assert_ok(cli(env, "run-hour", "--start", hour(8)))
    state = mlflow_state(world)
    (eight,) = versions_of(state, 8)
    assert state["champion"] == eight["version"]
    assert_ok(cli(env, "simulate", "--start", hour(9), "--end", hour(10), "--rate", "600", "--seed", "5",
                  "--fault", "late_rows_for_trained_hour"))
    again = assert_ok(cli(env, "run-hour", "--start", hour(8)))
    assert "Traceback" not in again.stderr and "hourly update" not in again.stderr, again.stderr
    assert (f"skipped: hour 2026-07-01T08:00Z is already in champion v{eight['version']}'s training data "
            "(trained through 2026-07-01T09:00Z): not trained again; rows that reached the hour since") in again.stdout
    part = lake.partition(world / "lake", T0 + timedelta(hours=8))
    assert part.status == "validated" and part.pending_parts == 0  # the late rows, validated
    events = [c["event"] for c in table.hour_versions(table.open_table(world / "lake"), T0 + timedelta(hours=8))]
    assert events[-2:] == ["late_rows", "validate"]  # one append, one validation
    assert part.manifest["sha256"] != eight["tags"]["partition_sha256"]
    after = mlflow_state(world)
    assert after["versions"] == state["versions"] and len(after["runs"]) == len(state["runs"])
