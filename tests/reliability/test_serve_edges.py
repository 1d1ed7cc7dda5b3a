"""Serving's edges (issue 20, defects 12-15): requests the signature does not allow are 400, a
huge bad body is not echoed whole, a port out of range is refused, and no downloaded model is
left behind after SIGTERM or a failure to bind.

The scoring cases run MLflow's own handler on a real pyfunc saved with the ranker's signature
(it scores 0.5: what it computes does not matter here, what reaches it does).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import assert_clean_error, cli, cli_command, cli_env, closed_port

from incremental.config import load_settings
from incremental.serving.server import ChampionHolder, Served, create_app

GOOD = {"query": "drill", "title": "Cordless Drill 18V", "brand": "Voltrex", "category": None}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    import mlflow
    from fastapi.testclient import TestClient

    from incremental.model import ranker as rk

    class Half(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [0.5] * len(model_input)

    path = tmp_path_factory.mktemp("pyfunc") / "model"
    mlflow.pyfunc.save_model(str(path), python_model=Half(), signature=rk.signature(), pip_requirements=["mlflow"])
    loaded = mlflow.pyfunc.load_model(str(path))
    holder = ChampionHolder(load_settings({"INCREMENTAL_HOME": str(tmp_path_factory.mktemp("home"))}))
    holder.served = Served("search-ranker", "1", str(path), loaded, None)
    with TestClient(create_app(holder)) as c:
        yield c


def test_a_good_request_is_scored(client) -> None:
    answer = client.post("/invocations", json={"dataframe_records": [GOOD]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == [0.5]


@pytest.mark.parametrize("column, value", [
    ("title", 12345), ("title", None), ("title", ["a", "list"]), ("title", {"a": "dict"}), ("query", True),
    ("brand", 7),
])
def test_a_value_that_is_not_a_string_is_400(client, column: str, value: object) -> None:
    for body in ({"dataframe_records": [GOOD, {**GOOD, column: value}]},
                 {"dataframe_split": {"columns": list(GOOD), "data": [list({**GOOD, column: value}.values())]}},
                 {"inputs": [GOOD, {**GOOD, column: value}]}, {"instances": [{**GOOD, column: value}]},
                 {"inputs": {k: [v, value if k == column else v] for k, v in GOOD.items()}}):
        answer = client.post("/invocations", json=body)
        assert answer.status_code == 400, answer.text
        assert column in answer.json()["message"] and "must be a string" in answer.json()["message"]


def test_a_huge_malformed_body_is_not_echoed_whole(client) -> None:
    body = '{"dataframe_records": [' + '{"query": "x", "title": "y"},' * 100_000  # 3 MB, never closed
    answer = client.post("/invocations", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert len(answer.text) < 2000, len(answer.text)
    assert "not valid JSON" in answer.json()["message"]


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_a_port_out_of_range_is_refused(fresh_home: Path, port: str) -> None:
    result = cli(cli_env(fresh_home), "serve", "--port", port, timeout=60)
    assert result.returncode == 2 and "--port" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_port_in_use_is_one_line_and_nothing_is_downloaded(fresh_home: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        scratch = tmp_path / "tmp"
        scratch.mkdir()
        result = cli(cli_env(fresh_home, TMPDIR=str(scratch)), "serve", "--port", str(port), timeout=120)
    assert_clean_error(result, f"127.0.0.1:{port}")
    assert not list(scratch.glob("serve-*"))


def test_sigterm_removes_the_downloaded_model(fresh_home: Path, tmp_path: Path) -> None:
    from test_registry_state import register

    version = register(fresh_home, "weights")["weights"]["version"]
    alias = ("import sys, mlflow; c = mlflow.MlflowClient(sys.argv[1], sys.argv[1]); "
             "c.set_registered_model_alias('search-ranker', 'champion', sys.argv[2])")
    subprocess.run([*cli_command()[:1], "-c", alias, f"sqlite:///{fresh_home / 'mlflow.db'}", version],
                   env=cli_env(fresh_home), check=True, timeout=120)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    port = closed_port()
    server = subprocess.Popen(cli_command("serve", "--port", str(port)), env=cli_env(fresh_home, TMPDIR=str(scratch)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as answer:
                    assert json.loads(answer.read())["version"] == version
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()[-3000:]
                time.sleep(0.3)
        assert list(scratch.glob("serve-*")), "the champion was not downloaded where expected"
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        # a stop, not a failure: uvicorn re-raises the SIGTERM after its graceful shutdown
        errors = server.stderr.read()
        assert server.returncode == 128 + signal.SIGTERM and "could not start" not in errors, errors[-2000:]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert not list(scratch.glob("serve-*")), list(scratch.iterdir())
