"""The deployment DAG for real: `airflow dags test search_ranker_deploy` reloads a running
`incremental serve` after a promotion, and the replica then answers with the new version's scores."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from airflow_helpers import Env, Services

# Registers a tiny ranker (random weights from SEED) as train.py logs it, approved, through the
# project's registry code; prints its scores on ROWS.
REGISTER = r"""
import json, sys, tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
import mlflow, pandas as pd
from incremental.model import ranker as rk
from incremental.registry import champion as registry
from incremental.registry import tracking
from incremental.config import load_settings
seed, hour, parent = int(sys.argv[1]), int(sys.argv[2]), (sys.argv[3] if sys.argv[3] != "-" else None)
settings = load_settings()
model, tokenizer = rk.load_base("tiny", seed=seed)
model_dir = rk.save_dir(model, tokenizer, Path(tempfile.mkdtemp()) / "ranker")
tracking.get_or_create_experiment(settings)
mlflow.set_experiment(tracking.UPDATES_EXPERIMENT)
with mlflow.start_run() as run:
    mlflow.pyfunc.log_model(name="model", python_model=rk.RankerPyfunc(max_length=64),
                            artifacts={"model_dir": str(model_dir)}, code_paths=[str(Path(rk.__file__).parent)],
                            pip_requirements=rk.pip_requirements(), signature=rk.signature())
start = datetime(2026, 5, 1, tzinfo=UTC) + timedelta(hours=hour)
decision = registry.register_candidate(settings, model_uri=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id,
    interval_start=start, interval_end=start + timedelta(hours=1), parent_version=parent, data_hash=f"deploy-{seed}",
    approved=True, reasons=["e2e"], metrics={"holdout_auc": 0.7})
rows = pd.DataFrame({"query": ["red shoes", "desk lamp"], "title": ["acme red shoes", "nova desk lamp"]})
print("REGISTERED " + json.dumps({"version": decision.version, "champion": decision.champion,
                                 "scores": rk.score_frame(model, tokenizer, rows, max_length=64).tolist()}))
"""
ROWS = [{"query": "red shoes", "title": "acme red shoes"}, {"query": "desk lamp", "title": "nova desk lamp"}]


def register(env: Env, seed: int, hour: int, parent: str | None) -> dict:
    out = env.sh(f"python - {seed} {hour} {parent or '-'} <<'EOF'\n{REGISTER}\nEOF", timeout=300)
    return json.loads(next(x for x in out.stdout.splitlines() if x.startswith("REGISTERED "))[11:])


def get(url: str, payload: dict | None = None) -> tuple[dict, dict]:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read()), dict(response.headers)


@pytest.mark.slow
def test_deploy_dag_reloads_the_served_model(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = Env(tmp_path / "home", extra={"INCREMENTAL_SERVE_URLS": base})
    first = register(env, seed=1, hour=0, parent=None)
    assert first["champion"] == "1"

    services = Services(env, tmp_path / "logs")
    services.start("serve", f"incremental serve --host 127.0.0.1 --port {port}")
    try:
        def up() -> bool:
            try:
                return get(f"{base}/ping")[0]["version"] == "1"
            except (urllib.error.URLError, ConnectionError):
                return False

        services.wait("incremental serve", up, timeout=180, interval=1)
        body, headers = get(f"{base}/invocations", {"dataframe_records": ROWS})
        assert headers["x-model-version"] == "1"
        assert body["predictions"] == pytest.approx(first["scores"], abs=1e-6)

        second = register(env, seed=2, hour=1, parent="1")
        assert second["champion"] == "2"
        assert max(abs(a - b) for a, b in zip(first["scores"], second["scores"], strict=True)) > 1e-4
        assert get(f"{base}/model")[0]["version"] == "1"  # nothing reloads it by itself (no --poll-seconds)

        env.sh("incremental_airflow_init", timeout=600)
        started = time.monotonic()
        out = env.sh("airflow dags test search_ranker_deploy", timeout=600)
        assert "SERVING version 2 on 1 replica(s)" in out.stdout + out.stderr, (out.stdout[-3000:], out.stderr[-3000:])
        [run] = env.runs("search_ranker_deploy")
        assert run["state"] == "success" and run["tasks"] == {"reload_serving": "success"}, run
        print(f"airflow dags test search_ranker_deploy: {time.monotonic() - started:.1f}s")

        body, headers = get(f"{base}/invocations", {"dataframe_records": ROWS})
        assert headers["x-model-version"] == "2"
        assert body["predictions"] == pytest.approx(second["scores"], abs=1e-6)
    finally:
        services.stop()
