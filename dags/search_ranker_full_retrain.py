"""
# search_ranker_full_retrain

Manual only. Bootstrap (or fully retrain) the search ranker **from the base weights** on a chosen
window of validated hours `[window_start, window_end)` (UTC, whole hours), then put the result
through **the same evaluation and gate** as an hourly update: approved -> new champion, rejected ->
a version tagged with the reasons. Use it for the first champion of a fresh deployment, or after a
long outage or a change of architecture.

Runs on the GPU worker (queue `gpu`, pool `gpu`). A new champion is an event on
`mlflow://models/search-ranker`, like an hourly promotion. The hours in the window must already be
extracted and validated (run `search_ranker_hourly` or a backfill over them first).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, get_current_context, task
from search_ranker_common import (
    GPU_POOL,
    GPU_QUEUE,
    START_DATE,
    TAGS,
    banner,
    default_args,
    dry_run_param,
    fail_fast,
    parse_window,
    publish_champion,
    task_settings,
    window_params,
)

from incremental.hours import iso_hour


@dag(
    dag_id="search_ranker_full_retrain",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=1),
    params={**window_params(), "dry_run": dry_run_param()},
    tags=[*TAGS, "manual"],
    doc_md=__doc__,
)
def search_ranker_full_retrain():
    @task(queue=GPU_QUEUE, pool=GPU_POOL, execution_timeout=timedelta(hours=4))
    @fail_fast
    def full_retrain() -> dict:
        """Train from the base weights on the window, evaluate, and gate it like an hourly candidate."""
        from incremental import retrain

        context = get_current_context()
        start, end = parse_window(context["params"])
        registered = retrain.full_retrain(task_settings(), start, end, airflow_run_id=context["run_id"],
                                          dry_run=bool(context["params"]["dry_run"]))
        banner(f"FULL RETRAIN [{iso_hour(start)}, {iso_hour(end)}): {registered.decision}")
        return registered.to_dict()

    publish_champion(full_retrain())


search_ranker_full_retrain()
