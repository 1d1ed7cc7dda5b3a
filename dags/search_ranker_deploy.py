"""
# search_ranker_deploy

Runs whenever there is a new champion (an event on the asset `mlflow://models/search-ranker`,
published by `search_ranker_hourly` and `search_ranker_full_retrain`) and makes every serving
replica (`incremental serve`) serve it: **reload** POSTs `/reload` to each replica, which
resolves `models:/search-ranker@champion` again and swaps the new version in without a restart,
then checks with `GET /model` that each replica now serves the registry's current champion.

* **Replicas**: `$INCREMENTAL_SERVE_URLS`, comma-separated base URLs (docker-compose sets
  `http://serving:8000`). None configured: the task is skipped and says so.
* **What counts**: the registry's champion at the time of the check, not the version in the event:
  if a later champion (or a rollback) happened in between, the replicas serve that one.
* **Failure**: a replica that cannot be reached or serves another version fails the task (with
  retries); the other replicas are still reloaded. Trigger this DAG manually to redeploy.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from airflow.sdk import dag, get_current_context, task
from search_ranker_common import CHAMPION_MODEL, START_DATE, TAGS, banner, default_args, fail_fast, task_settings

if TYPE_CHECKING:
    from incremental.serving.server import Deployed


@dag(
    dag_id="search_ranker_deploy",
    schedule=[CHAMPION_MODEL],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,  # deployments one after another; each one deploys whatever is champion then
    default_args=default_args(retries=3),
    tags=TAGS,
    doc_md=__doc__,
)
def search_ranker_deploy():
    @task(execution_timeout=timedelta(minutes=15))
    @fail_fast
    def reload_serving() -> list[Deployed]:
        """POST /reload to every serving replica, then check each one serves the current champion."""
        from airflow.sdk.exceptions import AirflowSkipException

        from incremental.serving import server as serve

        settings = task_settings()
        if not settings.serve_urls:
            raise AirflowSkipException("no serving replicas: set $INCREMENTAL_SERVE_URLS (comma-separated base URLs)")
        try:  # the versions the triggering events announced (none on a manual run): for the log only
            events = get_current_context()["triggering_asset_events"][CHAMPION_MODEL]
            published = [(e.extra or {}).get("version") for e in events]
        except (KeyError, TypeError):
            published = []
        results = serve.deploy(settings, settings.serve_urls)
        banner(f"SERVING version {results[0]['version']} on {len(results)} replica(s) "
               f"(champion event(s): {published or 'none, manual run'})")
        return results

    reload_serving()


search_ranker_deploy()
