#!/usr/bin/env bash
# Run once by the postgres image on a fresh volume (/docker-entrypoint-initdb.d): one role and one
# database per system, so Airflow's metadata, the search-log warehouse and MLflow's backend store
# never share tables. Passwords come from the compose environment.
set -euo pipefail

create() {  # create <role> <password> <database>
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        --set=role="$1" --set=password="$2" --set=db="$3" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"role";
SQL
}

create airflow   "${AIRFLOW_DB_PASSWORD:?}"   airflow
create warehouse "${WAREHOUSE_DB_PASSWORD:?}" warehouse
create mlflow    "${MLFLOW_DB_PASSWORD:?}"    mlflow
