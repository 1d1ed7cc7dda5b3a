"""Serve the champion over HTTP, and move to a new champion without a restart.

`incremental serve` loads `models:/<name>@champion` (the pyfunc `RankerPyfunc`, exactly what
`mlflow models serve -m models:/<name>@champion --env-manager local` would load) and answers on
MLflow's own scoring protocol, through MLflow's own request handler:

    POST /invocations   {"dataframe_records": [{"query": ..., "title": ..., "brand": ..., "category": ...}]}
                        (or "dataframe_split", or CSV) -> {"predictions": [click probability, ...]}
                        brand and category are optional; the response header X-Model-Version
                        names the version that scored the request
    GET  /ping, /health 200 {"status": "ok", "version"} once a champion is loaded, 503 before
    GET  /model         {"name", "version", "model_uri", "run_id", "loaded_at"}: what is served
    POST /reload        resolve the alias again; load and swap in the new version if it moved
                        -> {"name", "version", "previous", "changed"}

Why not plain `mlflow models serve`: it resolves `@champion` once, at start-up, and cannot say
which version it serves; a new champion would mean restarting every replica. Here the
deployment DAG (`dags/search_ranker_deploy.py`, scheduled on the champion asset) POSTs
/reload to each replica and checks the version each one then serves; a request in flight
finishes on the model it started with. `--poll-seconds N` also re-checks the alias every N
seconds, which catches changes that publish no asset event (`incremental rollback`, a
promotion in the MLflow UI).

One process, one model in memory: scale with replicas (containers, pods) behind a load
balancer, each one reloaded by the deployment DAG.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (`request: Request`,
# imported inside create_app) at definition time.
import asyncio
import json
import logging
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from incremental import tracking
from incremental.config import Settings
from incremental.errors import IncrementalError, redact_url

log = logging.getLogger(__name__)

SERVE_URLS_ENV = "INCREMENTAL_SERVE_URLS"  # comma-separated base URLs of the replicas to reload


class ServingError(IncrementalError, RuntimeError):
    """A replica could not be reloaded, or serves another version than the champion."""

    retryable = True  # a replica may be restarting


@dataclass(frozen=True)
class Served:
    """One loaded version: swapped in as a whole, so a request sees one consistent model."""

    name: str
    version: str
    model_uri: str
    model: Any  # mlflow.pyfunc.PyFuncModel
    run_id: str | None
    local_dir: str | None = None  # where its artifacts were downloaded (removed once it is replaced)
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "model_uri": self.model_uri, "run_id": self.run_id,
                "loaded_at": self.loaded_at}


class ChampionHolder:
    """The served model and how to move it to the current champion."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.served: Served | None = None
        self._reload_lock = threading.Lock()  # one load at a time; requests never wait on it

    def reload(self) -> dict[str, Any]:
        """Point at the version `@champion` names now (loading it only if it changed)."""
        import mlflow

        with self._reload_lock:
            found = tracking.champion(self.settings)
            previous = self.served.version if self.served else None
            if found is None:
                return {"name": self.settings.model_name, "version": previous, "previous": previous, "changed": False,
                        "champion": None}
            version, uri = found
            if version != previous:
                log.info("loading %s (champion), serving %s until it is ready", uri, previous)
                local_dir = tempfile.mkdtemp(prefix=f"serve-{self.settings.model_name}-{version}-")
                try:
                    model = mlflow.pyfunc.load_model(uri, dst_path=local_dir)
                except BaseException:
                    shutil.rmtree(local_dir, ignore_errors=True)
                    raise
                old, self.served = self.served, Served(self.settings.model_name, version, uri, model,
                                                       model.metadata.run_id, local_dir)
                log.info("now serving %s version %s", self.settings.model_name, version)
                if old is not None and old.local_dir:
                    # the ranker reads its files at load time; requests still on `old` use it from memory
                    shutil.rmtree(old.local_dir, ignore_errors=True)
            return {"name": self.settings.model_name, "version": version, "previous": previous,
                    "changed": version != previous, "champion": version}


def create_app(holder: ChampionHolder) -> Any:
    """The FastAPI app: MLflow's scoring handler on whatever `holder` serves at request time."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from mlflow.pyfunc.scoring_server import invocations

    app = FastAPI(title="search-ranker serving")

    def not_ready() -> Response:
        return JSONResponse({"error": f"no champion of {holder.settings.model_name!r} loaded yet"}, status_code=503)

    @app.get("/ping")
    @app.get("/health")
    async def ping() -> Response:
        served = holder.served
        return JSONResponse({"status": "ok", "version": served.version}) if served else not_ready()

    @app.get("/model")
    async def model() -> Response:
        served = holder.served
        return JSONResponse(served.describe()) if served else not_ready()

    @app.post("/reload")
    async def reload() -> Response:
        try:
            result = await asyncio.to_thread(holder.reload)
        except Exception as exc:  # noqa: BLE001 - the old model keeps serving; the caller learns why
            error = _shown(exc)
            log.error("reload failed: %s", error)
            return JSONResponse({"error": error}, status_code=500)
        return JSONResponse(result)

    @app.post("/invocations")
    async def score(request: Request) -> Response:
        served = holder.served  # one read: this request uses this version from start to end
        if served is None:
            return not_ready()
        data = await request.body()
        content_type = request.headers.get("content-type", "application/json")
        try:
            result = await asyncio.to_thread(invocations, data, content_type, served.model,
                                             served.model.metadata.get_input_schema())
        except Exception as exc:  # noqa: BLE001 - MLflow's handler raises MlflowException on bad input
            from mlflow.exceptions import MlflowException

            if isinstance(exc, MlflowException):
                return Response(exc.serialize_as_json(), status_code=exc.get_http_status_code(),
                                media_type="application/json")
            raise
        return Response(result.response, status_code=result.status, media_type=result.mimetype,
                        headers={"X-Model-Name": served.name, "X-Model-Version": served.version})

    return app


def _shown(exc: BaseException) -> str:
    """An error as an answer or a log line shows it: one line, no traceback, passwords hidden
    (MLflow's errors repeat the tracking URL with its password; /reload answers anyone)."""
    return redact_url(f"{type(exc).__name__}: {exc}")


def _poll(holder: ChampionHolder, every: float) -> None:
    while True:
        time.sleep(every)
        try:
            holder.reload()
        except Exception as exc:  # noqa: BLE001 - keep serving the loaded version; try again next time
            log.error("polling the champion failed: %s", _shown(exc))


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, poll_seconds: float = 0) -> None:
    """Load the champion (if there is one yet) and serve until stopped."""
    import uvicorn

    tracking.configure(settings)
    holder = ChampionHolder(settings)
    result = holder.reload()
    if result["version"] is None:
        log.warning("%s has no champion yet: /invocations answers 503 until POST /reload finds one",
                    settings.model_name)
    if poll_seconds > 0:
        threading.Thread(target=_poll, args=(holder, poll_seconds), daemon=True, name="champion-poll").start()
    uvicorn.run(create_app(holder), host=host, port=port, log_level="info", workers=1)


# --- the client side: what the deployment DAG runs ------------------------------------------
def _request(url: str, method: str = "GET", timeout: float = 600) -> dict[str, Any]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ServingError(f"{method} {url}: HTTP {exc.code}: {exc.read()[:500].decode(errors='replace')}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise ServingError(f"{method} {url}: {exc}") from None


def serve_urls(value: str | None) -> list[str]:
    """The replicas' base URLs from a comma-separated list (e.g. $INCREMENTAL_SERVE_URLS)."""
    return [u.strip().rstrip("/") for u in (value or "").split(",") if u.strip()]


def deploy(settings: Settings, urls: Sequence[str], timeout: float = 600) -> list[dict[str, Any]]:
    """Make every replica serve the current champion: POST /reload, then GET /model to check.

    Raises ServingError naming each replica that failed or serves another version; the others
    have still been reloaded.
    """
    found = tracking.champion(settings)
    if found is None:
        raise ServingError(f"{settings.model_name} has no champion to deploy", retryable=False)
    champion, _ = found
    results, failures = [], []
    for url in urls:
        try:
            reloaded = _request(f"{url}/reload", "POST", timeout)
            served = _request(f"{url}/model", "GET", timeout)
        except ServingError as exc:
            failures.append(str(exc))
            continue
        result = {"url": url, "version": served["version"], "previous": reloaded.get("previous"),
                  "changed": reloaded.get("changed"), "loaded_at": served.get("loaded_at")}
        results.append(result)
        log.info("%s serves %s version %s (was %s)", url, served["name"], served["version"], reloaded.get("previous"))
        if str(served["version"]) != champion:
            failures.append(f"{url} serves version {served['version']}, the champion is {champion}")
    if failures:
        raise ServingError("; ".join(failures))
    return results
