"""
# search_ranker_benchmark

Manual only. **Freeze** the forgetting benchmark's anchor set, or **refresh** it on purpose: a
content-hashed, stratified sample (by source hour and category) of validated hours in
`[window_start, window_end)`. Every candidate is scored on this set, so changing it changes what
"forgetting" means: `reason` is required and recorded with the new set.

* `refresh=false` (default) refuses to replace an existing anchor set.
* `size`: rows in the sample.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task
from search_ranker_common import (
    REGISTRY_POOL,
    START_DATE,
    TAGS,
    banner,
    default_args,
    fail_fast,
    parse_window,
    task_settings,
)
from search_ranker_params import window_params


@dag(
    dag_id="search_ranker_benchmark",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=1),
    params={
        **window_params(),
        "size": Param(2000, type="integer", minimum=100, maximum=1_000_000, title="Rows in the anchor set"),
        "reason": Param(type="string", minLength=10, title="Why freeze or refresh (recorded)"),
        "refresh": Param(False, type="boolean", title="Replace an existing anchor set"),
    },
    tags=[*TAGS, "manual", "benchmark"],
    doc_md=__doc__,
)
def search_ranker_benchmark():
    @task(execution_timeout=timedelta(minutes=30), pool=REGISTRY_POOL)
    @fail_fast
    def freeze_anchor() -> dict:
        """Sample, hash and freeze the anchor set from the validated hours in the window."""
        from incremental import retrain

        params = get_current_context()["params"]
        start, end = parse_window(params)
        frozen = retrain.freeze_anchor(task_settings(), start, end, size=params["size"],
                                       reason=params["reason"], refresh=params["refresh"]).to_dict()
        banner(f"ANCHOR SET: {frozen}")
        return frozen

    freeze_anchor()


search_ranker_benchmark()
