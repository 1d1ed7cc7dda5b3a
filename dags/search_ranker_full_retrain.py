"""
# search_ranker_full_retrain

Manual only. Bootstrap (or fully retrain) the search ranker **from the base weights** on a chosen
window of validated hours `[window_start, window_end)` (UTC, whole hours), then put the result
through **the same evaluation and gate** as an hourly update: approved -> new champion, rejected ->
a version tagged with the reasons. Use it for the first champion of a fresh deployment, or after a
long outage or a change of architecture.

Runs on the GPU worker (queue `gpu`, pool `gpu`). `nproc` > 1 trains on that many processes of the
worker (one GPU each): the task runs `incremental bootstrap --nproc N`, which starts torchrun (DDP, each
process a disjoint shard of the window's sessions; rank 0 alone logs, evaluates, gates and
registers) and reads back rank 0's decision. The worker must have N GPUs; the task still takes one
slot of the `gpu` pool (see docs/scaling.md section 3). A new champion is an event on
`mlflow://models/search-ranker`, like an hourly promotion. The hours in the window must already be
extracted and validated (run `search_ranker_hourly` or a backfill over them first).
"""

from __future__ import annotations

import tempfile
from datetime import timedelta

from airflow.sdk import dag, get_current_context, task
from search_ranker_common import (
    GPU_POOL,
    GPU_QUEUE,
    START_DATE,
    TAGS,
    banner,
    default_args,
    fail_fast,
    parse_window,
    publish_champion,
    run_sharded_retrain,
    sharded_retrain_command,
    task_settings,
)
from search_ranker_params import dry_run_param, nproc_param, window_params

from incremental.hours import iso_hour


@dag(
    dag_id="search_ranker_full_retrain",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=1),
    params={**window_params(), "dry_run": dry_run_param(), "nproc": nproc_param()},
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
        params = context["params"]
        start, end = parse_window(params)
        nproc = int(params.get("nproc") or 1)
        if nproc > 1:  # torchrun in a subprocess, rank 0's decision read back
            with tempfile.TemporaryDirectory() as folder:
                result_json = f"{folder}/decision.json"
                command = sharded_retrain_command(start, end, nproc, dry_run=bool(params["dry_run"]),
                                                  airflow_run_id=context["run_id"], result_json=result_json)
                decision = run_sharded_retrain(command, result_json)
            banner(f"FULL RETRAIN [{iso_hour(start)}, {iso_hour(end)}) on {nproc} processes: {decision['decision']}")
            return decision
        registered = retrain.full_retrain(task_settings(), start, end, airflow_run_id=context["run_id"],
                                          dry_run=bool(params["dry_run"]))
        banner(f"FULL RETRAIN [{iso_hour(start)}, {iso_hour(end)}): {registered.decision}")
        return registered.to_dict()

    publish_champion(full_retrain())


search_ranker_full_retrain()
