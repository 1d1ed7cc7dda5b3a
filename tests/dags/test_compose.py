"""docker-compose.yaml: the production-shaped stack has the parts docs/scaling.md describes, and is valid."""

from __future__ import annotations

import os
import re
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
        assert env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == "search_ranker_preload.CELERY_CONFIG"
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


def test_gpu_worker_gets_the_cuda_build_of_torch(compose: dict) -> None:
    """One Dockerfile, torch's build a build argument: CPU by default, CUDA for the `gpu` worker only."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "ARG TORCH_BUILD=cpu" in dockerfile
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/\$\{TORCH_BUILD\}$", dockerfile, re.M)
    torch_install = dockerfile.index('pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"')
    assert torch_install < dockerfile.index("pip install -r requirements.txt")  # the lock then keeps that torch
    assert 'test "$(python -c \'import torch; print(torch.__version__)\')" = "${TORCH_VERSION}+${TORCH_BUILD}"' in dockerfile
    assert "torch==2.13.0\n" in (REPO / "requirements.txt").read_text()  # satisfied by 2.13.0+cpu and +cuXXX

    services = compose["services"]
    gpu = services["airflow-worker-gpu"]
    assert gpu["build"]["context"] == "."
    assert re.fullmatch(r"\$\{TORCH_CUDA_BUILD:-cu\d{3}\}", gpu["build"]["args"]["TORCH_BUILD"])
    assert gpu["image"] != services["airflow-worker-cpu"]["image"]
    for name, service in services.items():
        if name != "airflow-worker-gpu" and "build" in service:  # every other image: the CPU default
            assert service["build"] == ".", name
            assert service["image"] == "search-ranker:latest", name


def test_serving_is_reloaded_by_the_deploy_dag(compose: dict) -> None:
    services = compose["services"]
    serving = services["serving"]
    assert serving["command"].startswith("incremental serve --host 0.0.0.0 --port 8000")
    assert serving["environment"]["INCREMENTAL_MLFLOW_URI"] == "http://mlflow:5000"
    for name in ("airflow-worker-cpu", "airflow-worker-gpu"):
        assert services[name]["environment"]["INCREMENTAL_SERVE_URLS"].endswith("http://serving:8000}")
    assert (REPO / "dags" / "search_ranker_deploy.py").is_file()


def test_docker_compose_config_is_valid() -> None:
    """`docker-compose config` accepts the file, and resolves the GPU worker's build to a CUDA torch.

    CI (.ci/run) installs Debian's docker-compose when it is missing, so there this cannot skip.
    """
    if shutil.which("docker-compose") is None:
        message = "docker-compose is not installed (apt-get install docker-compose)"
        if os.environ.get("INCREMENTAL_REQUIRE_SERVICES") == "1":
            pytest.fail(message + "; INCREMENTAL_REQUIRE_SERVICES=1: it is required")
        pytest.skip(message)
    env = {k: v for k, v in os.environ.items() if k != "TORCH_CUDA_BUILD"}
    out = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                         cwd=REPO, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)["services"]
    assert re.fullmatch(r"cu\d{3}", resolved["airflow-worker-gpu"]["build"]["args"]["TORCH_BUILD"])
    assert "args" not in resolved["airflow-worker-cpu"]["build"]
    assert resolved["airflow-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
