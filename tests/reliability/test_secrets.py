"""No secret printed, ever (issue 20, defects 1 and 4): a password in a URL is hidden in every
message, log line and HTTP answer, by one function (`incremental.errors.redact_url`).

The failing run: an MLflow server that answers its health check and then nothing (up at
start-up, down after it), reached through a URL with a password, and an alert webhook with a
password on a local port where nothing listens. Everything the run shows (stdout, stderr, the
files under its home, serve's /reload answer and log, the alert logs) is searched for the secrets.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import assert_clean_error, cli, cli_env, closed_port

MLFLOW_SECRET = "S3cretPass"
HOOK_SECRET = "HookS3cret"
SECRETS = (MLFLOW_SECRET, HOOK_SECRET)


class _HealthOnly(BaseHTTPRequestHandler):
    """An MLflow server that passed its health check and died: /health answers, the rest hangs up."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if self.path.rstrip("/").endswith("/health"):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")
        else:
            self.close_connection = True  # no answer: the client sees the connection dropped

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dying_mlflow() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HealthOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://ops:{MLFLOW_SECRET}@127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def _files_with_secrets(home: Path) -> list[str]:
    found = []
    for path in home.rglob("*") if home.exists() else ():
        if path.is_file() and any(s.encode() in path.read_bytes() for s in SECRETS):
            found.append(str(path))
    return found


def test_a_failing_run_shows_no_password_anywhere(fresh_home: Path, dying_mlflow: str) -> None:
    webhook = f"http://alerts:{HOOK_SECRET}@127.0.0.1:{closed_port()}/hook"
    env = cli_env(fresh_home, INCREMENTAL_MLFLOW_URI=dying_mlflow, INCREMENTAL_ALERT_WEBHOOK=webhook,
                  MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    outputs = []
    for args in (["-v", "history"], ["promote", "--version", "1", "--reason", "reviewed by a person"],
                 ["-v", "serve", "--port", str(closed_port())]):
        result = cli(env, *args, timeout=300)
        line = assert_clean_error(result, "MLflow", "ops:***@127.0.0.1", hidden=SECRETS)
        outputs.append((args, result.stdout + result.stderr, line))
    for args, text, _ in outputs:
        assert not _leaks(text), (args, text)
    assert not _files_with_secrets(fresh_home)


def test_serve_reload_answer_and_log_hide_the_password(home: Path, dying_mlflow: str,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    from fastapi.testclient import TestClient

    from incremental.config import load_settings
    from incremental.serving.server import ChampionHolder, create_app

    monkeypatch.setenv("INCREMENTAL_MLFLOW_URI", dying_mlflow)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(ChampionHolder(load_settings()))) as client:
        answer = client.post("/reload")
    assert answer.status_code == 500
    assert "ops:***@127.0.0.1" in answer.json()["error"]
    assert not _leaks(answer.text), answer.text
    assert "reload failed" in caplog.text
    assert not _leaks(caplog.text), caplog.text


def test_alert_webhook_failures_hide_the_password(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """The drift alert and the Airflow failure callback both POST to the webhook; one that cannot
    be reached is logged with its password hidden, and never fails the caller."""
    from incremental.config import load_settings
    from incremental.judge import drift

    webhook = f"http://alerts:{HOOK_SECRET}@127.0.0.1:{closed_port()}/hook"
    monkeypatch.setenv("INCREMENTAL_ALERT_WEBHOOK", webhook)
    caplog.set_level(logging.INFO)
    settings = load_settings()
    drift.alert(settings, "alert", f"MLflow at http://ops:{MLFLOW_SECRET}@host failed")

    pytest.importorskip("airflow")
    from incremental import notifier

    class TI:
        dag_id, task_id, run_id, try_number = "search_ranker_hourly", "register", "manual__x", 1

    for logger in (notifier.log, drift.log):  # importing Airflow may have replaced the root logger's handlers
        logger.addHandler(caplog.handler)
    notifier.FailureAlert()({"ti": TI(), "data_interval_start": datetime(2026, 1, 1, 5, tzinfo=UTC),
                             "exception": RuntimeError(f"API request to http://ops:{MLFLOW_SECRET}@host/api failed")})
    for logger in (notifier.log, drift.log):
        logger.removeHandler(caplog.handler)
    assert "ALERT search-ranker: search_ranker_hourly.register failed" in caplog.text
    assert caplog.text.count("could not POST the alert to http://alerts:***@127.0.0.1") >= 2
    assert "alerts:***@127.0.0.1" in caplog.text
    assert not _leaks(caplog.text), caplog.text
    assert not _files_with_secrets(home)
    alerts = (settings.lake / "_drift" / "alerts.jsonl").read_text()
    assert json.loads(alerts.splitlines()[-1])["message"] == "MLflow at http://ops:***@host failed"


def test_redact_url_hides_every_password_in_a_text() -> None:
    from incremental.errors import redact_url

    text = ("MLflow at http://ops:***@host: API request to http://ops:S3cretPass@host:5000/api/2.0/x failed; "
            "warehouse 'postgresql+psycopg://etl:p@ss:w0rd@db/x', hook https://alerts:HookS3cret@h.example/a?b=1 "
            "and postgresql://postgres@127.0.0.1/test (no password) at 10:30 for user@example.com")
    shown = redact_url(text)
    assert not _leaks(shown) and "p@ss" not in shown and "w0rd" not in shown
    assert "http://ops:***@host:5000/api/2.0/x" in shown
    assert "postgresql+psycopg://etl:***@db/x" in shown
    assert "https://alerts:***@h.example/a?b=1" in shown
    assert "postgresql://postgres@127.0.0.1/test" in shown and "10:30 for user@example.com" in shown
    assert redact_url("sqlite:////tmp/var/mlflow.db") == "sqlite:////tmp/var/mlflow.db"


class _Recorder(BaseHTTPRequestHandler):
    received: list[tuple[str, str | None, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, self.headers.get("Authorization"), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_webhook_with_a_password_gets_the_alert_with_basic_auth(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib takes `user:password@` for part of the host name: the alert never arrived."""
    import base64

    from incremental.config import load_settings
    from incremental.judge import drift

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("INCREMENTAL_ALERT_WEBHOOK", f"http://alerts:{HOOK_SECRET}@127.0.0.1:{server.server_address[1]}/hook")
        drift.alert(load_settings(), "page", "a person must look")
    finally:
        server.shutdown()
        server.server_close()
    [(path, auth, body)] = _Recorder.received
    assert path == "/hook" and body["level"] == "page" and body["message"] == "a person must look"
    assert auth == "Basic " + base64.b64encode(f"alerts:{HOOK_SECRET}".encode()).decode()


# --- defect 4: a webhook without a scheme ---------------------------------------------------------
@pytest.mark.parametrize("webhook", ["hooks.example.com/services/T0/B0", "ftp://hooks.example.com/x", "http://"])
def test_a_webhook_that_is_not_an_http_url_is_refused_when_settings_load(fresh_home: Path, webhook: str) -> None:
    result = cli(cli_env(fresh_home, INCREMENTAL_ALERT_WEBHOOK=webhook), "history", timeout=300)
    assert_clean_error(result, "INCREMENTAL_ALERT_WEBHOOK", webhook)


def test_an_alert_that_cannot_be_posted_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    from incremental.judge import drift

    caplog.set_level(logging.WARNING)
    post = getattr(drift, "post_alert", getattr(drift, "_post", None))  # `_post` before the fix
    post("hooks.example.com/services/T0/B0", {"message": "x"})  # raised ValueError: unknown url type
    assert "could not POST the alert" in caplog.text


def test_an_airflow_task_failing_on_mlflow_logs_no_password(caplog: pytest.LogCaptureFixture) -> None:
    """MLflow's own error repeats the tracking URL: the task's error and its logged traceback hide
    the password, and the task is still retried (MLflow may come back)."""
    import traceback

    pytest.importorskip("airflow")
    from mlflow.exceptions import MlflowException

    from incremental.errors import IncrementalError

    dags = str(Path(__file__).resolve().parents[2] / "dags")
    sys.path.insert(0, dags)  # as the dag-processor and the tasks import it: from the dags folder
    try:
        import search_ranker_common as common
    finally:
        sys.path.remove(dags)

    @common.fail_fast
    def register() -> None:
        raise MlflowException(f"API request to http://ops:{MLFLOW_SECRET}@127.0.0.1:5000/api/2.0/x failed")

    common.log.addHandler(caplog.handler)  # importing Airflow may have replaced the root logger's handlers
    with pytest.raises(IncrementalError) as raised:
        register()
    assert raised.value.retryable
    assert "http://ops:***@127.0.0.1:5000" in str(raised.value)
    assert "API request to" in caplog.text
    common.log.removeHandler(caplog.handler)
    assert not _leaks("".join(traceback.format_exception(raised.value)) + caplog.text)


def test_serve_reload_fails_fast_while_the_registry_is_down(home: Path, dying_mlflow: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A /reload while the registry answers nothing useful: a 500 within seconds (it took 246 s with
    MLflow's default retries), and the replica keeps serving what it had (issue 20, defect 3)."""
    import time

    from fastapi.testclient import TestClient

    from incremental.config import load_settings
    from incremental.runtime import SERVING_REGISTRY_RETRIES, prepare_process
    from incremental.serving.server import ChampionHolder, create_app

    monkeypatch.setenv("INCREMENTAL_MLFLOW_URI", dying_mlflow)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    prepare_process(serving=True)  # what `incremental serve` does first (the CLI's main)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == str(SERVING_REGISTRY_RETRIES)
    with TestClient(create_app(ChampionHolder(load_settings()))) as client:
        began = time.monotonic()
        answer = client.post("/reload")
        took = time.monotonic() - began
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT")
    assert answer.status_code == 500 and took < 60, (answer.status_code, took)
