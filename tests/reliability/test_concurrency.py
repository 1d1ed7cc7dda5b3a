"""Several processes on one embedded warehouse, and the Airflow pool that keeps the DAGs that
write the registry and the anchor set from overlapping (issue 10, item 7)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
from conftest import REPO, assert_ok, cli, cli_command, cli_env

from incremental.config import Settings
from incremental.data.warehouse import Warehouse
from incremental.errors import WarehouseError

START, END = "2026-07-01T00:00", "2026-07-01T06:00"


@pytest.fixture
def warehouse_home(fresh_home: Path) -> Path:
    assert_ok(cli(cli_env(fresh_home), "simulate", "--start", START, "--end", END, "--rate", "150"))
    return fresh_home


def test_a_process_waits_while_another_program_holds_the_duckdb_file(warehouse_home: Path) -> None:
    """Before: "IO Error: Could not set lock on file" and a traceback, at once."""
    con = duckdb.connect(str(warehouse_home / "warehouse.duckdb"))  # e.g. an analyst's DuckDB shell
    try:
        child = subprocess.Popen(cli_command("extract", "--start", START), env=cli_env(warehouse_home),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(8)
        assert child.poll() is None, child.communicate()  # waiting for its turn, not crashed
    finally:
        con.close()
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err[-3000:]
    assert "rows" in out


def test_processes_take_turns_on_the_duckdb_file(warehouse_home: Path) -> None:
    """Two extractions of six hours each and a simulation, all at once, on one file."""
    env = cli_env(warehouse_home)
    commands = [("extract", "--start", START, "--end", END), ("extract", "--start", START, "--end", END),
                ("simulate", "--start", END, "--end", "2026-07-01T09:00", "--rate", "150", "--seed", "3")]
    children = [subprocess.Popen(cli_command(*c), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for c in commands]
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-3000:]
        assert "Traceback" not in err


def test_a_lock_held_too_long_is_a_clear_error(warehouse_home: Path) -> None:
    path = warehouse_home / "warehouse.duckdb"
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a stuck process of ours
        started = time.monotonic()
        with pytest.raises(WarehouseError, match=r"is busy: another process held .*warehouse\.duckdb\.lock for more than 1 s"):
            Warehouse(f"duckdb:///{path}", lock_timeout=1).scalar("count_search_logs", {"start": 0, "end": 0})
        assert time.monotonic() - started < 10
    # and once it is released (as a killed holder's is) the next one goes through
    Warehouse(f"duckdb:///{path}", lock_timeout=1).execute_file("schema")


def test_the_dags_that_write_the_registry_or_the_anchor_share_one_pool(tmp_path: Path) -> None:
    """hourly evaluate/register and the benchmark freeze run one at a time across DAGs."""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}", "PYTHONPATH": str(REPO)}
    code = """
import json
from airflow.dag_processing.dagbag import BundleDagBag
bag = BundleDagBag(dag_folder="dags", bundle_path="dags", bundle_name="dags-folder")
assert not bag.import_errors, bag.import_errors
print(json.dumps({f"{d}.{t.task_id}": t.pool for d, dag in bag.dags.items() for t in dag.tasks}))
"""
    import json
    import sys

    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    pools = json.loads(out.stdout.strip().splitlines()[-1])
    for task in ("search_ranker_hourly.evaluate", "search_ranker_hourly.register", "search_ranker_benchmark.freeze_anchor"):
        assert pools[task] == "search_ranker_registry", (task, pools[task])
    assert pools["search_ranker_hourly.train"] == pools["search_ranker_full_retrain.full_retrain"] == "gpu"
    # the pool exists wherever the DAGs run: the local set-up and the compose stack create it
    assert "airflow pools set search_ranker_registry 1" in (REPO / "scripts" / "airflow_env.sh").read_text()
    assert "airflow pools set search_ranker_registry 1" in (REPO / "docker-compose.yaml").read_text()


def test_a_run_of_an_hour_held_too_long_by_another_is_a_clear_error(settings: Settings,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """The hour's run lock (two `run-hour` of one hour take turns): the one that waits says so, and
    a wait past its limit is one line naming the hour and the lock, not a TimeoutError traceback."""
    from incremental import pipeline
    from incremental.errors import IncrementalError
    from incremental.hours import parse_hour

    start = parse_hour("2026-07-01T04:00Z")
    path = settings.lake / "_locks" / f"{pipeline.run_lock_name(start)}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as held:  # another run of the hour (another open file: flock makes it wait)
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(IncrementalError, match=r"hour 2026-07-01T04:00Z has been run by another process .*"
                           r"run-20260701T04.*Stop it, then run the hour again"):
            with pipeline.run_lock(settings, start, timeout=0.3):
                pass
    assert "is being run by another process: waiting for it to finish" in caplog.text
    with pipeline.run_lock(settings, start, timeout=0.3):  # released: it goes through at once
        pass
