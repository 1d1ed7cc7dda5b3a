"""Latency: seconds from the close of an hour to its decision, split by stage, per model preset and path.

One hour of `--rate` impressions (default 5,000), after `--history` earlier hours at the same rate
(so replay and the drift checks have history). For every (preset, path), a fresh home is set up
the way scripts/demo.sh does it: simulate, extract + validate the history, bootstrap a first
champion (`--bootstrap-steps`, few: only its existence matters here; promoted by hand if the gate
rejects it), freeze the anchor set (`--anchor-size`, 3,000 as in the demo). Then the hour is
processed with the reviewed incremental.yaml (training: 100 steps of 32, replay, L2-SP) by:

- `run-hour`: `python -m benchmarks.stage_clock run-hour --start H`, a subprocess running the CLI's
  own `main` with a timer on each pipeline stage (process start + imports, extract, validate,
  train, evaluate, register, CLI rest). Wall time is from the spawn to the exit of the process.
- `dag`: `airflow dags test search_ranker_hourly <H+1h>` (a subprocess, scripts/airflow_env.sh
  sourced), the real DAG in one process; task durations are read from the Airflow metadata DB
  (task_instance start/end); Airflow overhead = DAG wall time - the sum of the task durations,
  itemised as start-up (spawn -> first task start), between tasks, and shutdown (last task end
  -> exit). In `dags test` the tasks run in that one process, so the imports are inside the
  first task that needs them (extract: the pipeline, DuckDB, MLflow; validate: Great
  Expectations; train: torch, transformers), not in the overhead.
- `scheduled` and `scheduled-cold`: the hour as a backfill of one run, executed by a real scheduler
  with an api-server and a dag-processor (started as scripts/demo.sh starts them, stopped after),
  every task a process of its own. `scheduled` with the demo's executor
  (`search_ranker_preload.PreloadedLocalExecutor`: the pipeline's modules imported before it forks
  its workers), `scheduled-cold` with Airflow's plain LocalExecutor (each task imports them
  again). Wall time is the run's start to its end in the Airflow DB; the overhead is itemised
  as for `dag`, from the run's start instead of the process's spawn.

In both paths the champion's anchor scores are not cached yet (the first hour after the
bootstrap), so evaluate scores champion and candidate on the anchor set; later hours reuse the
champion's cached anchor scores.

    .venv/bin/python benchmarks/latency_bench.py [--presets minilm-l2,minilm]
        [--paths run-hour,dag,scheduled,scheduled-cold]
        [--rate 5000] [--history 3] [--merge]

writes benchmarks/results/latency.json (with a Markdown table) and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import RESULTS, record  # noqa: E402

sys.path.insert(0, str(REPO))
from incremental.hours import iso_hour  # noqa: E402

DAY = datetime(2026, 1, 1, 0, tzinfo=UTC)
DAG_ID = "search_ranker_hourly"
TASK_PROBE = r"""
import json, sys
from sqlalchemy import select
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
with create_session() as session:
    run = session.scalars(select(DagRun).where(DagRun.dag_id == sys.argv[1])).one()
    tasks = {ti.task_id: {"state": str(ti.state), "start": ti.start_date.timestamp() if ti.start_date else None,
                          "end": ti.end_date.timestamp() if ti.end_date else None, "duration": ti.duration}
             for ti in run.get_task_instances(session=session)}
    print("TASKS " + json.dumps({"state": str(run.state), "note": run.note, "tasks": tasks,
                                 "start": run.start_date.timestamp() if run.start_date else None,
                                 "end": run.end_date.timestamp() if run.end_date else None}))
"""
EXECUTORS = {"scheduled": "search_ranker_preload.PreloadedLocalExecutor", "scheduled-cold": "LocalExecutor"}
RUN_HOUR_STAGES = ("process_start_and_imports", "extract", "validate", "train", "evaluate", "register", "cli_other")
DAG_TASKS = ("extract", "validate", "check_validated", "train", "evaluate", "register", "publish_champion")


class Home:
    """A fresh INCREMENTAL_HOME for one (preset, path); commands run as a person would run them."""

    def __init__(self, root: Path, preset: str, bootstrap_steps: int) -> None:
        self.home = root
        root.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load((REPO / "incremental.yaml").read_text())
        config["training"]["bootstrap_steps"] = bootstrap_steps  # set-up only; the measured hour uses max_steps
        (root / "bench.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "INCREMENTAL_"))}
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**keep, "PATH": f"{bin_dir}:{keep.get('PATH', '')}", "PYTHONPATH": str(REPO),
                    "INCREMENTAL_HOME": str(root), "INCREMENTAL_BASE_MODEL": preset,
                    "INCREMENTAL_CONFIG": str(root / "bench.yaml"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "TOKENIZERS_PARALLELISM": "false", "GX_ANALYTICS_ENABLED": "False",
                    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}

    def sh(self, command: str, timeout: float = 1800) -> tuple[subprocess.CompletedProcess, float, float]:
        """Run `command` in bash with scripts/airflow_env.sh sourced; (result, spawn time, wall seconds)."""
        script = f"set -eo pipefail; source {REPO}/scripts/airflow_env.sh; {command}"
        spawned = time.time()
        out = subprocess.run(["bash", "-c", script], cwd=REPO, env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        wall = time.time() - spawned
        if out.returncode != 0:
            raise RuntimeError(f"`{command}` exited {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        return out, spawned, wall


def prepare(home: Home, hour: datetime, history: int, rate: int, anchor_size: int, airflow: bool) -> dict:
    first = hour - timedelta(hours=history)
    started = time.perf_counter()
    home.sh("incremental warehouse init")
    home.sh(f"incremental simulate --start {iso_hour(first)} --end {iso_hour(hour + timedelta(hours=1))} --rate {rate} --seed 7")
    home.sh(f"incremental extract --start {iso_hour(first)} --end {iso_hour(hour)}")
    home.sh(f"incremental validate --start {iso_hour(first)} --end {iso_hour(hour)}")
    boot, _, _ = home.sh(f"incremental bootstrap --start {iso_hour(first)} --end {iso_hour(hour)} --anchor-size {anchor_size}")
    promoted = False
    if "APPROVED" not in boot.stdout:  # a short bootstrap may be rejected: it only has to exist
        home.sh("incremental promote --version 1 --reason 'latency bench: the bootstrap is the first champion'")
        promoted = True
    if airflow:
        home.sh("incremental_airflow_init")
    return {"bootstrap": boot.stdout.strip().splitlines()[0], "promoted_by_hand": promoted,
            "setup_seconds": round(time.perf_counter() - started, 1)}


def measure_run_hour(home: Home, hour: datetime) -> dict:
    command = [sys.executable, "-m", "benchmarks.stage_clock", "run-hour", "--start", iso_hour(hour)]
    spawned = time.time()
    out = subprocess.run(command, cwd=REPO, env=home.env, capture_output=True, text=True, timeout=3600)
    wall = time.time() - spawned
    if out.returncode != 0:
        raise RuntimeError(f"run-hour exited {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    stages = json.loads(next(x for x in out.stderr.splitlines() if x.startswith("STAGES "))[7:])
    total = stages.pop("total")
    stages["exit"] = round(wall - total, 3)  # after the last line: interpreter shutdown
    return {"wall_seconds": round(wall, 2), "decision": out.stdout.strip().splitlines()[0],
            "stages": stages, "command": "python -m benchmarks.stage_clock " + shlex.join(command[3:])}


def _run(home: Home) -> dict:
    probe, _, _ = home.sh(f"python - {DAG_ID} <<'EOF'\n{TASK_PROBE}\nEOF")
    return dict(json.loads(next(x for x in probe.stdout.splitlines() if x.startswith("TASKS "))[6:]))


def _timings(run: dict, started: float, wall: float) -> dict:
    """Task durations and the Airflow overhead (wall - their sum) of a finished run that began at `started`."""
    tasks = run["tasks"]
    durations = {t: round(tasks[t]["duration"] or 0.0, 3) for t in DAG_TASKS if t in tasks}
    durations.update({t: round(v["duration"] or 0.0, 3) for t, v in tasks.items() if t not in durations})
    starts = [v["start"] for v in tasks.values() if v["start"]]
    ends = [v["end"] for v in tasks.values() if v["end"]]
    task_sum = sum(durations.values())
    overhead = wall - task_sum
    startup, shutdown = min(starts) - started, started + wall - max(ends)
    return {"wall_seconds": round(wall, 2), "state": run["state"], "note": run["note"],
            "task_states": {t: v["state"] for t, v in tasks.items()}, "tasks": durations,
            "tasks_sum_seconds": round(task_sum, 2),
            "airflow_overhead": {"total": round(overhead, 2), "startup_to_first_task": round(startup, 2),
                                 "between_tasks": round(overhead - startup - shutdown, 2),
                                 "last_task_to_exit": round(shutdown, 2)}}


def measure_scheduled(home: Home, hour: datetime, executor: str) -> dict:
    """The hour as a one-run backfill through api-server, scheduler and dag-processor (see the module doc)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home.env.update({"AIRFLOW__CORE__EXECUTOR": executor, "AIRFLOW__CORE__PARALLELISM": "2",
                     "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__WORKERS": "1",
                     "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                     "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600"})
    home.sh(f"incremental_airflow_backfill {DAG_ID} {hour.isoformat()} {hour.isoformat()}")
    services = []
    for name, command in (("api-server", f"airflow api-server --port {port}"), ("scheduler", "airflow scheduler"),
                          ("dag-processor", "airflow dag-processor")):
        log = (home.home / f"{name}.log").open("w")
        services.append(subprocess.Popen(["bash", "-c", f"source {REPO}/scripts/airflow_env.sh; exec {command}"],
                                         cwd=REPO, env=home.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True))
    try:
        deadline = time.monotonic() + 1800
        while (run := _run(home))["state"] not in ("success", "failed"):
            if time.monotonic() > deadline or any(p.poll() is not None for p in services):
                raise RuntimeError(f"the scheduled run did not finish: {run['state']}; logs in {home.home}")
            time.sleep(5)
    finally:
        for proc in services:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in services:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    measured = _timings(run, run["start"], run["end"] - run["start"])
    return {**measured, "executor": executor,
            "command": f"incremental_airflow_backfill {DAG_ID} {hour.isoformat()} {hour.isoformat()}, then "
                       "airflow api-server, scheduler and dag-processor"}


def measure_dag(home: Home, hour: datetime) -> dict:
    end = hour + timedelta(hours=1)
    command = f"airflow dags test {DAG_ID} {end.isoformat()}"
    out, spawned, wall = home.sh(command, timeout=3600)
    (home.home / "dag-run.log").write_text(out.stdout + out.stderr)
    return {**_timings(_run(home), spawned, wall), "command": command}


def table(results: dict) -> str:
    """Markdown: one column per (preset, path), one row per stage."""
    columns = [(p, path) for p, paths in results.items() for path in paths]
    rows = [("process start + imports", "run-hour", "process_start_and_imports")] + [
        (stage, "both", stage) for stage in ("extract", "validate", "train", "evaluate", "register")] + [
        ("monitor (task)", "dag", "monitor"), ("catch_up (task)", "dag", "catch_up"),
        ("check_validated (task)", "dag", "check_validated"), ("publish_champion (task)", "dag", "publish_champion"),
        ("CLI rest (settings, printing)", "run-hour", "cli_other"), ("interpreter exit", "run-hour", "exit"),
        ("Airflow overhead: start-up to first task", "dag", "startup_to_first_task"),
        ("Airflow overhead: between tasks", "dag", "between_tasks"),
        ("Airflow overhead: last task to exit", "dag", "last_task_to_exit"),
        ("Airflow overhead (DAG wall - task times)", "dag", "total")]
    lines = ["| stage (s) | " + " | ".join(f"{p} {path}" for p, path in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for label, where, key in rows:
        cells = []
        for preset, path in columns:
            r = results[preset][path]
            if path == "run-hour":
                value = r["stages"].get(key) if where in ("run-hour", "both") else None
            else:
                value = r["tasks"].get(key) if where in ("dag", "both") and key in r["tasks"] else (
                    r["airflow_overhead"].get(key) if where == "dag" else None)
            cells.append("" if value is None else f"{value:.1f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| **close of hour -> decision (wall)** | "
                 + " | ".join(f"**{results[p][path]['wall_seconds']:.1f}**" for p, path in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="minilm-l2,minilm")
    parser.add_argument("--paths", default="run-hour,dag")
    parser.add_argument("--rate", type=int, default=5000, help="impressions in the measured hour (and each history hour)")
    parser.add_argument("--history", type=int, default=3, help="validated hours before it (bootstrap window)")
    parser.add_argument("--bootstrap-steps", type=int, default=30)
    parser.add_argument("--anchor-size", type=int, default=3000)
    parser.add_argument("--root", type=Path, help="keep the homes here instead of a temporary folder")
    parser.add_argument("--merge", action="store_true",
                        help="add to the (preset, path) results already in results/latency.json instead of replacing them")
    args = parser.parse_args()
    hour = DAY + timedelta(hours=args.history)
    presets = [p for p in args.presets.split(",") if p]
    paths = [p for p in args.paths.split(",") if p]
    unknown = [p for p in paths if p not in ("run-hour", "dag", *EXECUTORS)]
    if unknown:
        parser.error(f"unknown path(s) {', '.join(unknown)}; choose from run-hour, dag, {', '.join(EXECUTORS)}")

    results: dict[str, dict] = {}
    partial = RESULTS / f"latency.partial.{os.getpid()}.json"
    with tempfile.TemporaryDirectory(prefix="latency-bench-") as tmp:
        root = args.root or Path(tmp)
        for preset in presets:
            for path in paths:
                home = Home(root / f"{preset}-{path}", preset, args.bootstrap_steps)
                setup = prepare(home, hour, args.history, args.rate, args.anchor_size, airflow=path != "run-hour")
                print(f"{preset} {path}: home ready ({setup})", flush=True)
                if path == "run-hour":
                    measured = measure_run_hour(home, hour)
                elif path == "dag":
                    measured = measure_dag(home, hour)
                else:
                    measured = measure_scheduled(home, hour, EXECUTORS[path])
                measured["setup"] = setup
                measured["load_average_1_5_15m_at_end"] = [round(x, 2) for x in os.getloadavg()]
                results.setdefault(preset, {})[path] = measured
                print(f"{preset} {path}: {measured['wall_seconds']:.1f}s "
                      f"{json.dumps(measured.get('stages') or measured['tasks'])}"
                      + (f" overhead {json.dumps(measured['airflow_overhead'])}" if path != "run-hour" else ""),
                      flush=True)
                # write what there is so far: a later failure keeps the finished measurements
                partial.write_text(json.dumps(results, indent=2) + "\n")

    previous = RESULTS / "latency.json"
    if args.merge and previous.is_file():  # read now, not at the start: another run may have written it meanwhile
        merged = json.loads(previous.read_text())["results"]
        for preset, paths in results.items():
            merged.setdefault(preset, {}).update(paths)
        results = merged
    markdown = table(results)
    print(markdown)
    record("latency", {
        "hour": iso_hour(hour), "rate": args.rate, "history_hours": args.history,
        "anchor_size": args.anchor_size, "config": "incremental.yaml (bootstrap_steps set to "
        f"{args.bootstrap_steps} for the set-up only)", "torch_threads": "torch default", "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "results": results, "table_markdown": markdown,
        "note": "shared 2-core machine: absolute figures vary up to 2.5x between runs",
    }, packages=("torch", "transformers", "mlflow", "apache-airflow", "great_expectations"))
    partial.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
