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
from typing import Any, TypedDict

from incremental.config import Settings
from incremental.errors import IncrementalError, redact_url
from incremental.registry import tracking

log = logging.getLogger(__name__)



class ServingError(IncrementalError, RuntimeError):
    """A replica could not be reloaded, or serves another version than the champion."""

    retryable = True  # a replica may be restarting


class ServedModel(TypedDict):
    """`GET /model`: the version a replica serves."""

    name: str
    version: str
    model_uri: str
    run_id: str | None
    loaded_at: str


class Reloaded(TypedDict):
    """`POST /reload`: the version served after following the alias, and before."""

    name: str
    version: str | None
    previous: str | None
    changed: bool
    champion: str | None


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

    def describe(self) -> ServedModel:
        return {"name": self.name, "version": self.version, "model_uri": self.model_uri, "run_id": self.run_id,
                "loaded_at": self.loaded_at}


class ChampionHolder:
    """The served model and how to move it to the current champion."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.served: Served | None = None
        self._reload_lock = threading.Lock()  # one load at a time; requests never wait on it

    def reload(self) -> Reloaded:
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


    def close(self) -> None:
        """Remove the served version's downloaded files (at shutdown)."""
        with self._reload_lock:
            if self.served is not None and self.served.local_dir:
                shutil.rmtree(self.served.local_dir, ignore_errors=True)


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
        problem = check_json_body(data, content_type)
        if problem:
            return bad_request(problem)
        try:
            result = await asyncio.to_thread(invocations, data, content_type, served.model,
                                             served.model.metadata.get_input_schema())
        except Exception as exc:  # noqa: BLE001 - MLflow's handler raises MlflowException on bad input
            from mlflow.exceptions import MlflowException

            if isinstance(exc, MlflowException):  # its message may quote the whole body: cut
                return JSONResponse({"error_code": exc.error_code, "message": _cut(exc.message)},
                                    status_code=exc.get_http_status_code())
            raise
        return Response(result.response, status_code=result.status, media_type=result.mimetype,
                        headers={"X-Model-Name": served.name, "X-Model-Version": served.version})

    return app


MAX_ERROR_CHARS = 500  # of a 400 answer's message: a huge bad body is never echoed whole


def _cut(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters not shown)"


def bad_request(message: str) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error_code": "BAD_REQUEST", "message": _cut(message)}, status_code=400)


def check_json_body(data: bytes, content_type: str) -> str | None:
    """What is wrong with a JSON scoring request (None: nothing found; other content types and
    shapes are left to MLflow's handler): not JSON, or a record whose query or title is not a
    string, or whose brand or category is neither a string nor null (the signature says string;
    MLflow would score `12345` or a list as text)."""
    from incremental.model.ranker import INPUT_COLUMNS, REQUIRED_COLUMNS

    if "json" not in content_type.split(";")[0].lower():
        return None
    try:
        payload = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        shown = data[:100].decode(errors="replace")
        return f"the body is not valid JSON ({exc}); it begins {shown!r} ({len(data)} bytes)"
    if not isinstance(payload, dict):
        return None
    records: list[Any] = []
    if isinstance(payload.get("dataframe_records"), list):
        records = payload["dataframe_records"]
    elif isinstance(payload.get("dataframe_split"), dict):
        split = payload["dataframe_split"]
        columns, rows = split.get("columns"), split.get("data")
        if isinstance(columns, list) and isinstance(rows, list):
            records = [dict(zip(columns, row, strict=False)) if isinstance(row, list) else row for row in rows]
    else:  # MLflow's other JSON shapes: `inputs` or `instances`, as records or as columns
        given = payload.get("inputs", payload.get("instances"))
        if isinstance(given, list) and all(isinstance(row, dict) for row in given):
            records = given
        elif isinstance(given, dict) and all(isinstance(v, list) for v in given.values()):
            records = [dict(zip(given, row, strict=False)) for row in zip(*given.values(), strict=False)]
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            return f"record {i}: an object with {', '.join(INPUT_COLUMNS)} expected, found {type(record).__name__}"
        for column in INPUT_COLUMNS:
            value = record.get(column)
            if column in REQUIRED_COLUMNS and column not in record:
                continue  # MLflow names missing columns itself
            if not isinstance(value, str) and not (value is None and column not in REQUIRED_COLUMNS):
                return (f"record {i}: {column!r} must be a string{'' if column in REQUIRED_COLUMNS else ' or null'}, "
                        f"found {json.dumps(value)[:80]}")
    return None


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


def check_port(port: int) -> int:
    """A TCP port to listen on: 1..65535 (0 would be a random port nobody can reach)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ServingError(f"port {port!r} is not a TCP port: use 1..65535", retryable=False)
    return port


def _check_can_listen(host: str, port: int) -> None:
    """Fail before loading a model when the address cannot be bound (in use, not ours)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServingError(f"cannot listen on {host}:{port}: {exc.strerror}", retryable=False) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise ServingError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


STOPPED_BY_SIGTERM = 128 + 15  # the exit status of a server stopped by SIGTERM


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, poll_seconds: float = 0) -> None:
    """Load the champion (if there is one yet) and serve until stopped (SIGINT or SIGTERM); the
    downloaded model is removed however it ends (a stop, a failure to bind, a failed load)."""
    import signal
    import sys

    import uvicorn

    check_port(port)
    _check_can_listen(host, port)
    if threading.current_thread() is threading.main_thread():
        # a SIGTERM while the model loads ends the process through `finally` (uvicorn handles it later)
        # (after a graceful shutdown uvicorn raises the SIGTERM it caught again: this handler
        # then ends the process with 143, which is a stop, not a failure to start)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(STOPPED_BY_SIGTERM))
    tracking.configure(settings)
    holder = ChampionHolder(settings)
    try:
        result = holder.reload()
        if result["version"] is None:
            log.warning("%s has no champion yet: /invocations answers 503 until POST /reload finds one",
                        settings.model_name)
        if poll_seconds > 0:
            threading.Thread(target=_poll, args=(holder, poll_seconds), daemon=True, name="champion-poll").start()
        try:
            uvicorn.run(create_app(holder), host=host, port=port, log_level="info", workers=1)
        except SystemExit as exc:  # uvicorn exits when it cannot start (the port taken since the check)
            if exc.code in (0, None, STOPPED_BY_SIGTERM):
                raise
            raise ServingError(f"the server could not start on {host}:{port} (see the log above)") from None
    finally:
        holder.close()


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


class Deployed(TypedDict):
    """One replica after a deployment: the version it serves now, and before."""

    url: str
    version: str
    previous: str | None
    changed: bool | None
    loaded_at: str | None


def deploy(settings: Settings, urls: Sequence[str], timeout: float = 600) -> list[Deployed]:
    """Make every replica serve the current champion: POST /reload, then GET /model to check.

    Raises ServingError naming each replica that failed or serves another version; the others
    have still been reloaded.
    """
    found = tracking.champion(settings)
    if found is None:
        raise ServingError(f"{settings.model_name} has no champion to deploy", retryable=False)
    champion, _ = found
    results: list[Deployed] = []
    failures: list[str] = []
    for url in urls:
        try:
            reloaded = _request(f"{url}/reload", "POST", timeout)
            served = _request(f"{url}/model", "GET", timeout)
        except ServingError as exc:
            failures.append(str(exc))
            continue
        result: Deployed = {"url": url, "version": served["version"], "previous": reloaded.get("previous"),
                            "changed": reloaded.get("changed"), "loaded_at": served.get("loaded_at")}
        results.append(result)
        log.info("%s serves %s version %s (was %s)", url, served["name"], served["version"], reloaded.get("previous"))
        if str(served["version"]) != champion:
            failures.append(f"{url} serves version {served['version']}, the champion is {champion}")
    if failures:
        raise ServingError("; ".join(failures))
    return results
