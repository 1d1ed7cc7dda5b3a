"""Shared by the end-to-end DAG tests: a private Airflow + pipeline home, commands run in it, run states.

Every command runs in a subprocess with `scripts/airflow_env.sh` sourced, as a person would run it,
so the tests exercise the same environment the Make targets use.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Few steps and a permissive gate: these tests are about the DAG's mechanics, not model quality
# (tests/model covers that). A gate that rejects would still be a valid run, but the expected
# sequence approved / quarantined / approved needs approvals.
E2E_CONFIG = """\
training:
  max_steps: 20
  bootstrap_steps: 40
  eval_every: 10
  checkpoint_every: 20
  batch_size: 16
gate:
  min_holdout_auc: 0.0
  max_holdout_logloss: 5.0
  max_anchor_auc_drop: 1.0
  max_worst_category_auc_drop: 1.0
  max_cumulative_auc_drop: 1.0
  max_holdout_auc_deficit: 1.0
  max_holdout_ndcg_deficit: 1.0
  max_holdout_ece: 1.0
  hold_anomalous_hours: false  # the tiny model's hour-to-hour AUC is noise: these tests check wiring
drift:  # ... so no drift episode either (tests/unit/test_drift.py and the long e2e test cover them)
  overall_auc_drop: 1.0
  slice_auc_drop: 1.0
"""

RUNS_PROBE = r"""
import json, sys
from sqlalchemy import select
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
with create_session() as session:
    runs = session.scalars(select(DagRun).where(DagRun.dag_id == sys.argv[1]).order_by(DagRun.data_interval_start)).all()
    out = [{"run_id": r.run_id, "state": str(r.state), "run_type": str(r.run_type), "note": r.note,
            "hour": r.data_interval_start.strftime("%Y-%m-%dT%H:00Z"),
            "start": r.start_date.isoformat() if r.start_date else None,
            "end": r.end_date.isoformat() if r.end_date else None,
            "tasks": {ti.task_id: str(ti.state) for ti in r.get_task_instances(session=session)}} for r in runs]
print("RUNS " + json.dumps(out))
"""


class Env:
    """A fresh INCREMENTAL_HOME (warehouse, lake, MLflow, Airflow) and commands run against it."""

    def __init__(self, home: Path, extra: dict[str, str] | None = None) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        (home / "e2e.yaml").write_text(E2E_CONFIG)
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "INCREMENTAL_"))}
        self.env = {**keep, "INCREMENTAL_HOME": str(home), "INCREMENTAL_BASE_MODEL": "tiny",
                    "INCREMENTAL_CONFIG": str(home / "e2e.yaml"), **(extra or {})}

    def sh(self, command: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        script = f"set -eo pipefail; source {REPO}/scripts/airflow_env.sh; {command}"
        out = subprocess.run(["bash", "-c", script], cwd=REPO, env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"`{command}` exited {out.returncode}\n--- stdout\n{out.stdout[-4000:]}\n"
                                 f"--- stderr\n{out.stderr[-4000:]}")
        return out

    def runs(self, dag_id: str) -> list[dict]:
        out = self.sh(f"python - {dag_id} <<'EOF'\n{RUNS_PROBE}\nEOF", timeout=120)
        line = next(x for x in out.stdout.splitlines() if x.startswith("RUNS "))
        return json.loads(line[5:])

    def history(self) -> list[dict]:
        out = self.sh("python -c 'import json; from incremental.config import load_settings; "
                      "from incremental.registry.history import history; print(\"HISTORY \" + json.dumps(history(load_settings())))'",
                      timeout=120)
        line = next(x for x in out.stdout.splitlines() if x.startswith("HISTORY "))
        return json.loads(line[8:])


def seed_and_bootstrap(env: Env, start: str, bootstrap_end: str, end: str, bad_hour: str | None = None) -> None:
    """Simulate [start, end), damage `bad_hour`, and make a first champion from [start, bootstrap_end)."""
    env.sh("incremental warehouse init")
    env.sh(f"incremental simulate --start {start} --end {end} --rate 400 --seed 7")
    if bad_hour:
        env.sh(f"incremental simulate --start {bad_hour} --end {_next_hour(bad_hour)} --rate 50 --seed 99 "
               "--fault null_query --fault bad_label")
    env.sh(f"incremental extract --start {start} --end {bootstrap_end}")
    env.sh(f"incremental validate --start {start} --end {bootstrap_end}")
    env.sh(f"incremental bootstrap --start {start} --end {bootstrap_end} --anchor-size 500")
    if not any(row["champion"] for row in env.history()):  # the gate may reject a 40-step bootstrap
        env.sh("incremental promote --version 1 --reason 'e2e: the bootstrap is the first champion'")
    env.sh("incremental_airflow_init")


def _next_hour(hour: str) -> str:
    from datetime import datetime, timedelta

    return (datetime.fromisoformat(hour) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")


class Services:
    """Airflow processes started from an Env, each in its own process group; `stop()` ends them all."""

    def __init__(self, env: Env, logs: Path) -> None:
        self.env, self.logs, self.procs = env, logs, []
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, command: str, *, cwd: Path = REPO, **extra_env: str) -> None:
        """`command` with scripts/airflow_env.sh sourced, in `cwd`, with `extra_env` over the Env's."""
        log = (self.logs / f"{name}.log").open("w")
        script = f"source {REPO}/scripts/airflow_env.sh; exec {command}"
        self.procs.append((name, subprocess.Popen(["bash", "-c", script], cwd=cwd, env={**self.env.env, **extra_env},
                                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)))

    def check_alive(self) -> None:
        for name, proc in self.procs:
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{self.tail(name)}"

    def tail(self, name: str, chars: int = 2000) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        import signal
        import time

        for _, proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for _, proc in self.procs:  # whatever is left of each group (task processes, gunicorn workers)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)

    def wait(self, what: str, check, timeout: float, interval: float = 5.0):
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            self.check_alive()
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n"
                             + "\n".join(f"--- {n}\n{self.tail(n)}" for n, _ in self.procs))
