#!/usr/bin/env bash
# The main job on the embedded default (DuckDB warehouse, local lake, SQLite MLflow, SQLite Airflow):
#   1. a fresh demo home, the warehouse seeded by the simulator: 13 hours at 2,000 impressions/hour,
#      the `drift` scenario from 09:00 (traffic and vocabulary that conflict with the morning),
#      and bad rows (null queries) in the 10:00 hour;
#   2. the first champion bootstrapped on 00:00-06:00 from the fast preset `minilm-l2` (MiniLM's
#      first two layers, mean-pooled; `INCREMENTAL_BASE_MODEL=minilm make demo` for the full
#      MiniLM, about 4x slower), which also freezes the anchor set (the forgetting benchmark);
#   3. seven consecutive hourly runs of the real Airflow DAG, 06:00-13:00, as a user's would run:
#      a backfill (`airflow backfill create ... --max-active-runs 1`, oldest hour first, one at a
#      time, created before the services start) executed by a real scheduler (LocalExecutor), with
#      the dag-processor and the api-server (the Task Execution API) it needs, all started here in
#      the background and stopped on exit
#      (logs in $INCREMENTAL_HOME/services/); scripts/airflow_watch.py follows the backfill over the
#      REST API and prints each hour's outcome (the run note) as its run ends. One hour is
#      quarantined; from 09:00 the champion's own prequential metrics fall, the first drifted hours
#      are held back, then the drift is declared and the pipeline adapts by itself (adapt mode,
#      rolled anchor, catch-up retrain) with no manual step;
#   4. the registry's history, the drift record, the champions against the simulator's hidden
#      relevance (scripts/demo_truth.py: the ceiling and a BM25 floor beside them), and how to
#      look at it in the Airflow and MLflow UIs. The runs carry
#      the times the scheduler ran them, so the grid shows durations of minutes (`airflow dags test`
#      gave its runs their January logical date as start and today as end: '331 days').
set -euo pipefail
cd "$(dirname "$0")/.."
export INCREMENTAL_HOME="${INCREMENTAL_HOME:-$PWD/var/demo}"
export INCREMENTAL_BASE_MODEL="${INCREMENTAL_BASE_MODEL:-minilm-l2}"
# the demo's api-server listens on a free port unless one is given (a `make airflow` may hold 8080)
export AIRFLOW__API__PORT="${AIRFLOW__API__PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
DAY=2026-01-01
STARTED=$SECONDS
LAST=$SECONDS
# each step says how long the one before it took, so the time can be seen going somewhere
step() { printf '\n== [%ds, previous step %ds] %s\n' $((SECONDS - STARTED)) $((SECONDS - LAST)) "$*"; LAST=$SECONDS; }

step "fresh demo home: $INCREMENTAL_HOME"
rm -rf "$INCREMENTAL_HOME"
# shellcheck source=scripts/airflow_env.sh
source scripts/airflow_env.sh
incremental_airflow_init

step "warehouse: 13 simulated hours (drift from 09:00) and bad rows at 10:00"
incremental warehouse init
incremental simulate --start ${DAY}T00:00 --end ${DAY}T13:00 --rate 2000 --seed 7 \
    --scenario drift --drift-at ${DAY}T09:00 | grep -E '"rows"|"drift_at"'
incremental simulate --start ${DAY}T10:00 --end ${DAY}T11:00 --rate 40 --seed 99 --fault null_query --fault duplicate_event_id | grep '"rows"'

step "history for the first champion: extract and validate 00:00-06:00"
incremental extract --start ${DAY}T00:00 --end ${DAY}T06:00
incremental validate --start ${DAY}T00:00 --end ${DAY}T06:00 | grep -v '^  note'

step "bootstrap the first champion from $INCREMENTAL_BASE_MODEL (no champion yet: judged by value floors and against BM25 on its own hours)"
incremental bootstrap --start ${DAY}T00:00 --end ${DAY}T06:00 --anchor-size 3000
# the gate may reject it (worse than BM25 on its own hours): then a person's override, recorded, so
# that the demo can go on to show the hourly flow; a real site would improve the first model first
if ! python -c 'import sys; from incremental.registry import tracking; from incremental.config import load_settings
sys.exit(0 if tracking.champion(load_settings()) else 1)'; then
    echo "no champion: the first model was rejected (the reasons above); promoted by hand to show the hourly flow"
    incremental promote --version 1 --reason "demo: the first model was rejected by the gate; promoted to show the hourly flow"
fi
incremental benchmark show | sed -n 1,8p  # sed reads it all: head exits early, and pipefail fails on the broken pipe

step "Airflow: a backfill of seven hours (06:00 ... 12:00), created before the scheduler starts"
# As tests/e2e/test_backfill.py does: the LocalExecutor, with the pipeline's modules imported once
# before it forks its workers (plugins/search_ranker_preload.py: a task no longer imports torch,
# MLflow and GX again), whose tasks reach the metadata through the api-server's Task Execution API;
# no scheduled runs (only the backfill makes runs, not the current hour); the DAG files parsed
# once, not every 30 s while the hours train.
export AIRFLOW__CORE__EXECUTOR=search_ranker_preload.PreloadedLocalExecutor
export AIRFLOW__CORE__PARALLELISM=2 AIRFLOW__API__WORKERS=1
export AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE=False AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES=1
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=600 AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL=600
SERVICES=()        # NAME=PID:LOG, for scripts/airflow_watch.py, which stops when one of them exits
SERVICE_PIDS=()
PAUSE_ON_EXIT=0
mkdir -p "$INCREMENTAL_HOME/services"
# NAME COMMAND...: in the background, in its own session (its process group holds its workers and tasks)
start_service() {
    local name=$1 log="$INCREMENTAL_HOME/services/$1.log"
    shift
    setsid "$@" > "$log" 2>&1 < /dev/null &
    SERVICE_PIDS+=("$!")
    SERVICES+=(--service "$name=$!:$log")
}
# TERM to each service's process group, up to 30 s to end (a running task is told to stop), then KILL
stop_services() {
    ((${#SERVICE_PIDS[@]})) || return 0
    local pid left
    echo "stopping the Airflow services (api-server, scheduler, dag-processor)"
    for pid in "${SERVICE_PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for _ in $(seq 30); do
        left=0
        for pid in "${SERVICE_PIDS[@]}"; do kill -0 -- "-$pid" 2>/dev/null && left=1; done
        ((left)) || break
        sleep 1
    done
    for pid in "${SERVICE_PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    SERVICE_PIDS=()
}
# on exit, also on Ctrl-C or a failure: the services stopped, and the DAG paused again as before the
# demo, so that no later scheduler (`make airflow`) starts the current hour or the rest of the backfill
cleanup() {
    stop_services
    if ((PAUSE_ON_EXIT)); then
        PAUSE_ON_EXIT=0
        airflow dags pause search_ranker_hourly > /dev/null 2>&1 || echo "could not pause search_ranker_hourly"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
PAUSE_ON_EXIT=1
# parse, unpause and create the runs while no other process writes the SQLite metadata (see the
# function in scripts/airflow_env.sh: with the services up, the insert met "database is locked")
incremental_airflow_backfill search_ranker_hourly ${DAY}T06:00:00+00:00 ${DAY}T12:00:00+00:00

step "Airflow: api-server, scheduler and dag-processor in the background (logs in $INCREMENTAL_HOME/services/) run the backfill"
start_service api-server airflow api-server --port "$AIRFLOW__API__PORT"
start_service scheduler airflow scheduler
start_service dag-processor airflow dag-processor
python scripts/airflow_watch.py wait-dag search_ranker_hourly "${SERVICES[@]}"
# one block per hour as its run ends: its duration and note (approved / rejected / quarantined), a
# drift declared, the catch-up retrain; a line a minute while it runs; a failed task's log tail
python scripts/airflow_watch.py backfill search_ranker_hourly "${SERVICES[@]}"
cleanup
incremental partitions --start ${DAY}T00:00 --end ${DAY}T13:00

step "the registry: every candidate, its decision, mode and reasons"
incremental history
step "the drift rule: the champion's prequential record, the episode"
incremental drift

step "the champions against the truth the simulator hides (the ceiling ranks by it; the floor is BM25)"
python scripts/demo_truth.py --start ${DAY}T00:00 --end ${DAY}T13:00 --rate 2000 --seed 7 \
    --drift-at ${DAY}T09:00 --bootstrap-end ${DAY}T06:00

step "done in $((SECONDS - STARTED))s"
cat <<MSG

Look at it:
  make mlflow    MLflow UI  -> http://127.0.0.1:5000  (Models -> search-ranker: versions, tags, review/ charts)
  make airflow   Airflow UI -> http://127.0.0.1:8080  (user admin, password admin; DAG search_ranker_hourly)
Both read $INCREMENTAL_HOME. The tasks' logs: $AIRFLOW_HOME/logs/dag_id=search_ranker_hourly/
(or the grid); the api-server's, scheduler's and dag-processor's: $INCREMENTAL_HOME/services/
MSG
