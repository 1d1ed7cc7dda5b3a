#!/usr/bin/env bash
# The main job on the embedded default: a fresh demo home (DuckDB warehouse, local lake, SQLite MLflow),
# a day of simulated traffic (drifting in its second half), one hour with bad rows, then
# extract + validate every hour and list the partitions.
set -euo pipefail
cd "$(dirname "$0")/.."
export INCREMENTAL_HOME="${INCREMENTAL_HOME:-$PWD/var/demo}"
rm -rf "$INCREMENTAL_HOME"
START=2026-01-01T00:00
END=2026-01-02T00:00
BAD=2026-01-01T20:00

echo "== demo home: $INCREMENTAL_HOME"
incremental warehouse init
echo "== simulate 24 hours at 5,000 impressions/hour (drift scenario), bad rows in $BAD"
incremental simulate --start $START --end $END --rate 5000 --seed 7 --scenario drift | tail -n 3
incremental simulate --start $BAD --end 2026-01-01T21:00 --rate 50 --seed 99 --fault null_query --fault bad_label | tail -n 3
echo "== extract"
incremental extract --start $START --end $END
echo "== validate (the bad hour is quarantined: exit code 1 is expected here)"
incremental validate --start $START --end $END || test $? -eq 1
echo "== partitions"
incremental partitions --start $START --end $END
