#!/usr/bin/env bash
# The main job on the embedded default (DuckDB warehouse, local lake, SQLite MLflow, SQLite Airflow):
#   1. a fresh demo home, the warehouse seeded by the simulator: 13 hours at 2,000 impressions/hour,
#      the `drift` scenario from 09:00 (traffic and vocabulary that conflict with the morning),
#      and bad rows (null queries) in the 10:00 hour;
#   2. the first champion bootstrapped on 00:00-06:00 from the fast preset `minilm-l2` (MiniLM's
#      first two layers, mean-pooled; `INCREMENTAL_BASE_MODEL=minilm make demo` for the full
#      MiniLM, about 4x slower), which also freezes the anchor set (the forgetting benchmark);
#   3. seven consecutive hourly runs of the real Airflow DAG (`airflow dags test`), 06:00-13:00:
#      one of them quarantined; from 09:00 the champion's own prequential metrics fall, the first
#      drifted hours are held back, then the drift is declared and the pipeline adapts by itself
#      (adapt mode, rolled anchor, catch-up retrain) with no manual step;
#   4. the registry's history, and how to look at it in the Airflow and MLflow UIs.
set -euo pipefail
cd "$(dirname "$0")/.."
export INCREMENTAL_HOME="${INCREMENTAL_HOME:-$PWD/var/demo}"
export INCREMENTAL_BASE_MODEL="${INCREMENTAL_BASE_MODEL:-minilm-l2}"
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

step "bootstrap the first champion from $INCREMENTAL_BASE_MODEL (judged by value thresholds only)"
incremental bootstrap --start ${DAY}T00:00 --end ${DAY}T06:00 --anchor-size 3000
incremental benchmark show | sed -n 1,8p  # sed reads it all: head exits early, and pipefail fails on the broken pipe

step "seven hourly runs of the Airflow DAG search_ranker_hourly (06:00 ... 12:00)"
for hour in 06 07 08 09 10 11 12; do
    end=$(date -u -d "${DAY}T${hour}:00:00Z + 1 hour" +%Y-%m-%dT%H:%M:%S+00:00)
    echo "-- hour ${DAY}T${hour}:00Z (airflow dags test search_ranker_hourly $end)"
    airflow dags test search_ranker_hourly "$end" > "$INCREMENTAL_HOME/dag-run-$hour.log" 2>&1 \
        || { tail -n 40 "$INCREMENTAL_HOME/dag-run-$hour.log"; exit 1; }
    # the run's outcome, as the plugin writes it into the run note (or the quarantine banner)
    grep -hoE "Hour [0-9T:-]+Z: (approved|rejected).*|HOUR [0-9T:-]+Z QUARANTINED.*" "$INCREMENTAL_HOME/dag-run-$hour.log" \
        | sed -E 's/ \[search_ranker_plugin\].*//' | head -n 1 || true
    # a drift declared this hour, and what the catch-up retrain did
    grep -hoE "DRIFT DECLARED at [0-9T:-]+Z.*|CATCH-UP (APPROVED|REJECTED).*" "$INCREMENTAL_HOME/dag-run-$hour.log" \
        | head -n 2 || true
done
incremental partitions --start ${DAY}T00:00 --end ${DAY}T13:00

step "the registry: every candidate, its decision, mode and reasons"
incremental history
step "the drift rule: the champion's prequential record, the episode"
incremental drift

step "done in $((SECONDS - STARTED))s"
cat <<MSG

Look at it:
  make mlflow    MLflow UI  -> http://127.0.0.1:5000  (Models -> search-ranker: versions, tags, review/ charts)
  make airflow   Airflow UI -> http://127.0.0.1:8080  (user admin, password admin; DAG search_ranker_hourly)
Both read $INCREMENTAL_HOME. Logs of the DAG runs: $INCREMENTAL_HOME/dag-run-*.log
MSG
