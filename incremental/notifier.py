"""Alerts from Airflow: `FailureAlert`, an Airflow notifier (`airflow.sdk.BaseNotifier`) that every
task of the search-ranker DAGs has as its `on_failure_callback` (`search_ranker_common.default_args`).

It logs one alert line (what failed, for which hour, after how many tries, and why, passwords
hidden) and, when a webhook is set (`INCREMENTAL_ALERT_WEBHOOK`), POSTs it through the pipeline's
one poster, `incremental.judge.drift.post_alert`, which the CLI's drift alerts and pages use too.

The DAG files import this module when they are parsed: it imports nothing heavy, and reads no
setting until a task fails.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)


def alert_line(context: Any) -> str:
    """One line that says what failed, for which hour, after how many tries, and why."""
    from incremental.errors import redact_url
    from incremental.hours import iso_hour

    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    run_id = getattr(ti, "run_id", "?")
    tries = getattr(ti, "try_number", "?")
    start = context.get("data_interval_start")
    hour = iso_hour(start) if start else "-"
    error = context.get("exception")
    reason = f"{type(error).__name__}: {error}" if error is not None else "unknown error"
    reason = redact_url(" ".join(reason.split()))[:500]  # an MLflow error repeats its URL, password included
    return f"ALERT search-ranker: {dag_id}.{task_id} failed for hour {hour} (run {run_id}, try {tries}): {reason}"


class FailureAlert(BaseNotifier):
    """A failed task's alert: one log line, and a JSON POST to the alert webhook if one is set.

    The webhook comes from `incremental.config.alert_webhook`, which needs none of the other
    settings: the alert goes out even when they cannot be loaded (that may be why the task
    failed). A webhook that is down or misconfigured is logged, never raised: the alert must not
    hide the original failure."""

    def notify(self, context: Any) -> None:
        from incremental.config import alert_webhook
        from incremental.errors import IncrementalError
        from incremental.judge.drift import post_alert

        line = alert_line(context)
        log.error(line)
        try:
            url = alert_webhook()
        except IncrementalError as exc:
            log.error("the alert was not posted: %s", exc)
            return
        if not url:
            return
        ti = context.get("ti")
        post_alert(url, {"text": line, "dag_id": getattr(ti, "dag_id", None), "task_id": getattr(ti, "task_id", None),
                         "run_id": getattr(ti, "run_id", None)})  # never raises; a failure is logged, password hidden
