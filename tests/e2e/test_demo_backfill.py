"""The demo's front door: its backfill is created on the embedded SQLite metadata without a lock error.

`make demo` failed one run in two with `sqlite3.OperationalError: database is locked` when it created
its backfill while the scheduler, dag-processor and api-server already wrote the same SQLite file
(the insert's deferred transaction met another process's commit: SQLite answers at once, no busy
timeout helps). The demo now creates the backfill with `incremental_airflow_backfill`
(scripts/airflow_env.sh) before any service starts. This runs that same function on fresh homes,
twice, with a core kept busy, then starts a scheduler and checks that it takes up the runs.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
from airflow_helpers import Env, Services

DAG_ID = "search_ranker_hourly"
EXECUTOR = "search_ranker_preload.PreloadedLocalExecutor"  # scripts/demo.sh's
TRIES = 2


def _burn(stop_at: float) -> None:
    while time.monotonic() < stop_at:
        sum(i * i for i in range(10_000))


@pytest.mark.slow
def test_demo_backfill_is_created_before_the_services_without_a_lock_error(tmp_path: Path) -> None:
    load = [multiprocessing.Process(target=_burn, args=(time.monotonic() + 600,), daemon=True) for _ in range(1)]
    for proc in load:
        proc.start()
    try:
        env = None
        for attempt in range(TRIES):
            env = Env(tmp_path / f"home-{attempt}", {"AIRFLOW__CORE__EXECUTOR": EXECUTOR,
                                                     "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"})
            env.sh("incremental_airflow_init")
            out = env.sh(f"incremental_airflow_backfill {DAG_ID} 2026-01-01T06:00:00+00:00 2026-01-01T12:00:00+00:00")
            assert "backfill of search_ranker_hourly created" in out.stdout
            assert "locked" not in (env.home / "airflow" / "backfill-create.log").read_text()
            runs = env.runs(DAG_ID)
            assert [r["hour"][11:16] for r in runs] == [f"{h:02d}:00" for h in range(6, 13)], runs
            assert {r["run_type"] for r in runs} == {"backfill"}
    finally:
        for proc in load:
            proc.terminate()
    assert env is not None
    # the last home: a scheduler started after the create takes up the oldest run first
    services = Services(env, tmp_path / "logs")
    try:
        services.start("scheduler", "airflow scheduler")
        first = services.wait("the scheduler to start the oldest backfill run",
                              lambda: next((r for r in env.runs(DAG_ID) if r["state"] != "queued"), None),
                              timeout=180)
        assert first["hour"].endswith("06:00Z"), first
        assert "preloaded the pipeline's modules" in services.tail("scheduler", 200_000)
    finally:
        services.stop()
