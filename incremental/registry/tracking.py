"""MLflow set-up in one place: tracking URI, experiments, the champion, model directories.

Every stage that talks to MLflow goes through here, so the URI, the artifact location of new
experiments and the champion lookup are decided once; so are the local copies of registered
versions, keyed and checked so that a recreated registry never serves old weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TypedDict
from urllib.parse import urlsplit

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from incremental import locks
from incremental.config import Settings
from incremental.errors import InputError, TrackingError, redact_url

UPDATES_EXPERIMENT = "search-ranker-updates"
CHAMPION_ALIAS = "champion"


def _quiet() -> None:
    """No advice banners in CLI output and task logs (they are not errors; the artifact progress
    bars are switched off at the process's edge, `incremental.runtime.prepare_process`)."""
    import warnings

    warnings.filterwarnings("ignore", message=".*An input example was not provided.*")
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)  # the CloudPickle advice on every log_model
    logging.getLogger("mlflow.tracking._model_registry.fluent").setLevel(logging.ERROR)


def quote(value: str) -> str:
    """`value` as a string literal of an MLflow search filter.

    MLflow's filter parser has no escape character: a value is whatever lies between its quotes,
    so a name with a `'` must be written in double quotes (and one with both cannot be searched).
    Never build a filter with f"... = '{value}'": a `'` in a model name would break it."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise TrackingError(f"{value!r} holds both kinds of quote: MLflow search filters cannot express it",
                        retryable=False)


_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "file")
_REACHED: set[str] = set()  # URIs this process has already reached once


def check_uri(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, with one line naming the URI (password hidden), when INCREMENTAL_MLFLOW_URI is
    not an MLflow URI or its server cannot be reached: MLflow itself would retry for minutes and
    then raise a traceback. Checked once per process and URI."""
    if uri in _REACHED:
        return
    shown = redact_url(uri)
    scheme = urlsplit(uri).scheme.split("+")[0].lower() if "://" in uri else ""
    if scheme not in _SCHEMES:
        raise TrackingError(
            f"INCREMENTAL_MLFLOW_URI {shown!r} is not an MLflow tracking URI: expected "
            "sqlite:///path/mlflow.db, postgresql://user@host/db or http(s)://host:port", retryable=False
        )
    if scheme in ("http", "https"):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=timeout)
        except requests.RequestException as exc:
            reason = type(exc).__name__ if not str(exc) else str(exc).splitlines()[0][:200]
            raise TrackingError(f"MLflow server {shown} cannot be reached: {reason}") from None
    elif scheme in ("postgresql", "mysql", "mssql"):
        import sqlalchemy as sa

        try:
            engine = sa.create_engine(uri, poolclass=sa.pool.NullPool,
                                      connect_args={"connect_timeout": int(timeout)} if scheme != "mssql" else {})
            try:
                with engine.connect():
                    pass
            finally:
                engine.dispose()
        except sa.exc.DBAPIError as exc:
            detail = " ".join(line.strip() for line in str(exc.orig).strip().splitlines()[:2])
            raise TrackingError(f"MLflow database {shown} cannot be reached: {detail}") from None
        except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            raise TrackingError(f"MLflow database {shown}: {str(exc).splitlines()[0]}") from None
    elif scheme == "sqlite":
        db = Path(uri.split(":///", 1)[-1])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(f"MLflow store {shown}: cannot create {db.parent}: {exc.strerror}") from None
        # MLflow creates and migrates a new SQLite store on first use, and two processes doing so
        # at once collide ("duplicate column name"): the first use in each process is serialised.
        with locks.hold(db.with_name(db.name + ".lock")):
            _check_sqlite_file(db)
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
    _REACHED.add(uri)


_SQLITE_HEADER = b"SQLite format 3\x00"


def _check_sqlite_file(db: Path) -> None:
    """An existing registry file must be an SQLite database: MLflow would silently turn an empty
    (0-byte) file into a new empty registry, whose version 1 is another model than the old one."""
    try:
        with open(db, "rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return  # no registry yet: MLflow creates it
    except OSError as exc:
        raise TrackingError(f"MLflow store {db} cannot be read: {exc.strerror}", retryable=False) from None
    if head != _SQLITE_HEADER:
        what = "is empty (0 bytes)" if not head else "is not an SQLite database"
        raise TrackingError(f"MLflow store {db} {what}: it is not the registry; restore it from a backup, or "
                            "remove it to start a new, empty registry", retryable=False)


def configure(settings: Settings) -> MlflowClient:
    """Point this process's MLflow at the settings' tracking (and registry) URI."""
    _quiet()
    check_uri(settings.mlflow_uri)
    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_registry_uri(settings.mlflow_uri)
    return MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)


def get_or_create_experiment(settings: Settings, name: str = UPDATES_EXPERIMENT) -> str:
    """The experiment's id. A new one keeps its artifacts under `settings.mlflow_artifacts` with a
    local store; with a tracking server, where the server puts them (``mlflow-artifacts:/``,
    proxied by ``mlflow server --serve-artifacts``): a local path there would be a path on
    whichever worker created the experiment, which the others cannot read."""
    client = configure(settings)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if not settings.mlflow_uri.startswith(("http://", "https://")):
        local = (Path(settings.mlflow_artifacts) / name).absolute()
        local.mkdir(parents=True, exist_ok=True)
        location = local.as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created by a concurrent process in the meantime
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def champion_version(client: MlflowClient, name: str) -> str | None:
    """The version that `name@champion` points to, or None when there is none yet."""
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION_ALIAS).version)
    except MlflowException as exc:
        # RESOURCE_DOES_NOT_EXIST (no such model) or a missing alias mean "no champion yet";
        # anything else (a broken database, a network error) must not be mistaken for it.
        missing_model = exc.error_code == "RESOURCE_DOES_NOT_EXIST"
        missing_alias = exc.error_code == "INVALID_PARAMETER_VALUE" and "alias" in str(exc)
        if missing_model or missing_alias:
            return None
        raise


def champion(settings: Settings) -> tuple[str, str] | None:
    """(version, model URI) of `settings.model_name@champion`, or None when there is none yet."""
    version = champion_version(configure(settings), settings.model_name)
    return None if version is None else (version, f"models:/{settings.model_name}/{version}")


def download_model_dir(model_uri: str, dst: Path | None = None) -> Path:
    """The Hugging Face directory inside a logged ranker pyfunc (`artifacts["model_dir"]`)."""
    from mlflow.models import Model

    dst = Path(dst or tempfile.mkdtemp(prefix="ranker-"))
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst)))
    flavor = Model.load(str(local)).flavors.get("python_function", {})
    artifacts = flavor.get("artifacts", {})
    if "model_dir" not in artifacts:
        raise InputError(f"{model_uri} is not a ranker pyfunc: it has no 'model_dir' artifact")
    return local / artifacts["model_dir"]["path"]


IDENTITY_FILE = ".registry-identity.json"  # in a cached model directory: what it was downloaded as


class VersionIdentity(TypedDict):
    """What the registry says a version is (what a cached copy of it was downloaded as)."""

    name: str
    version: str
    run_id: str
    source: str
    created: int  # ms since the epoch


def version_identity(client: MlflowClient, name: str, version: str) -> VersionIdentity:
    """What the registry says version `version` of `name` is: its run id, source and creation
    time. A recreated registry (a new `mlflow.db`) numbers its versions from 1 again, but never
    gives a version the run id (a random UUID) and creation time of an old one."""
    mv = client.get_model_version(name, str(version))
    return {"name": name, "version": str(mv.version), "run_id": mv.run_id or "", "source": mv.source or "",
            "created": mv.creation_timestamp}


def _key(identity: VersionIdentity) -> str:
    tail = identity["run_id"] or hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
    return f"{identity['version']}-{tail}"


def run_key(run_id: str) -> str:
    """`run-<run id>`: the name of what is derived from the model a finished training run logged
    (`runs:/<run id>/model`, never logged again: a re-run reuses the run): the candidate's anchor
    scores, computed when it is evaluated, serve its version when it is the champion."""
    return f"run-{run_id}"


def version_key(settings: Settings, version: str) -> str:
    """The name under which version `version`'s derived files (its anchor scores) are cached: the
    key of the run that logged it (`run_key`); `<version>-<hash>` for a version without a run. The
    version number alone would name another model once the registry is recreated."""
    identity = version_identity(configure(settings), settings.model_name, version)
    return run_key(identity["run_id"]) if identity["run_id"] else _key(identity)


def _digest(folder: Path) -> str:
    """sha256 over a directory's files (names and contents), the identity file left out."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != IDENTITY_FILE):
        h.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _cached(cache: Path, identity: VersionIdentity) -> bool:
    """`cache` holds what was downloaded for exactly this version, unchanged since."""
    try:
        recorded = json.loads((cache / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(recorded, dict) and recorded.get("identity") == identity
            and (cache / "config.json").is_file() and recorded.get("sha256") == _digest(cache))


def version_model_dir(settings: Settings, version: str) -> Path:
    """The Hugging Face directory of registered version `version`, downloaded once and cached
    under `<home>/models/<name>/<version>-<run id>`. On every use the registry's identity of
    the version (run id, source, creation time) and the files' sha256 are checked against what
    was recorded at download: a registry recreated since (its new version 1 is another model)
    or a damaged copy means a fresh download, never the old weights."""
    client = configure(settings)
    identity = version_identity(client, settings.model_name, version)
    cache = Path(settings.home) / "models" / settings.model_name / _key(identity)
    if _cached(cache, identity):
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=cache.parent))
    try:
        found = download_model_dir(f"models:/{settings.model_name}/{version}", staging)
        (found / IDENTITY_FILE).write_text(json.dumps({"identity": identity, "sha256": _digest(found)}, sort_keys=True))
        if cache.exists() and not _cached(cache, identity):
            shutil.rmtree(cache, ignore_errors=True)  # a damaged copy (never a complete one another process reads)
        try:
            os.replace(found, cache)  # whole directory at once: a concurrent reader never sees half
        except OSError:
            if not _cached(cache, identity):  # not another process's complete copy: a real error
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cache
