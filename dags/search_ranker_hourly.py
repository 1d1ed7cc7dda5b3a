"""
# search_ranker_hourly

Every hour, for the hour that just closed (`[data_interval_start, data_interval_end)`, UTC):
**extract** its search logs from the warehouse into the lake, **validate** them (Great Expectations +
drift), **monitor** (the champion scores the hour before anything trains on it; the drift rule picks
the mode: normal or adapt), **train** an incremental update (GPU worker: queue `gpu`, pool `gpu`),
**evaluate** it against the champion on the same fresh holdout and the forgetting benchmark, and
**register** it as the new champion or reject it with the reasons; after a drift was declared,
**catch_up** retrains on the recent window through the same gate. The tasks only wire
`incremental.pipeline` (their bodies are in `search_ranker_common`): each hands the next a typed
value (`incremental.handover`) as JSON, and the hour is read once from the run's data interval.

* **Champion events**: `publish_champion` follows `register` directly; the catch-up's own champion
  is announced by `publish_catch_up` (skipped when there was no catch-up or it was rejected), so an
  ordinary promotion never waits for a GPU worker.

* **Drift**: a slice whose champion prequential AUC fell for K hours in a row starts an episode
  (adapt mode, rolling anchor, catch-up retrain, an alert); one anomalous hour alone is held back.
  The run note names the mode and the evidence. Thresholds: `drift:` in `incremental.yaml`.

* **Quarantined hour**: `check_validated` short-circuits; train/evaluate/register are *skipped*, the
  run stays green so later hours keep flowing, and the run's note says why (set by the
  `search_ranker` plugin's listener: a task cannot write its run's note in Airflow 3).
* **Assets**: every extracted hour is an event on `search_logs`; every new champion an event on
  `mlflow://models/search-ranker` (schedule a deployment DAG on it).
* **Manual runs** (Trigger with config): `force_promote` (the reason, at least 10 characters),
  `dry_run` (the catch-up too), and training overrides `learning_rate`, `max_steps`, `replay_fraction`.
* **Catch-up on several GPUs**: `drift.adapt.catch_up_processes` (the reviewed config, 1), or a
  manual run's `catch_up_nproc`, > 1 runs the catch-up as
  `incremental catch-up --nproc N` (torchrun, DDP, as the full-retrain DAG's `nproc`) and reads
  rank 0's decision back; the worker must have N GPUs.
* **Backfills**: *Trigger → Backfill* in the UI or
  `airflow backfill create --dag-id search_ranker_hourly --from-date ... --to-date ... --max-active-runs 1`.
  Keep *max active runs* at 1 (Airflow's backfill default is 10 and the DAG's limit does not apply to
  backfills): each hour warm-starts from the previous hour's champion. Reprocessing an hour reuses
  the model version registered for the same inputs; an hour the champion's lineage already trained
  on (its bootstrap window, an hour it learnt) is skipped, not trained into it twice (the run's note
  says so).
* **Warehouse**: the Airflow connection `search_warehouse` when defined, else `INCREMENTAL_WAREHOUSE_URL`.
* **Alerts**: a failed task logs one `ALERT search-ranker: ...` line (and POSTs it to
  `$INCREMENTAL_ALERT_WEBHOOK` when set).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task
from search_ranker_common import (
    GPU_POOL,
    GPU_QUEUE,
    REGISTRY_POOL,
    SEARCH_LOGS,
    START_DATE,
    TAGS,
    catch_up_hour,
    default_args,
    evaluate_hour,
    extract_hour,
    fail_fast,
    go_on_if_validated,
    hourly_timetable,
    monitor_hour,
    publish_champion,
    register_hour,
    train_hour,
    validate_hour,
)
from search_ranker_params import catch_up_nproc_param, dry_run_param, force_promote_param, training_override_params

from incremental.handover import Evaluated, Monitored, Trained, Validated


@dag(
    dag_id="search_ranker_hourly",
    schedule=hourly_timetable(),
    start_date=START_DATE,
    catchup=False,  # history is filled on purpose, with a backfill (see the docs above)
    max_active_runs=1,  # hours are serial: each one warm-starts from the last champion
    dagrun_timeout=timedelta(hours=3),
    default_args=default_args(),
    params={"force_promote": force_promote_param(), "dry_run": dry_run_param(), **training_override_params(),
            "catch_up_nproc": catch_up_nproc_param()},
    tags=TAGS,
    doc_md=__doc__,
)
def search_ranker_hourly():
    # Each task hands the next a typed value as JSON: `to_dict()` out, `from_dict()` in.
    @task(outlets=[SEARCH_LOGS], execution_timeout=timedelta(minutes=10))
    @fail_fast
    def extract() -> dict:
        """Copy the hour's rows (by `ingested_at`) from the warehouse into the lake partition; emit a `search_logs` event."""
        return extract_hour().to_dict()

    @task(execution_timeout=timedelta(minutes=10))
    @fail_fast
    def validate(extracted: dict) -> dict:
        """Run the GX suite and the drift checks; a failing hour is moved to quarantine (not an error)."""
        return validate_hour().to_dict()

    @task.short_circuit(retries=0)
    def check_validated(validation: dict) -> bool:
        """Go on only with a validated hour; a quarantined one skips train/evaluate/register (the run stays green)."""
        return go_on_if_validated(Validated.from_dict(validation))

    @task(execution_timeout=timedelta(minutes=20))
    @fail_fast
    def monitor(validation: dict) -> dict:
        """Test-then-train: the champion scores the hour first; the drift rule decides the hour's mode."""
        return monitor_hour().to_dict()

    @task(queue=GPU_QUEUE, pool=GPU_POOL, execution_timeout=timedelta(minutes=60))
    @fail_fast
    def train(monitored: dict) -> dict:
        """Warm-start from the champion (adapt mode: from the episode's last candidate) and update it on this hour plus replay."""
        return train_hour(Monitored.from_dict(monitored)).to_dict()

    @task(execution_timeout=timedelta(minutes=20), pool=REGISTRY_POOL)
    @fail_fast
    def evaluate(trained: dict) -> dict:
        """Score candidate and champion on the anchor set (forgetting) and the fresh holdout."""
        return evaluate_hour(Trained.from_dict(trained)).to_dict()

    @task(execution_timeout=timedelta(minutes=10), pool=REGISTRY_POOL)
    @fail_fast
    def register(trained: dict, evaluation: dict) -> dict:
        """Apply the gate: register the version, tag the decision and reasons, move `@champion` if approved."""
        return register_hour(Trained.from_dict(trained), Evaluated.from_dict(evaluation)).to_dict()

    @task(queue=GPU_QUEUE, pool=GPU_POOL, execution_timeout=timedelta(minutes=90))
    @fail_fast
    def catch_up(decision: dict) -> dict:
        """After a drift was declared: retrain the champion on what still holds, through the same gate
        (`catch_up_processes` or `catch_up_nproc` > 1: on that many processes, torchrun)."""
        return catch_up_hour().to_dict()  # publish_catch_up announces its version when it became the champion

    validation = validate(extract())
    monitored = monitor(validation)
    check_validated(validation) >> monitored
    trained = train(monitored)
    decision = register(trained, evaluate(trained))
    # An ordinary promotion is announced at once; the catch-up (a GPU task, only after a declared
    # drift) announces its own champion, so a run never waits for a GPU worker to publish one.
    publish_champion(decision)
    publish_champion.override(task_id="publish_catch_up")(catch_up(decision))


search_ranker_hourly()
