"""A backfill of three hours through a real scheduler: oldest first, one at a time, a damaged hour
quarantined without turning its run red, and reprocessing idempotent.

PostgreSQL metadata (a throw-away database on the machine's server) with the LocalExecutor; an
api-server (the Task Execution API), a scheduler and a dag-processor started here and stopped at the
end. Scheduled runs are switched off (`use_job_schedule=False`) so only the backfill creates runs.
Hour 04 is good (approved), hour 05 is damaged by the simulator (quarantined: train, evaluate and
register skipped, the run green with a note), hour 06 is good again (approved, warm-started from
04's version). The first backfill is followed by the demo's watcher (`scripts/airflow_watch.py`)
over the api-server's REST API; afterwards the lake and the MLflow registry say the same. Then the
same hours are backfilled again with `--reprocess-behavior completed`: every run goes through
again; an approved hour reuses its version, a rejected one is retrained only if the champion moved
since (never two versions for the same interval and parent).
"""

from __future__ import annotations

import socket
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from airflow_helpers import Env, Services, seed_and_bootstrap

from incremental.data import lake
from incremental.hours import parse_hour

DAG_ID = "search_ranker_hourly"
HOURS = ["2026-01-01T04:00Z", "2026-01-01T05:00Z", "2026-01-01T06:00Z"]
BAD_HOUR = "2026-01-01T05:00"
SKIPPED = {"train", "evaluate", "register", "publish_champion"}
BACKFILL = (f"airflow backfill create --dag-id {DAG_ID} --from-date 2026-01-01T04:00:00+00:00 "
            "--to-date 2026-01-01T06:00:00+00:00 --max-active-runs 1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_backfill_runs_in_order_and_reprocessing_registers_nothing_twice(tmp_path: Path, postgres_url: str) -> None:
    import psycopg

    port = _free_port()
    env = Env(tmp_path / "var", {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_url,
        "AIRFLOW__CORE__EXECUTOR": "search_ranker_preload.PreloadedLocalExecutor",  # as the demo's
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    })
    seed_and_bootstrap(env, "2026-01-01T00:00", "2026-01-01T04:00", "2026-01-01T07:00", bad_hour=BAD_HOUR)
    champion_before = next(row["version"] for row in env.history() if row["champion"])
    conninfo = postgres_url.replace("postgresql+psycopg://", "postgresql://")

    def query(sql: str, *args) -> list[tuple]:
        with psycopg.connect(conninfo) as conn:
            return conn.execute(sql, args).fetchall()

    services = Services(env, tmp_path / "logs")
    try:
        services.start("api-server", f"airflow api-server --port {port}")
        services.start("scheduler", "airflow scheduler")
        services.start("dag-processor", "airflow dag-processor")
        services.wait("the DAG to be parsed", lambda: query("SELECT 1 FROM dag WHERE dag_id = %s", DAG_ID), 180)
        env.sh(f"airflow dags unpause {DAG_ID}", timeout=120)

        def backfill_done() -> bool:
            rows = query("SELECT completed_at FROM backfill WHERE dag_id = %s ORDER BY id", DAG_ID)
            failed = query("SELECT run_id FROM dag_run WHERE dag_id = %s AND state = 'failed'", DAG_ID)
            assert not failed, f"failed runs: {failed}"
            return bool(rows) and all(r[0] is not None for r in rows)

        env.sh(BACKFILL, timeout=120)
        # the demo's watcher (scripts/airflow_watch.py) follows it over the real REST API
        services_args = " ".join(f"--service {name}={proc.pid}:{services.logs / f'{name}.log'}"
                                 for name, proc in services.procs)
        watched = env.sh(f"python scripts/airflow_watch.py backfill {DAG_ID} --timeout 1500 {services_args}",
                         timeout=1600).stdout
        assert backfill_done()
        first = env.runs(DAG_ID)
        versions_after_first = env.history()

        env.sh(BACKFILL + " --reprocess-behavior completed", timeout=120)
        services.wait("the reprocessing backfill", backfill_done, 1500, interval=10)
        second = env.runs(DAG_ID)
        versions_after_second = env.history()
    finally:
        services.stop()

    # one block per hour, oldest first, each with its duration and run note, then the end
    blocks = [line for line in watched.splitlines() if line.startswith("-- hour ")]
    assert [b.split()[2] for b in blocks] == HOURS, watched
    assert len([line for line in watched.splitlines() if line.startswith("   success in ")]) == 3, watched
    assert "completed: 3 runs in" in watched.splitlines()[-1], watched
    for runs in (first, second):
        assert [r["hour"] for r in runs] == HOURS
        assert all(r["state"] == "success" and r["run_type"] == "backfill" for r in runs), runs
        starts = [datetime.fromisoformat(r["start"]) for r in runs]
        ends = [datetime.fromisoformat(r["end"]) for r in runs]
        assert starts == sorted(starts), "hours must run oldest first"
        assert all(ends[i] <= starts[i + 1] for i in range(len(runs) - 1)), "hours must run one at a time"
    assert [r["run_id"] for r in second] == [r["run_id"] for r in first]  # the same runs, run again
    assert min(datetime.fromisoformat(r["start"]) for r in second) > max(datetime.fromisoformat(r["end"]) for r in first)

    _check_the_three_hours(env, first, versions_after_first, champion_before)
    # Reprocessing registers nothing twice: an approved hour reuses its version, and a rejected one
    # is retrained only from a champion it was not yet trained from (never two versions with the
    # same interval and parent).
    def key(row: dict) -> tuple:
        return row["interval"], row["parent"]

    assert len({key(r) for r in versions_after_second}) == len(versions_after_second), versions_after_second
    approved_first = [r["version"] for r in versions_after_first if r["decision"] == "approved"]
    first_by_version = {r["version"]: r for r in versions_after_first}
    for row in versions_after_second:
        if row["version"] in first_by_version:
            assert row["decision"] == first_by_version[row["version"]]["decision"]
        else:  # new in the second pass: a rejected hour retrained from the current champion
            assert not [v for v in approved_first if first_by_version[v]["interval"] == row["interval"]], row


def _check_the_three_hours(env: Env, runs: list[dict], history: list[dict], champion_before: str) -> None:
    """The first pass: good, quarantined, good, in the runs, the lake and the registry."""
    good, bad, good_again = runs
    for run in (good, good_again):
        # no drift declared: no catch-up retrain, so nothing for publish_catch_up to announce
        assert run["tasks"].pop("publish_catch_up") == "skipped", run["tasks"]
        assert set(run["tasks"].values()) == {"success"}, run["tasks"]
        assert run["note"].startswith(f"Hour {run['hour']}: approved"), run["note"]
    assert {t: s for t, s in bad["tasks"].items() if t in SKIPPED} == dict.fromkeys(SKIPPED, "skipped"), bad["tasks"]
    assert bad["tasks"]["validate"] == "success" and bad["tasks"]["check_validated"] == "success"
    assert bad["note"].startswith(f"Hour {bad['hour']} QUARANTINED"), bad["note"]

    # the lake: two validated hours, one in quarantine with its reasons
    states = [lake.partition(env.home / "lake", parse_hour(h)).status for h in HOURS]
    assert states == ["validated", "quarantined", "validated"]
    assert (lake.partition(env.home / "lake", parse_hour(BAD_HOUR)).path / "quarantine.json").is_file()

    # the registry: one new version per good hour, each the champion in turn, trained on its parent
    hourly = [row for row in history if row["interval"][:16] in {h[:16] for h in HOURS}]
    assert [row["interval"][:13] for row in hourly] == ["2026-01-01T04", "2026-01-01T06"], history
    assert [row["decision"] for row in hourly] == ["approved", "approved"], history
    assert hourly[0]["parent"] == champion_before and hourly[1]["parent"] == hourly[0]["version"], history
    assert hourly[1]["champion"], history
