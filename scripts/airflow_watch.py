"""Follow the demo's backfill through the Airflow REST API (stdlib only; used by scripts/demo.sh).

    python scripts/airflow_watch.py wait-dag DAG_ID [--service NAME=PID:LOG ...]
        waits until the api-server answers and the dag-processor has parsed DAG_ID
    python scripts/airflow_watch.py backfill DAG_ID [--service NAME=PID:LOG ...]
        follows the DAG's latest backfill until it completes: one block per hour as its run ends
        (duration, the run note: approved / rejected / quarantined, a drift declared, the catch-up
        retrain), a line a minute while a run goes on (which task runs), the log tail of a task that
        fails. Exits 1 when a run fails, a service dies or the time is up.

Reads the environment scripts/airflow_env.sh sets: AIRFLOW__API__BASE_URL, the simple auth manager's
user (AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS) and passwords file. Each --service is a background
process of the demo: when it exits, the watch stops and shows the tail of its log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime

POLL_S = 5.0
HEARTBEAT_S = 60.0
UNREACHABLE_S = 300.0
FINISHED = {"success", "failed"}
# the lines today's task logs carry for what the run note does not say (the `banner` of the DAG's tasks)
BANNERS = {
    "monitor": re.compile(r"^DRIFT DECLARED at \S+: .*$", re.M),
    "catch_up": re.compile(r"^CATCH-UP (?:APPROVED|REJECTED) .*$", re.M),
}


class Api:
    def __init__(self) -> None:
        self.base = os.environ.get("AIRFLOW__API__BASE_URL", "http://127.0.0.1:8080").rstrip("/")
        users = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
        self.user = users.split(",")[0].split(":")[0]
        self.passwords_file = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", "")
        self.token: str | None = None

    def _request(self, method: str, url: str, body: dict | None, headers: dict) -> object:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json", "Accept": "application/json",
                                                  **headers})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def _login(self) -> None:
        with open(self.passwords_file) as f:
            password = json.load(f)[self.user]
        reply = self._request("POST", f"{self.base}/auth/token", {"username": self.user, "password": password}, {})
        self.token = reply["access_token"]

    def get(self, path: str, **params: object) -> object:
        url = f"{self.base}/api/v2/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        if self.token is None:
            self._login()
        try:
            return self._request("GET", url, None, {"Authorization": f"Bearer {self.token}"})
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                raise
            self._login()  # the token expired
            return self._request("GET", url, None, {"Authorization": f"Bearer {self.token}"})


class Services:
    """The demo's background processes: NAME=PID:LOG."""

    def __init__(self, specs: list[str]) -> None:
        self.items = []
        for spec in specs:
            name, rest = spec.split("=", 1)
            pid, log = rest.split(":", 1)
            self.items.append((name, int(pid), log))

    def check(self) -> None:
        for name, pid, log in self.items:
            try:
                os.kill(pid, 0)
                # a zombie (exited, not yet reaped by the demo's shell) is dead too
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        raise ProcessLookupError
            except (ProcessLookupError, FileNotFoundError):
                fail(f"the {name} (pid {pid}) has exited; the end of {log}:\n{tail_file(log)}")


def tail_file(path: str, lines: int = 40) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as exc:
        return f"({exc})"


def fail(message: str) -> None:
    print(f"FAILED: {message}", flush=True)
    sys.exit(1)


def say(line: str) -> None:
    print(line, flush=True)


def hhmm(iso: str | None) -> str:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).strftime("%Y-%m-%dT%H:%MZ") if iso else "?"


def seconds(start: str | None, end: str | None = None) -> float:
    if not start:
        return 0.0
    t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
    t1 = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else datetime.now(t0.tzinfo)
    return (t1 - t0).total_seconds()


def human(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def wait_dag(api: Api, services: Services, dag_id: str, timeout: float) -> None:
    started = time.monotonic()
    up = False
    while time.monotonic() - started < timeout:
        services.check()
        try:
            api.get(f"dags/{dag_id}")
            say(f"api-server up and {dag_id} parsed after {human(time.monotonic() - started)}")
            return
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            if not up:
                up = True
                say(f"api-server up after {human(time.monotonic() - started)}; waiting for the dag-processor")
            errors = api.get("importErrors", limit=100)["import_errors"]
            if errors:
                fail("the DAGs folder does not parse:\n" + "\n".join(f"{e['filename']}\n{e['stack_trace']}"
                                                                    for e in errors))
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # not listening yet
        time.sleep(2)
    fail(f"{dag_id} not parsed after {timeout:.0f}s")


def log_events(api: Api, dag_id: str, run_id: str, task_id: str, try_number: int) -> list[str]:
    """The task try's log as text lines (the structured log's events; errors with their traceback)."""
    quoted = urllib.parse.quote(run_id, safe="")
    try:
        reply = api.get(f"dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/logs/{try_number}", full_content="true")
    except urllib.error.HTTPError as exc:
        return [f"(no log: HTTP {exc.code})"]
    lines: list[str] = []
    for item in reply.get("content") or []:
        if isinstance(item, str):
            lines += item.splitlines()
            continue
        stamp = str(item.get("timestamp") or "")[11:19]
        level = str(item.get("level") or "").upper()
        event = str(item.get("event", ""))
        head, *rest = event.splitlines() or [""]
        lines.append(" ".join(x for x in (f"[{stamp}]" if stamp else "", level, head) if x))
        lines += rest
        for error in item.get("error_detail") or []:
            for frame in (error.get("frames") or [])[-3:]:
                lines.append(f"  {frame.get('filename')}:{frame.get('lineno')} in {frame.get('name')}")
            lines.append(f"{error.get('exc_type')}: {error.get('exc_value')}")
    return lines


def banner_lines(api: Api, dag_id: str, run_id: str, tis: dict[str, dict]) -> list[str]:
    found = []
    for task_id, pattern in BANNERS.items():
        ti = tis.get(task_id)
        if ti and ti["state"] == "success":
            text = "\n".join(log_events(api, dag_id, run_id, task_id, ti["try_number"]))
            found += pattern.findall(text)[:1]
    return found


def task_instances(api: Api, dag_id: str, run_id: str) -> dict[str, dict]:
    quoted = urllib.parse.quote(run_id, safe="")
    return {ti["task_id"]: ti for ti in api.get(f"dags/{dag_id}/dagRuns/{quoted}/taskInstances",
                                                  limit=100)["task_instances"]}


class Follower:
    """What has been said about the backfill's runs so far; `poll()` says what is new."""

    def __init__(self, api: Api, dag_id: str, backfill: dict) -> None:
        self.api, self.dag_id, self.backfill = api, dag_id, backfill
        self.started = time.monotonic()
        self.last_output = time.monotonic()
        self.announced: set[str] = set()
        self.reported: set[str] = set()
        self.retries_shown: set[tuple[str, str, int]] = set()

    def say(self, line: str) -> None:
        say(line)
        self.last_output = time.monotonic()

    def quiet_for(self) -> float:
        return time.monotonic() - self.last_output

    def poll(self) -> bool:
        """One look at the backfill and its runs; True once it has completed and every run was reported."""
        api, dag_id = self.api, self.dag_id
        backfill = api.get(f"backfills/{self.backfill['id']}")
        runs = api.get(f"dags/{dag_id}/dagRuns", run_type="backfill", order_by="logical_date", limit=100,
                       logical_date_gte=backfill["from_date"], logical_date_lte=backfill["to_date"])["dag_runs"]
        for n, run in enumerate(runs, 1):
            run_id, state = run["dag_run_id"], run["state"]
            if run_id in self.reported:
                continue
            if run_id not in self.announced and (run["start_date"] or state in FINISHED):
                self.announced.add(run_id)
                self.say(f"-- hour {hhmm(run['data_interval_start'])} (backfill run {n}/{len(runs)}, "
                         f"started by the scheduler at {(run['start_date'] or '?')[11:19]} UTC)")
            if state in FINISHED:
                report_run(api, dag_id, run)  # exits on a failed run
                self.reported.add(run_id)
                self.last_output = time.monotonic()
            elif run["start_date"]:
                self.running(run)
        if backfill["completed_at"] and len(self.reported) == len(runs):
            self.say(f"backfill {backfill['id']} completed: {len(runs)} runs in "
                     f"{human(time.monotonic() - self.started)}")
            return True
        if self.quiet_for() >= HEARTBEAT_S and len(self.announced) == len(self.reported):
            self.say(f"   ... waiting for the scheduler to start the next run ({len(self.reported)}/{len(runs)} done)")
        return False

    def running(self, run: dict) -> None:
        """A run under way: a failed try that Airflow retries, and a line a minute of what runs."""
        run_id = run["dag_run_id"]
        tis = task_instances(self.api, self.dag_id, run_id)
        for ti in tis.values():
            key = (run_id, ti["task_id"], ti["try_number"])
            if ti["state"] == "up_for_retry" and key not in self.retries_shown:
                self.retries_shown.add(key)
                self.say(f"   task {ti['task_id']} failed (try {ti['try_number']} of {ti['max_tries'] + 1}); "
                         "Airflow retries it. The end of its log:")
                self.say(indent(log_events(self.api, self.dag_id, run_id, ti["task_id"], ti["try_number"])[-15:]))
        if self.quiet_for() >= HEARTBEAT_S:
            active = [f"{t['task_id']} ({human(seconds(t['start_date']))})" for t in tis.values()
                      if t["state"] == "running"]
            waiting = [t["task_id"] for t in tis.values() if t["state"] in ("queued", "up_for_retry")]
            self.say(f"   ... {human(seconds(run['start_date']))} into the hour: "
                     + (f"running {', '.join(active)}" if active else "between tasks")
                     + (f"; waiting: {', '.join(waiting)}" if waiting else ""))


def follow_backfill(api: Api, services: Services, dag_id: str, timeout: float) -> None:
    backfills = api.get("backfills", dag_id=dag_id, order_by="-id", limit=1)["backfills"]
    if not backfills:
        fail(f"no backfill of {dag_id}")
    backfill = backfills[0]
    say(f"backfill {backfill['id']}: {hhmm(backfill['from_date'])} ... {hhmm(backfill['to_date'])}, "
        f"max_active_runs {backfill['max_active_runs']}")
    follower = Follower(api, dag_id, backfill)
    unreachable_since: float | None = None
    while True:
        services.check()
        try:
            if follower.poll():
                return
            unreachable_since = None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:  # a busy api-server: try again
            unreachable_since = unreachable_since or time.monotonic()
            if time.monotonic() - unreachable_since > UNREACHABLE_S:
                fail(f"the api-server has not answered for {UNREACHABLE_S:.0f}s: {exc}")
        if time.monotonic() - follower.started > timeout:
            fail(f"the backfill did not complete in {timeout:.0f}s")
        time.sleep(POLL_S)


def indent(lines: list[str]) -> str:
    return "\n".join(f"   | {line}" for line in lines)


def report_run(api: Api, dag_id: str, run: dict) -> None:
    run_id = run["dag_run_id"]
    tis = task_instances(api, dag_id, run_id)
    took = human(seconds(run["start_date"], run["end_date"]))
    if run["state"] != "success":
        broken = [t for t in tis.values() if t["state"] == "failed"] or \
                 [t for t in tis.values() if t["state"] not in ("success", "skipped")]
        for ti in broken[:2]:
            say(f"   task {ti['task_id']}: {ti['state']} (try {ti['try_number']}); the end of its log:")
            say(indent(log_events(api, dag_id, run_id, ti["task_id"], ti["try_number"])[-40:]))
        fail(f"run {run_id} of {dag_id} ended {run['state']} after {took}")
    note = (run.get("note") or "").splitlines()
    say(f"   {run['state']} in {took}: {note[0] if note else '(no run note)'}")
    for line in banner_lines(api, dag_id, run_id, tis):
        say(f"   {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["wait-dag", "backfill"])
    parser.add_argument("dag_id")
    parser.add_argument("--service", action="append", default=[], help="NAME=PID:LOG, a process that must stay up")
    parser.add_argument("--timeout", type=float, default=None, help="seconds (wait-dag 600, backfill 4 hours)")
    args = parser.parse_args()
    api, services = Api(), Services(args.service)
    try:
        if args.what == "wait-dag":
            wait_dag(api, services, args.dag_id, args.timeout or 600)
        else:
            follow_backfill(api, services, args.dag_id, args.timeout or 4 * 3600)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
