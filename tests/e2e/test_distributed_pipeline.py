"""The hourly DAG on workers that share no disk: CeleryExecutor, a default-queue worker and a
`gpu`-queue worker, each in its own working directory with its own INCREMENTAL_HOME.

What they share is what machines share in production, all real and started here: PostgreSQL
(Airflow's metadata, the warehouse, MLflow's backend store; a fresh database each), Redis (the
Celery broker), an MLflow tracking server with `--serve-artifacts` (its artifact store is its
own folder: workers reach models, holdouts and evaluations over HTTP only), and the lake on an
S3-compatible server (moto's). An operator home seeds the warehouse and bootstraps the first
champion; then a backfill of two hours runs through a real scheduler. Both hours complete, `train`
ran on the `gpu` worker and nowhere else, `evaluate` on the default worker, and both decisions are
in the registry. Plumbing, not quality: the tiny model.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
from airflow_helpers import Env, Services, seed_and_bootstrap

DAG_ID = "search_ranker_hourly"
HOURS = ("2026-01-01T04:00Z", "2026-01-01T05:00Z")
MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mlflow_server(backend: str, artifacts: Path, port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen([MLFLOW, "server", "--backend-store-uri", backend, "--artifacts-destination",
                             str(artifacts), "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _healthy(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _files_under(path: Path, pattern: str) -> list[Path]:
    return sorted(path.rglob(pattern)) if path.exists() else []


@pytest.mark.slow
def test_two_hours_on_two_workers_that_share_no_disk(tmp_path: Path, fresh_database, redis_server: str,  # noqa: ANN001
                                                     s3_endpoint: str) -> None:
    import psycopg

    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    aws = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1"}
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    metadata, warehouse, mlflow_db = (fresh_database(p) for p in ("airflow_dist", "warehouse_dist", "mlflow_dist"))
    mlflow_port, api_port = _free_port(), _free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    server = _mlflow_server(mlflow_db, tmp_path / "mlflow-server-artifacts", mlflow_port, logs / "mlflow.log")

    operator = Env(tmp_path / "operator", {
        **aws,
        "INCREMENTAL_LAKE": f"s3://{bucket}/lake",
        "INCREMENTAL_WAREHOUSE_URL": warehouse,
        "INCREMENTAL_MLFLOW_URI": f"http://127.0.0.1:{mlflow_port}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "search_ranker_preload.CELERY_CONFIG",  # as docker-compose.yaml
        "AIRFLOW__CELERY__BROKER_URL": f"{redis_server}/{_free_port() % 15 + 1}",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    })
    conninfo = metadata.replace("postgresql+psycopg://", "postgresql://")

    def query(sql: str, *args) -> list[tuple]:
        with psycopg.connect(conninfo) as conn:
            return conn.execute(sql, args).fetchall()

    services = Services(operator, logs)
    homes = {"cpu": tmp_path / "machine-cpu", "gpu": tmp_path / "machine-gpu"}
    try:
        deadline = time.monotonic() + 120
        while not _healthy(f"http://127.0.0.1:{mlflow_port}/health"):
            assert server.poll() is None and time.monotonic() < deadline, (logs / "mlflow.log").read_text()[-3000:]
            time.sleep(1)
        seed_and_bootstrap(operator, "2026-01-01T00:00", "2026-01-01T04:00", "2026-01-01T06:00")

        services.start("api-server", f"airflow api-server --port {api_port}")
        services.start("scheduler", "airflow scheduler")
        services.start("dag-processor", "airflow dag-processor")
        for name, home in homes.items():
            home.mkdir()
            queue = "gpu" if name == "gpu" else "default"
            services.start(f"worker-{name}", f"airflow celery worker --queues {queue} --concurrency 1 "
                           f"--celery-hostname {name}-{api_port}@%h --skip-serve-logs",
                           cwd=home, INCREMENTAL_HOME=str(home / "var"), AIRFLOW_HOME=str(home / "airflow"))
        services.wait("the DAG to be parsed", lambda: query("SELECT 1 FROM dag WHERE dag_id = %s", DAG_ID), 180)
        operator.sh(f"airflow dags unpause {DAG_ID}", timeout=120)
        operator.sh(f"airflow backfill create --dag-id {DAG_ID} --from-date 2026-01-01T04:00:00+00:00 "
                    "--to-date 2026-01-01T05:00:00+00:00 --max-active-runs 1", timeout=120)

        def done() -> bool:
            failed = query("SELECT run_id FROM dag_run WHERE dag_id = %s AND state = 'failed'", DAG_ID)
            assert not failed, f"failed runs: {failed}\n" + "\n".join(
                f"--- {n}\n{services.tail(n, 3000)}" for n in ("worker-cpu", "worker-gpu"))
            rows = query("SELECT completed_at FROM backfill WHERE dag_id = %s", DAG_ID)
            return bool(rows) and all(r[0] is not None for r in rows)

        services.wait("the backfill of two hours", done, 1500, interval=10)
        tasks = query("SELECT run_id, task_id, state, queue FROM task_instance WHERE dag_id = %s", DAG_ID)
        history = operator.history()
    finally:
        services.stop()
        server.terminate()
        server.wait(timeout=30)

    assert {t[2] for t in tasks if t[1] in ("train", "evaluate", "register")} == {"success"}, tasks
    assert {t[3] for t in tasks if t[1] in ("train", "catch_up")} == {"gpu"}
    assert {t[3] for t in tasks if t[1] in ("extract", "validate", "monitor", "evaluate", "register")} == {"default"}

    # train ran on the gpu machine only: its checkpoints are there and nowhere else ...
    gpu, cpu = homes["gpu"], homes["cpu"]
    assert _files_under(gpu, "last.pt") or _files_under(gpu / "var" / "candidates", "config.json"), \
        sorted(str(p.relative_to(gpu)) for p in gpu.rglob("*"))[:40]
    assert not _files_under(cpu / "var" / "checkpoints", "*")
    # ... and evaluate on the default one, which read the candidate back over HTTP from the MLflow server
    assert _files_under(cpu / "var" / "candidates", "config.json")
    assert not _files_under(gpu / "var" / "evaluations", "*.json")
    # nothing of the lake on any machine's disk (partitions, anchor, drift record): it is in the bucket
    for machine in (gpu, cpu, operator.home):
        assert not [p for p in machine.rglob("*") if p.name in ("search_logs", "anchor", "_drift", "lake")], machine

    hourly = [row for row in history if row["interval"][:16] in {h[:16] for h in HOURS}]
    assert len(hourly) == 2 and {row["decision"] for row in hourly} <= {"approved", "rejected"}, history
    print(json.dumps(hourly, indent=1)[:3000])
