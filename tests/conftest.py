"""Shared fixtures: a private INCREMENTAL_HOME per test, and the real PostgreSQL when reachable.

Tests that need PostgreSQL skip when it is not reachable, except where INCREMENTAL_REQUIRE_SERVICES=1
(set by .ci/run): there a missing service is a failure.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from incremental.config import Settings, load_settings
from incremental.runtime import prepare_process

prepare_process()  # the test session is a process's edge too: set up as the CLI and the DAG tasks are

# The tests that start Airflow's own services (scheduler, api-server, Celery workers): `make test` runs
# the suite on two pytest-xdist workers, and these go to one of them, one at a time (two Airflow stacks
# at once on 2 cores slow each other past their waits, and the serve-logs port is shared).
AIRFLOW_SERVICE_TESTS = {"test_backfill.py", "test_demo_backfill.py", "test_deploy_dag.py", "test_distributed_pipeline.py"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`pytest -n 2 --dist loadfile` (`make test`): a file's tests stay on one worker (its module-scoped
    fixtures are built once), and the Airflow-service files count as one file. (xdist's own
    `xdist_group` marks do nothing under pytest 9.2: xdist 3.8 sets a node id attribute pytest no
    longer reads.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "airflow-services" if Path(path).name in AIRFLOW_SERVICE_TESTS else path

    return ByFile(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first (with `--no-loadscope-reorder`, xdist hands files out in this order), so the
    longest units are not the last ones handed out: one worker idle while the other ends a 5-minute test."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


POSTGRES_ADMIN_URL = os.environ.get("INCREMENTAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("INCREMENTAL_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def _require_services() -> bool:
    return os.environ.get("INCREMENTAL_REQUIRE_SERVICES") == "1"


def _missing(message: str) -> None:
    """A service a test needs is not there: skip, or fail under INCREMENTAL_REQUIRE_SERVICES=1 (CI)."""
    if _require_services():
        pytest.fail(message + " (INCREMENTAL_REQUIRE_SERVICES=1: services are required)")
    pytest.skip(message)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh INCREMENTAL_HOME; every setting that depends on it follows."""
    home = tmp_path / "var"
    monkeypatch.setenv("INCREMENTAL_HOME", str(home))
    for name in ("INCREMENTAL_WAREHOUSE_URL", "INCREMENTAL_LAKE", "INCREMENTAL_MLFLOW_URI", "INCREMENTAL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INCREMENTAL_BASE_MODEL", "tiny")
    return home


@pytest.fixture
def settings(home: Path) -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The admin URL of a reachable PostgreSQL, or skip (fail under INCREMENTAL_REQUIRE_SERVICES=1)."""
    import psycopg

    conninfo = POSTGRES_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        psycopg.connect(conninfo, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        _missing(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    yield conninfo


@pytest.fixture
def fresh_database(postgres_server: str) -> Iterator[Callable[[str], str]]:
    """`make(prefix)`: a new database on the real PostgreSQL, as a SQLAlchemy URL; all dropped afterwards."""
    import psycopg

    made: list[str] = []
    base = postgres_server.rsplit("/", 1)[0]

    def make(prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"

    try:
        yield make
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            for name in made:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(fresh_database: Callable[[str], str]) -> str:
    """A throw-away database on the real PostgreSQL, dropped afterwards."""
    return fresh_database("incremental_test")


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The URL of a reachable Redis, or skip (fail under INCREMENTAL_REQUIRE_SERVICES=1)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        _missing(f"Redis is not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3-compatible server on a free loopback port, in a process of its own: real
    HTTP, nothing mocked in-process (and delta-rs, which holds the GIL while it waits on the network,
    cannot starve a server thread of this process)."""
    import socket
    import subprocess
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto's server did not start on port {port}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
