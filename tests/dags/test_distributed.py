"""The distributed parts for real: CeleryExecutor + Redis + PostgreSQL metadata, a task routed to queue `gpu`.

A throw-away metadata database on the machine's PostgreSQL, a private Redis database number, and a
tiny DAG of our own (not the ML one) run through a real api-server, scheduler, dag-processor and two
Celery workers: one on `default`, one on `gpu`. Each task records which worker ran it. Skips when
PostgreSQL or Redis is missing, except under INCREMENTAL_REQUIRE_SERVICES=1 (then it fails).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_URL = os.environ.get("INCREMENTAL_TEST_REDIS_URL", "redis://127.0.0.1:6379")
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "distributed_probe"

PROBE_DAG = textwrap.dedent('''
    """A probe: which worker runs a task on the default queue, and which one on `gpu`."""
    import json, os
    from datetime import datetime
    from pathlib import Path
    from airflow.sdk import dag, task

    OUT = Path(os.environ["PROBE_OUT"])

    def record(name):
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"{name}.json").write_text(json.dumps({"worker": os.environ.get("PROBE_WORKER"), "pid": os.getpid()}))

    @dag(dag_id="distributed_probe", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         tags=["probe"], doc_md="probe", default_args={"retries": 0})
    def distributed_probe():
        @task
        def on_default():
            record("on_default")

        @task(queue="gpu", pool="gpu")
        def on_gpu():
            record("on_gpu")

        on_default() >> on_gpu()

    distributed_probe()
''')


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The URL of a reachable Redis, or skip (fail under INCREMENTAL_REQUIRE_SERVICES=1)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        message = f"Redis is not reachable at {REDIS_URL}: {exc}"
        if os.environ.get("INCREMENTAL_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " (INCREMENTAL_REQUIRE_SERVICES=1: services are required)")
        pytest.skip(message)
    return REDIS_URL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def metadata_db(postgres_server: str) -> Iterator[tuple[str, str]]:
    """(SQLAlchemy URL, psycopg conninfo) of a fresh database, dropped afterwards."""
    import psycopg

    name = f"airflow_dist_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = postgres_server.rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}", f"{base}/{name}"
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Services:
    """Airflow processes in their own process groups, all stopped at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs, self.procs = env, logs, []

    def start(self, name: str, *args: str, **extra_env: str) -> None:
        log = (self.logs / f"{name}.log").open("w")
        proc = subprocess.Popen([AIRFLOW, *args], env={**self.env, **extra_env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append((name, proc))

    def check_alive(self) -> None:
        for name, proc in self.procs:
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{self.tail(name)}"

    def tail(self, name: str, chars: int = 3000) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for _, proc in self.procs:  # children the parents left behind (celery forks, gunicorn workers)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _wait(what: str, check, timeout: float, services: Services, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        services.check_alive()
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n"
                         + "\n".join(f"--- {n}\n{services.tail(n, 1500)}" for n, _ in services.procs))


@pytest.mark.slow
def test_celery_routes_the_gpu_queue(tmp_path: Path, metadata_db: tuple[str, str], redis_server: str) -> None:
    import psycopg

    sql_url, conninfo = metadata_db
    dags, out, logs = tmp_path / "dags", tmp_path / "out", tmp_path / "logs"
    for d in (dags, logs):
        d.mkdir()
    (dags / "distributed_probe.py").write_text(PROBE_DAG)
    port = _free_port()
    redis_db = random.randint(1, 15)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_url,
        "AIRFLOW__CELERY__BROKER_URL": f"{redis_server}/{redis_db}",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sql_url,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "PROBE_OUT": str(out),
    }
    migrate = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=240)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    pool = subprocess.run([AIRFLOW, "pools", "set", "gpu", "1", "GPU slots"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert pool.returncode == 0, pool.stderr[-3000:]

    services = Services(env, logs)
    try:
        services.start("api-server", "api-server", "--port", str(port))
        services.start("scheduler", "scheduler")
        services.start("dag-processor", "dag-processor")
        services.start("worker-cpu", "celery", "worker", "--queues", "default", "--concurrency", "1",
                       "--celery-hostname", f"cpu-{port}@%h", "--skip-serve-logs", PROBE_WORKER="cpu")
        services.start("worker-gpu", "celery", "worker", "--queues", "gpu", "--concurrency", "1",
                       "--celery-hostname", f"gpu-{port}@%h", "--skip-serve-logs", PROBE_WORKER="gpu")

        def query(sql: str, *args) -> list[tuple]:
            with psycopg.connect(conninfo) as conn:
                return conn.execute(sql, args).fetchall()

        _wait("the probe DAG to be parsed", lambda: query("SELECT 1 FROM dag WHERE dag_id = %s", DAG_ID), 120, services)
        trigger = subprocess.run([AIRFLOW, "dags", "trigger", DAG_ID], env=env, capture_output=True, text=True,
                                 timeout=120)
        assert trigger.returncode == 0, trigger.stderr[-3000:]

        def finished() -> list[tuple] | None:
            rows = query("SELECT task_id, state, queue, pool FROM task_instance WHERE dag_id = %s", DAG_ID)
            states = {r[1] for r in rows}
            assert not states & {"failed", "upstream_failed"}, rows
            return rows if len(rows) == 2 and states == {"success"} else None

        rows = {r[0]: r for r in _wait("both tasks to succeed", finished, 180, services)}
    finally:
        services.stop()

    assert rows["on_gpu"][2:] == ("gpu", "gpu")
    assert rows["on_default"][2] == "default"
    ran = {name: json.loads((out / f"{name}.json").read_text()) for name in ("on_default", "on_gpu")}
    assert ran["on_gpu"]["worker"] == "gpu", ran  # consumed from queue `gpu` by the GPU worker only
    assert ran["on_default"]["worker"] == "cpu", ran
