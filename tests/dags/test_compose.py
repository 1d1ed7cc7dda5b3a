"""docker-compose.yaml: the production-shaped stack has the parts DESIGN.md promises, and is valid."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _env(service: dict) -> dict:
    return service.get("environment") or {}


def test_services(compose: dict) -> None:
    services = compose["services"]
    for name in ("postgres", "redis", "mlflow", "airflow-init", "airflow-apiserver", "airflow-scheduler",
                 "airflow-dag-processor", "airflow-triggerer", "airflow-worker-cpu", "airflow-worker-gpu"):
        assert name in services, name
    airflow = [s for n, s in services.items() if n.startswith("airflow-")]
    for service in airflow:
        env = _env(service)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg://")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379")
        assert env["INCREMENTAL_MLFLOW_URI"] == "http://mlflow:5000"
        assert "incremental-data:/data" in service["volumes"]
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        assert services[name]["command"].startswith(f"airflow {name.removeprefix('airflow-').replace('apiserver', 'api-server')}")


def test_workers_and_queues(compose: dict) -> None:
    services = compose["services"]
    gpu, cpu = services["airflow-worker-gpu"], services["airflow-worker-cpu"]
    assert "--queues gpu" in gpu["command"] and "--queues default" in cpu["command"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "deploy" not in cpu
    assert "airflow pools set gpu" in " ".join(services["airflow-init"]["command"])


def test_databases_volumes_and_mlflow(compose: dict) -> None:
    services = compose["services"]
    assert set(compose["volumes"]) >= {"postgres-data", "incremental-data"}
    init = REPO / "deploy" / "init-databases.sh"
    assert f"./{init.relative_to(REPO)}:/docker-entrypoint-initdb.d/10-init-databases.sh:ro" in services["postgres"]["volumes"]
    script = init.read_text()
    for db in ("airflow", "warehouse", "mlflow"):
        assert "CREATE DATABASE" in script and f" {db}" in script
    mlflow = services["mlflow"]["command"]
    assert "--backend-store-uri postgresql+psycopg://mlflow:" in mlflow and "@postgres:5432/mlflow" in mlflow
    assert "/data/mlartifacts" in mlflow and "incremental-data:/data" in services["mlflow"]["volumes"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install -r requirements.txt" in dockerfile and "pip install --no-deps -e ." in dockerfile


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_config_is_valid() -> None:
    out = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
