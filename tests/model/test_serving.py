"""Serving over real HTTP: `incremental serve` on 127.0.0.1 answers with the champion's scores, and
after a promotion the deployment step (what dags/search_ranker_deploy.py runs) makes it serve
the new version.

The two versions are tiny rankers (random weights from two seeds, so their scores differ), logged
as the same pyfunc with the same signature as train.py logs, and registered through the project's
registry code (`registry.register_candidate`, compare-and-set promotion).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import make_settings

from incremental.hours import Hour
from incremental.model import ranker as rk
from incremental.registry import champion as registry
from incremental.registry import tracking
from incremental.serving import server as serve

H0 = Hour(2026, 4, 1, 0, tzinfo=UTC)
ROWS = pd.DataFrame({
    "query": ["red running shoes", "blue lamp", "leather bag", "grey jacket"],
    "title": ["acme red running shoes", "nova blue desk lamp", "zenith brown leather bag", "peak grey rain jacket"],
    "brand": ["acme", "nova", None, "peak"],
    "category": ["footwear", "home", "accessories", None],
})


def register_tiny(settings, tmp: Path, seed: int, hour: int, parent: str | None) -> tuple[dict, np.ndarray]:
    """Log a tiny ranker as train.py does, register it (approved), and return its local scores."""
    model, tokenizer = rk.load_base("tiny", seed=seed)
    model_dir = rk.save_dir(model, tokenizer, tmp / f"ranker-{seed}")
    tracking.get_or_create_experiment(settings)
    mlflow.set_experiment(tracking.UPDATES_EXPERIMENT)
    with mlflow.start_run() as run:
        mlflow.pyfunc.log_model(
            name="model", python_model=rk.RankerPyfunc(max_length=64), artifacts={"model_dir": str(model_dir)},
            code_paths=[str(Path(rk.__file__).parent)], pip_requirements=rk.pip_requirements(),
            signature=rk.signature(),
        )
    start = H0 + timedelta(hours=hour)
    decision = registry.register_candidate(
        settings, model_uri=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, interval_start=start,
        interval_end=start + timedelta(hours=1), parent_version=parent, data_hash=f"serving-{seed}", approved=True,
        reasons=["test"], metrics={"holdout_auc": 0.7},
    )
    return decision, rk.score_frame(model, tokenizer, ROWS, max_length=64)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, payload: dict | None = None, method: str | None = None) -> tuple[dict, dict]:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read()), dict(response.headers)


def predictions(base: str, frame: pd.DataFrame, fmt: str = "records") -> tuple[np.ndarray, str]:
    if fmt == "records":
        payload = {"dataframe_records": json.loads(frame.to_json(orient="records"))}
    else:
        payload = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
    body, headers = http(f"{base}/invocations", payload)
    return np.asarray(body["predictions"], dtype=np.float32), headers["x-model-version"]


@pytest.fixture
def server(tmp_path: Path):
    home = tmp_path / "var"
    settings = make_settings(home, tmp_path / "lake", model_name="ranker-serving")
    port = free_port()
    env = {**os.environ, "INCREMENTAL_HOME": str(home), "INCREMENTAL_MLFLOW_URI": settings.mlflow_uri,
           "INCREMENTAL_MODEL_NAME": settings.model_name, "INCREMENTAL_BASE_MODEL": "tiny",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("INCREMENTAL_CONFIG", None)
    yield settings, port, env


def start(port: int, env: dict, log: Path, *extra: str) -> subprocess.Popen:
    """`incremental serve` in a subprocess, once it answers HTTP (200, or 503 without a champion)."""
    out = log.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "incremental.cli", "serve", "--host", "127.0.0.1", "--port",
                             str(port), *extra], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"incremental serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            http(f"http://127.0.0.1:{port}/ping")
            return proc
        except urllib.error.HTTPError as exc:
            if exc.code == 503:
                return proc
            raise
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    proc.terminate()
    raise AssertionError(f"incremental serve did not answer in 180 s:\n{log.read_text()[-3000:]}")


def test_starts_before_the_first_champion_and_polls_for_it(server, tmp_path: Path) -> None:
    """A fresh stack: serving is up before any model exists, answers 503, and --poll-seconds picks up the first champion."""
    settings, port, env = server
    proc = start(port, env, tmp_path / "serve.log", "--poll-seconds", "1")
    base = f"http://127.0.0.1:{port}"
    try:
        for path, payload in (("/ping", None), ("/model", None), ("/invocations", {"dataframe_records": []})):
            with pytest.raises(urllib.error.HTTPError) as refused:
                http(base + path, payload)
            assert refused.value.code == 503, path
        _, scores = register_tiny(settings, tmp_path, seed=3, hour=0, parent=None)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if http(f"{base}/ping")[0]["version"] == "1":
                    break
            except urllib.error.HTTPError:
                time.sleep(0.5)
        else:
            raise AssertionError(f"the poll never loaded version 1:\n{(tmp_path / 'serve.log').read_text()[-3000:]}")
        np.testing.assert_allclose(predictions(base, ROWS)[0], scores, rtol=0, atol=1e-6)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serves_the_champion_and_follows_a_promotion(server, tmp_path: Path) -> None:
    settings, port, env = server
    first, scores_1 = register_tiny(settings, tmp_path, seed=1, hour=0, parent=None)
    assert first.decision == "approved" and first.champion == "1"

    proc = start(port, env, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        assert http(f"{base}/model")[0]["version"] == "1"
        got, version = predictions(base, ROWS)
        assert version == "1"
        np.testing.assert_allclose(got, scores_1, rtol=0, atol=1e-6)
        # brand and category are optional inputs: a client without them still gets scores
        without, _ = predictions(base, ROWS[["query", "title"]], fmt="split")
        expected = rk.score_frame(*rk.load_dir(tmp_path / "ranker-1"), ROWS[["query", "title"]], max_length=64)
        np.testing.assert_allclose(without, expected, rtol=0, atol=1e-6)
        with pytest.raises(urllib.error.HTTPError) as missing:  # but a title is required
            predictions(base, ROWS[["query"]])
        assert missing.value.code == 400

        # a new champion through the registry: the replica keeps serving 1 until it is reloaded
        second, scores_2 = register_tiny(settings, tmp_path, seed=2, hour=1, parent="1")
        assert second.decision == "approved" and second.champion == "2"
        assert np.abs(scores_2 - scores_1).max() > 1e-4  # the two versions are told apart by their scores
        assert predictions(base, ROWS)[1] == "1"

        # the deployment DAG's step: reload every replica and check what it serves
        [result] = serve.deploy(settings, [base])
        assert result == {"url": base, "version": "2", "previous": "1", "changed": True,
                          "loaded_at": result["loaded_at"]}
        got, version = predictions(base, ROWS)
        assert version == "2"
        np.testing.assert_allclose(got, scores_2, rtol=0, atol=1e-6)
        assert serve.deploy(settings, [base])[0]["changed"] is False  # idempotent

        # a rollback publishes no asset event; the next deploy (or --poll-seconds) follows it too
        registry.rollback(settings, reason="serving test rollback", to="1")
        assert serve.deploy(settings, [base])[0]["version"] == "1"
        np.testing.assert_allclose(predictions(base, ROWS)[0], scores_1, rtol=0, atol=1e-6)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    # a replica that cannot be reached fails the deployment, naming it
    with pytest.raises(serve.ServingError, match=f"127.0.0.1:{port}"):
        serve.deploy(settings, [base], timeout=5)


def test_no_type_hint_warning_on_import() -> None:
    """MLflow 3 checks PythonModel.predict's type hints when the class is defined (at import)."""
    out = subprocess.run([sys.executable, "-W", "always", "-c", "import incremental.model.ranker, incremental.model.update"],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Add type hints" not in out.stderr
