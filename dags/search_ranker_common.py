"""What the search-ranker DAGs share: assets, default task arguments (with the failure alert, an
Airflow notifier: `incremental.notifier.FailureAlert`), the run's hour, settings.

DAG files import this module at parse time, so it imports nothing heavy (no torch, mlflow, pandas,
transformers or great_expectations) and touches no database or network when imported: the
connection look-up, the settings and the alert webhook are read inside tasks (or when one fails).
`.airflowignore` keeps the DAG processor from parsing it as a DAG file.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from airflow.sdk import Asset, CronDataIntervalTimetable, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from pydantic import JsonValue  # a task's return type: Airflow reads it (multiple_outputs)
from search_ranker_params import training_overrides

from incremental.config import dag_start
from incremental.errors import InputError
from incremental.hours import HOUR, Hour, iso_hour, parse_hour
from incremental.notifier import FailureAlert

if TYPE_CHECKING:
    from incremental.config import Settings
    from incremental.handover import CaughtUp, Evaluated, Extracted, Monitored, Registered, Trained, Validated

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

OWNER = "search-ranking"
TAGS = ["search-ranker", "ml", "incremental"]
WAREHOUSE_CONN_ID = "search_warehouse"  # optional Airflow connection; replaces INCREMENTAL_WAREHOUSE_URL
GPU_QUEUE = "gpu"  # the Celery queue the GPU worker listens on
GPU_POOL = "gpu"  # one slot per GPU: created by scripts/airflow_env.sh (`airflow pools set gpu 1 ...`)
# One slot: the tasks that read or write the registry and the anchor set (hourly evaluate and
# register, benchmark freeze) never overlap across DAGs; created like the gpu pool.
REGISTRY_POOL = "search_ranker_registry"

# The first hour the hourly DAG knows about (a deployment sets it, INCREMENTAL_DAG_START; backfills
# may go earlier). Read without the rest of the settings: parsing must not depend on the reviewed file.
START_DATE = dag_start()

# Each hour extracted into the lake is an event on this asset (extra: hour, rows, sha256).
SEARCH_LOGS = Asset(name="search_logs", uri="lake://search-ranker/search_logs", group="search-ranker")
# Each new champion is an event on this asset, so a deployment DAG can use `schedule=[CHAMPION_MODEL]`.
CHAMPION_MODEL = Asset(name="search-ranker-champion", uri="mlflow://models/search-ranker", group="search-ranker")


def hourly_timetable() -> CronDataIntervalTimetable:
    """Hourly runs that each cover one closed hour `[start, start + 1h)` in UTC.

    (`schedule="@hourly"` gives zero-length data intervals in Airflow 3.)
    """
    return CronDataIntervalTimetable("0 * * * *", timezone="UTC")


def default_args(**overrides: Any) -> dict[str, Any]:
    """Retries with exponential back-off, a time-out and the failure alert (a notifier), for every task."""
    return {
        "owner": OWNER,
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,  # 1, 2, 4 minutes
        "max_retry_delay": timedelta(minutes=15),
        "execution_timeout": timedelta(minutes=15),
        "on_failure_callback": FailureAlert(),
        **overrides,
    }


# --- inside tasks ----------------------------------------------------------------------------------
def fail_fast(body: F) -> F:
    """A task body that fails at once, without its retries, on an error that would fail the same way
    again: bad input, configuration or data (an `IncrementalError` that is not `retryable`).

    A service that may come back (the warehouse, MLflow, a serving replica) and anything
    unexpected keep the task's retries. Before the body runs, the task's process is prepared
    as every process of the pipeline is at its edge (`incremental.runtime.prepare_process`). Goes under `@task`: `@task(...)` then `@fail_fast`.
    An error whose text quotes a URL with its password (MLflow's do) reaches the task log with
    the password hidden: its traceback is logged redacted and an error of the same text, redacted,
    is raised in its place (still retried).
    """

    @functools.wraps(body)
    def run(*args: Any, **kwargs: Any) -> Any:
        from incremental.errors import IncrementalError, redact_url
        from incremental.runtime import prepare_process

        prepare_process()
        try:
            return body(*args, **kwargs)
        except IncrementalError as exc:
            if exc.retryable:
                raise
            raise AirflowFailException(f"{type(exc).__name__}: {exc} (not retried: it would fail the same way)") from exc
        except Exception as exc:
            import traceback

            text = "".join(traceback.format_exception(exc))
            if redact_url(text) == text:
                raise
            log.error("%s", redact_url(text))
            raise IncrementalError(f"{type(exc).__name__}: {exc}", retryable=True) from None

    run.fails_fast = True  # type: ignore[attr-defined]  # what the DAG tests look for
    return cast(F, run)  # same signature: `run` passes its arguments through


def champion_event(decision: Mapping[str, Any]) -> dict[str, JsonValue]:
    """The champion-asset event (its `extra`: version, hour, decision, model_version_url) for a
    register, catch-up or full-retrain result (its XCom), or skip: only a newly registered champion counts.

    Not for a skipped hour or catch-up, a dry run, a rejected candidate or a reprocessed hour that reused its existing version.
    """
    from airflow.sdk.exceptions import AirflowSkipException

    from incremental.handover import Registered

    if decision.get("skipped"):  # a catch-up that had nothing to do, an hour the champion's lineage trained on
        raise AirflowSkipException(f"no new champion: {decision['skipped']}")
    registered = Registered.from_dict(decision)
    if not registered.new_champion:
        what = "dry run" if registered.dry_run else "reused version" if registered.reused else registered.decision
        raise AirflowSkipException(f"no new champion ({what}): {'; '.join(registered.reasons)}")
    return {"version": str(registered.version), "hour": iso_hour(registered.hour), "decision": registered.decision,
            "model_version_url": registered.model_version_url}


@task(outlets=[CHAMPION_MODEL], retries=0)
def publish_champion(decision: Mapping[str, Any]) -> dict[str, JsonValue]:
    """Emit an event on the champion-model asset when this run made a new champion; skipped otherwise."""
    context = get_current_context()
    event = champion_event(decision)  # raises AirflowSkipException when there is no new champion
    context["outlet_events"][CHAMPION_MODEL].extra = event
    return event


def interval_hour(context: Mapping[str, Any]) -> Hour:
    """The hour this run covers, parsed here, once, from its data interval (Airflow's pendulum
    DateTimes) into an `Hour` (an aware UTC datetime on the hour): what the pipeline takes from here on. The
    interval must be exactly one whole UTC hour."""
    start, end = context["data_interval_start"], context["data_interval_end"]
    if start is None or end is None:
        raise AirflowFailException("this run has no data interval; trigger it with a logical date (or use a backfill)")
    wrong = AirflowFailException(f"data interval [{start.isoformat()}, {end.isoformat()}) is not one whole UTC hour")
    try:
        hour, end_hour = parse_hour(start), parse_hour(end)
    except InputError:  # not on the hour
        raise wrong from None
    if end_hour - hour != HOUR:
        raise wrong
    return hour


def parse_window(params: Mapping[str, Any]) -> tuple[Hour, Hour]:
    """`window_start`/`window_end` params as `Hour`s (aware UTC datetimes on the hour), start before end."""
    start = parse_hour(str(params["window_start"]).replace("Z", "+00:00"))
    end = parse_hour(str(params["window_end"]).replace("Z", "+00:00"))
    if end <= start:
        raise AirflowFailException(f"window_end {iso_hour(end)} must be after window_start {iso_hour(start)}")
    return start, end


def warehouse_url_from_connection(conn: Any) -> str:
    """A SQLAlchemy URL from an Airflow connection: `extra.sqlalchemy_url` if given, else from its fields."""
    explicit = (conn.extra_dejson or {}).get("sqlalchemy_url")
    if explicit:
        return str(explicit)
    if conn.conn_type in ("postgres", "postgresql"):
        from sqlalchemy.engine import URL

        return URL.create(
            "postgresql+psycopg",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
        ).render_as_string(hide_password=False)
    if conn.conn_type == "duckdb":
        return f"duckdb:///{conn.host or conn.schema}"
    raise AirflowFailException(f"connection {conn.conn_id!r} has type {conn.conn_type!r}: set extra.sqlalchemy_url")


def task_settings() -> Settings:
    """The pipeline settings from the environment; the `search_warehouse` connection wins if defined."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    from incremental.config import load_settings

    settings = load_settings()
    try:
        conn = Connection.get(WAREHOUSE_CONN_ID)
    except AirflowNotFoundException:
        log.info("no Airflow connection %r: warehouse from the settings", WAREHOUSE_CONN_ID)
        return settings
    log.info("warehouse from the Airflow connection %r", WAREHOUSE_CONN_ID)
    return settings.model_copy(update={"warehouse_url": warehouse_url_from_connection(conn)})


def sharded_retrain_command(start: datetime, end: datetime, nproc: int, *, dry_run: bool, airflow_run_id: str,
                            result_json: str) -> list[str]:
    """`incremental bootstrap --nproc N` in this worker's interpreter: checks the window splits over N
    processes, then runs torchrun (`incremental.launch`); rank 0 writes the decision to `result_json`."""
    from incremental import launch

    _check_sharded(nproc)
    return launch.cli_command(launch.bootstrap_args(start, end, nproc=nproc, dry_run=dry_run,
                                                    airflow_run_id=airflow_run_id, result_json=result_json,
                                                    verbose=True))


def sharded_catch_up_command(hour: datetime, nproc: int, *, dry_run: bool, airflow_run_id: str,
                             result_json: str) -> list[str]:
    """`incremental catch-up --nproc N` in this worker's interpreter: nothing when no catch-up is
    pending, else checks its window splits over N processes and runs torchrun; rank 0 (or the
    launcher, when there is nothing to do) writes the decision to `result_json`."""
    from incremental import launch

    _check_sharded(nproc)
    return launch.cli_command(launch.catch_up_args(hour, nproc=nproc, dry_run=dry_run, airflow_run_id=airflow_run_id,
                                                   result_json=result_json, verbose=True))


def _check_sharded(nproc: int) -> None:
    if nproc < 2:
        raise InputError(f"nproc {nproc}: a sharded retrain needs at least 2 processes (1 trains in the task itself)")


def run_sharded_retrain(command: list[str], result_json: str) -> dict[str, Any]:
    """Run the sharded retrain's command (its output in the task log) and read back rank 0's decision.
    Exit 2 is bad input or configuration: the task fails without retries; any other failure is retried."""
    import json
    import subprocess

    from incremental.errors import IncrementalError

    log.info("running: %s", " ".join(command))
    done = subprocess.run(command, check=False)
    if done.returncode == 2:
        raise InputError(f"the sharded retrain refused its input (exit 2): {' '.join(command)} (see the log above)")
    if done.returncode != 0:
        raise IncrementalError(f"the sharded retrain failed (exit {done.returncode}; each rank's error is in the "
                               "log above)", retryable=True)
    with open(result_json) as f:
        return dict(json.load(f))


def banner(message: str) -> None:
    """A line nobody can miss in the task log."""
    log.warning("%s\n%s\n%s", "=" * 80, message, "=" * 80)


# --- the hourly DAG's task bodies ------------------------------------------------------------------
# Each reads the run's hour once (`interval_hour`) and calls one stage of `incremental.pipeline`; the
# task in the DAG file converts at the boundary (a hand-over's `from_dict` in, `to_dict()` out).
def extract_hour() -> Extracted:
    from incremental import pipeline

    context = get_current_context()
    extracted = pipeline.extract_step(task_settings(), interval_hour(context))
    context["outlet_events"][SEARCH_LOGS].extra = {"hour": iso_hour(extracted.hour), "rows": extracted.rows,
                                                   "sha256": extracted.sha256}
    return extracted


def validate_hour() -> Validated:
    from incremental import pipeline

    return pipeline.validate_step(task_settings(), interval_hour(get_current_context()))


def go_on_if_validated(validation: Validated) -> bool:
    if validation.validated:
        return True
    banner(f"HOUR {iso_hour(validation.hour)} QUARANTINED: train, evaluate and register are skipped.\n"
           f"{validation.summary}\nquarantined data: lake key {validation.lake_key}")
    return False


def monitor_hour() -> Monitored:
    from incremental import pipeline

    monitored = pipeline.monitor_step(task_settings(), interval_hour(get_current_context()))
    if monitored.declared_now and monitored.assessment is not None:
        banner(f"DRIFT DECLARED at {iso_hour(monitored.hour)}: adapt mode, rolling anchor, catch-up retrain\n"
               + "\n".join(monitored.assessment["evidence"]))
    return monitored


def train_hour(monitored: Monitored) -> Trained:
    from incremental import pipeline

    context = get_current_context()
    trained = pipeline.train_step(task_settings(), interval_hour(context), monitored,
                                  overrides=training_overrides(context["params"]), airflow_run_id=context["run_id"])
    if trained.skipped is not None:  # evaluate and register pass it on; no version, no new champion
        banner(f"HOUR {iso_hour(trained.hour)} NOT TRAINED: {trained.skipped}")
    return trained


def evaluate_hour(trained: Trained) -> Evaluated:
    from incremental.judge import verdict

    return verdict.evaluate_step(task_settings(), interval_hour(get_current_context()), trained)


def register_hour(trained: Trained, evaluation: Evaluated) -> Registered:
    from incremental.judge import verdict

    context = get_current_context()
    params = context["params"]
    registered = verdict.register_step(task_settings(), interval_hour(context), trained, evaluation,
                                       airflow_run_id=context["run_id"],
                                       force_promote_reason=params.get("force_promote"),
                                       dry_run=bool(params.get("dry_run")))
    banner(f"{str(registered.decision).upper()} (mode {trained.mode}): version {registered.version}, "
           f"champion {registered.champion}" + "".join(f"\n- {reason}" for reason in registered.reasons))
    return registered


def catch_up_hour() -> CaughtUp:
    """The catch-up retrain, if one is pending: in this task, or (param `catch_up_nproc` > 1) as
    `incremental catch-up --nproc N` in a subprocess (torchrun), rank 0's decision read back."""
    import tempfile

    from incremental.handover import CaughtUp
    from incremental.judge import drift

    context = get_current_context()
    params = context["params"]
    hour, dry_run = interval_hour(context), bool(params.get("dry_run"))
    settings = task_settings()
    not_due = drift.no_catch_up(drift.load_state(settings))
    if not_due is not None:  # most hours: answered before torch, MLflow and the training code load (7-9 s a task)
        return CaughtUp(hour=hour, skipped=not_due)
    from incremental.retrain import catch_up_step

    nproc = int(params.get("catch_up_nproc") or settings.drift.adapt.catch_up_processes)
    if nproc > 1:
        with tempfile.TemporaryDirectory() as folder:
            result_json = f"{folder}/decision.json"
            command = sharded_catch_up_command(hour, nproc, dry_run=dry_run, airflow_run_id=context["run_id"],
                                               result_json=result_json)
            caught = CaughtUp.from_dict(run_sharded_retrain(command, result_json))
    else:
        caught = catch_up_step(settings, hour, airflow_run_id=context["run_id"], dry_run=dry_run)
    if caught.registered is not None and caught.window is not None:
        registered = caught.registered
        on = f" on {nproc} processes" if nproc > 1 else ""
        banner(f"CATCH-UP {str(registered.decision).upper()} on {'/'.join(iso_hour(h) for h in caught.window)}{on}: "
               f"version {registered.version}, champion {registered.champion}"
               + "".join(f"\n- {reason}" for reason in registered.reasons))
    return caught
