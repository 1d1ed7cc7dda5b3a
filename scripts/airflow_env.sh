# Airflow on the embedded default: source this file (bash), then run `airflow ...`.
#
#   source scripts/airflow_env.sh          # environment only (no work done)
#   incremental_airflow_init               # once: migrate the metadata DB, create the `gpu` and `search_ranker_registry` pools, the UI user
#   airflow standalone                     # UI on http://127.0.0.1:${AIRFLOW__API__PORT} (user admin / admin)
#   airflow dags test search_ranker_hourly 2026-01-01T06:00:00+00:00   # covers [05:00, 06:00)
#   incremental_airflow_backfill DAG_ID FROM TO   # before the scheduler starts: parse, unpause, create the runs
#
# Everything is overridable: set a variable before sourcing and it is kept. Defaults:
#   INCREMENTAL_HOME                      ./var                 (the lake, the DuckDB warehouse, MLflow's SQLite store)
#   AIRFLOW_HOME                          $INCREMENTAL_HOME/airflow
#   AIRFLOW__DATABASE__SQL_ALCHEMY_CONN   sqlite:///$AIRFLOW_HOME/airflow.db   (PostgreSQL in production)
#   AIRFLOW__API__PORT                    8080
#   AIRFLOW__CORE__EXECUTOR               search_ranker_preload.PreloadedLocalExecutor (the LocalExecutor, with the
#                                         pipeline's modules imported before it forks: plugins/search_ranker_preload.py)
#   INCREMENTAL_AIRFLOW_PASSWORD          admin                 (simple auth manager, user `admin`)
#   INCREMENTAL_WAREHOUSE_CONN            unset; a connection URI or JSON -> Airflow connection `search_warehouse`,
#                                         which the DAGs use instead of INCREMENTAL_WAREHOUSE_URL
#   INCREMENTAL_GPU_SLOTS                 1                     (slots of the `gpu` pool: one per GPU)
# shellcheck shell=bash

_incremental_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -x "$_incremental_repo/.venv/bin/airflow" && ":$PATH:" != *":$_incremental_repo/.venv/bin:"* ]]; then
    export PATH="$_incremental_repo/.venv/bin:$PATH"  # `airflow standalone` starts its parts by name
fi

export INCREMENTAL_HOME="${INCREMENTAL_HOME:-$_incremental_repo/var}"
mkdir -p "$INCREMENTAL_HOME"
export INCREMENTAL_HOME="$(cd "$INCREMENTAL_HOME" && pwd)"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$INCREMENTAL_HOME/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$_incremental_repo/dags}"
export AIRFLOW__CORE__PLUGINS_FOLDER="${AIRFLOW__CORE__PLUGINS_FOLDER:-$_incremental_repo/plugins}"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db}"
export AIRFLOW__API__PORT="${AIRFLOW__API__PORT:-8080}"
export AIRFLOW__CORE__EXECUTOR="${AIRFLOW__CORE__EXECUTOR:-search_ranker_preload.PreloadedLocalExecutor}"
export AIRFLOW__API__BASE_URL="${AIRFLOW__API__BASE_URL:-http://127.0.0.1:$AIRFLOW__API__PORT}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-$AIRFLOW__API__BASE_URL/execution/}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-$AIRFLOW_HOME/simple_auth_manager_passwords.json}"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-30}"
# a task's calls to the Task Execution API: Airflow waits 5 s by default; on a loaded 2-core machine
# (`make demo` beside a benchmark, load 8) the one api-server worker answered later, and the task
# was killed before it started (SIGKILL, "httpx.ReadTimeout", then a retry)
export AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT="${AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT:-60}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-True}"
export INCREMENTAL_MLFLOW_UI_URL="${INCREMENTAL_MLFLOW_UI_URL:-http://127.0.0.1:5000}"
# The pipeline runs offline: nothing is downloaded from a model hub at run time.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false GX_ANALYTICS_ENABLED=False
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
if [[ -n "${INCREMENTAL_WAREHOUSE_CONN:-}" ]]; then
    export AIRFLOW_CONN_SEARCH_WAREHOUSE="$INCREMENTAL_WAREHOUSE_CONN"
fi
mkdir -p "$AIRFLOW_HOME"

# Idempotent set-up of the metadata DB: schema, the `gpu` pool (the train tasks queue on it), the UI user.
incremental_airflow_init() {
    airflow db migrate >/dev/null || return
    airflow pools set gpu "${INCREMENTAL_GPU_SLOTS:-1}" "GPU slots: one training task per GPU" >/dev/null || return
    airflow pools set search_ranker_registry 1 "registry and anchor writers: one at a time across DAGs" >/dev/null || return
    local passwords="$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
    if [[ ! -s "$passwords" ]]; then
        printf '{"admin": "%s"}\n' "${INCREMENTAL_AIRFLOW_PASSWORD:-admin}" > "$passwords"
    fi
    echo "airflow ready: AIRFLOW_HOME=$AIRFLOW_HOME, metadata ${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN%%:*}, pools gpu and search_ranker_registry, user admin"
}

# The DAG parsed into the metadata DB, unpaused, and a backfill of [FROM, TO] (logical dates) created,
# oldest first, one run at a time. Call it BEFORE the scheduler, dag-processor and api-server start:
# on the embedded SQLite metadata, `airflow backfill create` reads and then inserts in one deferred
# transaction, and a commit by another process in between fails the insert at once with "database
# is locked" (SQLite's snapshot conflict; no busy timeout waits for it). It failed one `make demo` in
# two when the services were already up; with nobody else writing it cannot.
incremental_airflow_backfill() {
    local dag_id=$1 from=$2 to=$3 log="$AIRFLOW_HOME/backfill-create.log"
    airflow dags reserialize > "$log" 2>&1 || { tail -n 40 "$log" >&2; return 1; }
    # reserialize exits 0 even when a DAG file fails to import: ask, and stop on any
    local errors
    errors=$(airflow dags list-import-errors -o json 2>/dev/null | tail -n 1)
    if [[ "$errors" != "[]" ]]; then
        echo "the DAG files do not import: $errors" >&2
        return 1
    fi
    airflow dags unpause "$dag_id" >> "$log" 2>&1 || { tail -n 40 "$log" >&2; return 1; }
    airflow backfill create --dag-id "$dag_id" --from-date "$from" --to-date "$to" --max-active-runs 1 >> "$log" 2>&1 \
        || { tail -n 40 "$log" >&2; return 1; }
    echo "backfill of $dag_id created: $from ... $to, oldest first, one run at a time"
}
