"""The `search_ranker` Airflow plugin: from a task to what it produced, and a way to model review.

Only real plugin features (no operators or hooks here):

* **Extra links** on task instances of the `search_ranker_*` DAGs, read from the task's XCom return
  value by the API server: *MLflow run* (train, evaluate, register, full_retrain), *Model version*
  (register, full_retrain, publish_champion, publish_catch_up) and *GX data docs* (validate, for a quarantined hour).
* **Data docs app**: the GX data docs live in the lake; `/search-ranker/data-docs/<path>` serves
  them (only files under a `data_docs/` folder of `$INCREMENTAL_LAKE`, to logged-in users). They are
  served from the API server's origin, so every response carries `DATA_DOCS_HEADERS`: a
  Content-Security-Policy `sandbox` (an opaque origin: no script runs, nothing can reach the
  Airflow session or API) with no script sources, and `nosniff`. The docs themselves carry no data
  values (see `incremental.validation.gx_suite`): this is the second line of defence.
* **External views**: *Model review (MLflow)* in the navigation and on each DAG page.
* **Listener**: when an hourly run ends, its note says what happened to the hour (quarantined and
  why, or the gate's decision). A task cannot write its own run's note in Airflow 3 (the Task
  Execution API offers no such call), so the scheduler does it here, in the session that is
  finishing the run; a note a person already wrote is never replaced.

Where MLflow's UI is, the model's name and the lake come from the pipeline's settings
(`incremental.config.load_settings`: `INCREMENTAL_MLFLOW_UI_URL`, `INCREMENTAL_MODEL_NAME`,
`INCREMENTAL_LAKE`), loaded when a link, a view or a data docs file is asked for; the links are
built by `incremental.registry.links`. This module is imported by every Airflow process: it imports nothing
heavy and does no I/O at import time.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict
from urllib.parse import quote

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from incremental.registry import links

if TYPE_CHECKING:
    from incremental.config import Settings

log = logging.getLogger(__name__)

DAG_PREFIX = "search_ranker_"
HOURLY_DAG = "search_ranker_hourly"
DATA_DOCS_ROUTE = "/search-ranker"
NOTE_LIMIT = 1000  # characters
# Served with every data docs file: GX's HTML may hold text that came from the data.
DATA_DOCS_HEADERS = {
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'self'; style-src 'self' 'unsafe-inline' https:; img-src 'self' data: https:; "
        "font-src 'self' data: https:"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def settings() -> Settings | None:
    """The pipeline's settings, as its tasks load them; None (and one logged error) when they
    cannot be loaded, and then the plugin offers no MLflow link, view or data docs file."""
    from incremental.config import load_settings
    from incremental.errors import IncrementalError

    try:
        return load_settings()
    except IncrementalError as exc:
        log.error("search_ranker plugin: no MLflow links or data docs, the settings cannot be loaded: %s", exc)
        return None


def lake_root() -> Path | None:
    """The lake's local folder; None for a lake on object storage (its data docs are not served here)."""
    found = settings()
    return found.lake if found is not None and isinstance(found.lake, Path) else None


# --- links: pure functions of the task's return value --------------------------------------------
def mlflow_run_link(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    if value.get("mlflow_run_url"):
        return str(value["mlflow_run_url"])
    run_id, found = value.get("run_id"), settings()
    return links.run_url(found.mlflow_ui_url, run_id) if run_id and found is not None else None


def model_version_link(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    if value.get("model_version_url"):
        return str(value["model_version_url"])
    version, found = value.get("version") or value.get("reused_version"), settings()
    return links.model_version_url(found.mlflow_ui_url, found.model_name, version) if version and found else None


def data_docs_link(value: Any, base_url: str = "") -> str | None:
    """A link through the plugin's data docs app for a local path; a URL is returned as it is."""
    docs = value.get("data_docs") if isinstance(value, dict) else None
    if not docs:
        return None
    docs = str(docs)
    if docs.startswith(("http://", "https://")):
        return docs
    relative = Path(docs)  # a lake key, relative to the lake root (what tasks hand over)
    if relative.is_absolute():
        root = lake_root()
        if root is None or not relative.is_relative_to(root):
            return None  # outside the lake: not served
        relative = relative.relative_to(root)
    return f"{base_url.rstrip('/')}{DATA_DOCS_ROUTE}/data-docs/{quote(relative.as_posix())}"


def return_value(ti_key: Any) -> Any:
    """The task instance's XCom return value, read from the metadata DB (this runs in the API server)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(
                key="return_value",
                run_id=ti_key.run_id,
                dag_ids=ti_key.dag_id,
                task_ids=ti_key.task_id,
                map_indexes=ti_key.map_index,
            ).with_only_columns(XComModel.value)
        ).first()
    return XComModel.deserialize_value(row) if row is not None else None


class _XComLink(BaseOperatorLink):
    """A global link shown on every task; it has a URL only on search-ranker tasks that produced one."""

    task_ids: tuple[str, ...] = ()

    def url(self, value: Any) -> str | None:
        raise NotImplementedError

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        if not ti_key.dag_id.startswith(DAG_PREFIX) or ti_key.task_id not in self.task_ids:
            return ""
        return self.url(return_value(ti_key)) or ""


class MlflowRunLink(_XComLink):
    name = "MLflow run"
    task_ids = ("train", "evaluate", "register", "full_retrain")

    def url(self, value: Any) -> str | None:
        return mlflow_run_link(value)


class ModelVersionLink(_XComLink):
    name = "Model version"
    task_ids = ("register", "full_retrain", "publish_champion", "publish_catch_up")

    def url(self, value: Any) -> str | None:
        return model_version_link(value)


class DataDocsLink(_XComLink):
    name = "GX data docs"
    task_ids = ("validate",)

    def url(self, value: Any) -> str | None:
        from airflow.configuration import conf

        return data_docs_link(value, conf.get("api", "base_url", fallback="") or "")


# --- the data docs app ---------------------------------------------------------------------------
@functools.cache
def _data_docs_app() -> Any:  # a FastAPI app
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import FileResponse

    try:  # the API server's own login check (the session cookie); the app is not exposed without it
        from airflow.api_fastapi.core_api.security import get_user

        dependencies = [Depends(get_user)]
    except ImportError:  # pragma: no cover - other Airflow versions
        dependencies = []

    app = FastAPI(title="search-ranker data docs", dependencies=dependencies)

    @app.get("/data-docs/{path:path}")
    def data_docs(path: str) -> FileResponse:
        root = lake_root()
        if root is None:
            raise HTTPException(404, "no such data docs file")
        target = (root / path).resolve()
        if (not target.is_relative_to(root.resolve()) or "data_docs" not in target.relative_to(root.resolve()).parts
                or not target.is_file()):
            raise HTTPException(404, "no such data docs file")
        return FileResponse(target, headers=DATA_DOCS_HEADERS)

    return app


# --- the listener: the run's note -----------------------------------------------------------------
def run_note(validation: Any, decision: Any, catch_up: Any = None) -> str | None:
    """What the note of an hourly run says, from the validate, register and catch_up return values:
    the decision with its mode and drift evidence, and what a catch-up retrain did."""
    if isinstance(validation, dict) and validation.get("status") == "quarantined":
        return (f"Hour {validation.get('hour')} QUARANTINED: train/evaluate/register skipped.\n"
                f"{validation.get('summary', '')}\nData: lake key {validation.get('lake_key', '')}")[:NOTE_LIMIT]
    if isinstance(decision, dict) and decision.get("decision"):
        reasons = "; ".join(decision.get("reasons") or [])
        lines = [f"Hour {decision.get('hour')}: {decision['decision']} (mode {decision.get('mode', 'normal')}, "
                 f"version {decision.get('version')}, champion {decision.get('champion')}). {reasons}"]
        if isinstance(validation, dict) and validation.get("quarantined_rows"):
            lines.append(f"{validation['quarantined_rows']} bad rows quarantined (not trained on): lake key "
                         f"{validation.get('quarantined_rows_key')}")
        if decision.get("changed_slices"):
            lines.append(f"Slices judged changed (not protected): {', '.join(decision['changed_slices'])}")
        lines += [f"Drift: {line}" for line in decision.get("drift_evidence") or []]
        if isinstance(catch_up, dict) and catch_up.get("version") and catch_up.get("version") != decision.get("version"):
            lines.append(f"Catch-up retrain: {catch_up.get('decision')} (version {catch_up.get('version')}, "
                         f"champion {catch_up.get('champion')})")
        return "\n".join(lines)[:NOTE_LIMIT]
    return None


def _return_value(session: Any, dag_id: str, run_id: str, task_id: str) -> Any:
    from airflow.models.xcom import XComModel

    row = session.execute(
        XComModel.get_many(key="return_value", run_id=run_id, dag_ids=dag_id, task_ids=task_id)
        .with_only_columns(XComModel.value)
    ).first()
    return XComModel.deserialize_value(row) if row is not None else None


def _write_note(session: Any, dag_run: Any) -> None:
    if dag_run.note:  # a person's note stays
        return
    validation = _return_value(session, dag_run.dag_id, dag_run.run_id, "validate")
    decision = _return_value(session, dag_run.dag_id, dag_run.run_id, "register")
    catch_up = _return_value(session, dag_run.dag_id, dag_run.run_id, "catch_up")
    note = run_note(validation, decision, catch_up)
    if note:
        dag_run.note = note
        log.info("search_ranker: note on %s: %s", dag_run.run_id, note.splitlines()[0])


class RunNoteListener:
    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        if dag_run.dag_id != HOURLY_DAG:
            return
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select
        from sqlalchemy.orm import object_session

        session = object_session(dag_run)
        if session is not None:  # the scheduler's session, which holds the run's row lock: commits with it
            _write_note(session, dag_run)
            return
        with create_session() as session:  # `dag.test()` hands over a detached run
            attached = session.scalar(
                select(DagRun).where(DagRun.dag_id == dag_run.dag_id, DagRun.run_id == dag_run.run_id)
            )
            if attached is not None:
                _write_note(session, attached)


class ExternalView(TypedDict):
    """An external view, as Airflow's plugin manager reads one: a link in the UI's menu or on a DAG."""

    name: str
    href: str
    destination: str  # "nav" | "dag" | ...
    category: NotRequired[str]  # the menu it goes in ("browse")


class FastApiApp(TypedDict):
    """A FastAPI app mounted in Airflow's API server, as the plugin manager reads one."""

    app: Any  # a FastAPI app (`_data_docs_app`)
    url_prefix: str
    name: str


class SearchRankerPlugin(AirflowPlugin):
    name = "search_ranker"
    global_operator_extra_links = [MlflowRunLink(), ModelVersionLink(), DataDocsLink()]
    listeners = [RunNoteListener()]

    @property
    def external_views(self) -> list[ExternalView]:  # type: ignore[override]  # AirflowPlugin declares a list; built when asked for (the settings are not read on import)
        found = settings()
        if found is None:
            return []
        href = links.model_url(found.mlflow_ui_url, found.model_name)
        return [
            {"name": "Model review (MLflow)", "href": href, "destination": "nav", "category": "browse"},
            {"name": "Model review (MLflow)", "href": href, "destination": "dag"},
        ]

    @property
    def fastapi_apps(self) -> list[FastApiApp]:  # type: ignore[override]  # AirflowPlugin declares a list; built on first use, in the API server only
        return [{"app": _data_docs_app(), "url_prefix": DATA_DOCS_ROUTE, "name": "search-ranker data docs"}]
