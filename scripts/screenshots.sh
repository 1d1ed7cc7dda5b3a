#!/usr/bin/env bash
# Screenshots of what a person sees: the Airflow grid of `search_ranker_hourly` and the MLflow model review.
#
#   scripts/screenshots.sh [OUT_DIR]        # default OUT_DIR: docs/screenshots
#
# Reads an INCREMENTAL_HOME that already holds DAG runs and registered versions (default: var/demo,
# what `make demo` leaves). Starts, on free ports of 127.0.0.1 only, the Airflow api-server (embedded
# default via scripts/airflow_env.sh, every user an admin so no login page is in the way), the MLflow UI
# and chromedriver; drives headless Chromium through them; stops everything it started on exit.
# Chromium and chromedriver come from Debian (`apt-get install chromium chromium-driver`, done here
# when /usr/bin/chromium is missing). The browser is kept off the network: every host name other than
# 127.0.0.1 fails to resolve and everything else goes to a dead proxy.
#
# Writes: airflow-grid.png, airflow-run.png, mlflow-model-versions.png, mlflow-model-version.png,
# mlflow-review-report.png, mlflow-review-chart.png. Exit 1 when a page did not show what it should
# (the PNG is still written: look at it).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/docs/screenshots}"
export INCREMENTAL_HOME="${INCREMENTAL_HOME:-$repo/var/demo}"
model="${INCREMENTAL_MODEL_NAME:-search-ranker}"
dag_id="search_ranker_hourly"

if [[ ! -f "$INCREMENTAL_HOME/mlflow.db" || ! -d "$INCREMENTAL_HOME/airflow" ]]; then
    echo "screenshots: $INCREMENTAL_HOME has no mlflow.db or airflow/ (run \`make demo\` first or set INCREMENTAL_HOME)" >&2
    exit 2
fi
if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then
    echo "screenshots: installing chromium and chromium-driver (Debian packages)"
    sudo_=""; [[ $(id -u) -eq 0 ]] || sudo_="sudo"
    $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium chromium-driver >/dev/null
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
airflow_port="$(free_port)"
mlflow_port="$(free_port)"
driver_port="$(free_port)"
while [[ "$mlflow_port" == "$airflow_port" ]]; do mlflow_port="$(free_port)"; done
while [[ "$driver_port" == "$airflow_port" || "$driver_port" == "$mlflow_port" ]]; do driver_port="$(free_port)"; done

# Airflow on the chosen port (overrides whatever the caller had), no login, plugin links to this MLflow.
export AIRFLOW__API__PORT="$airflow_port"
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$airflow_port"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$airflow_port/execution/"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
export INCREMENTAL_MLFLOW_UI_URL="http://127.0.0.1:$mlflow_port"
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true SCARF_ANALYTICS=false AIRFLOW__USAGE_DATA_COLLECTION__ENABLED=False
# shellcheck source=scripts/airflow_env.sh
source "$repo/scripts/airflow_env.sh"

work="$(mktemp -d "${TMPDIR:-/tmp}/screenshots.XXXXXX")"
pids=()
running_in_groups() {  # live processes in the groups this script started
    local groups=" ${pids[*]} "
    ps -e -o pid=,pgid=,stat= | while read -r pid pgid stat; do
        [[ "$groups" == *" $pgid "* && "$stat" != Z* ]] && echo "$pid"
    done
    return 0
}
stop_all() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for _ in $(seq 40); do  # up to 20 s for a clean exit; zombies do not count
        [[ -z "$(running_in_groups)" ]] && break
        sleep 0.5
    done
    for pid in $(running_in_groups); do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# Each server in its own process group (setsid), so stop_all ends it with everything it forked.
start() {
    local name="$1"; shift
    (cd "$work" && exec setsid "$@" >"$work/$name.log" 2>&1) &
    pids+=("$!")
}
start airflow airflow api-server --host 127.0.0.1 --port "$airflow_port" --workers 1
start mlflow mlflow ui --host 127.0.0.1 --port "$mlflow_port" --workers 1 \
    --backend-store-uri "sqlite:///$INCREMENTAL_HOME/mlflow.db" --artifacts-destination "$INCREMENTAL_HOME/mlartifacts"
start chromedriver chromedriver --port="$driver_port" --allowed-ips=127.0.0.1 --allowed-origins=http://127.0.0.1

mkdir -p "$out"
set +e
python - "$out" "$airflow_port" "$mlflow_port" "$driver_port" "$dag_id" "$model" "$work" <<'PY'
"""Wait for the servers, find what to show, and screenshot it through chromedriver (W3C WebDriver, stdlib only)."""
import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

out, airflow_port, mlflow_port, driver_port, dag_id, model, work = sys.argv[1:]
out, work = Path(out), Path(work)
AIRFLOW = f"http://127.0.0.1:{airflow_port}"
MLFLOW = f"http://127.0.0.1:{mlflow_port}"
DRIVER = f"http://127.0.0.1:{driver_port}"
WIDTH, HEIGHT = 1600, 1000


def http(method, url, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


START = time.monotonic()


def wait_up(name, url, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            print(f"screenshots: {name} up after {time.monotonic() - START:.0f}s")
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(2)
    log = (work / f"{name}.log").read_text(errors="replace")[-3000:]
    sys.exit(f"screenshots: {name} did not come up on {url} within {timeout}s\n--- {name}.log\n{log}")


wait_up("chromedriver", f"{DRIVER}/status", 60)
wait_up("mlflow", f"{MLFLOW}/health")
wait_up("airflow", f"{AIRFLOW}/api/v2/monitor/health")
print(f"screenshots: airflow on {AIRFLOW}, mlflow on {MLFLOW}")

# What to show: the champion version (else the newest), its run and experiment; a quarantined hour's run if any.
q = urllib.parse.quote
versions = http("GET", f"{MLFLOW}/api/2.0/mlflow/model-versions/search?max_results=200&filter="
                + q(f"name='{model}'")).get("model_versions", [])
if not versions:
    sys.exit(f"screenshots: the MLflow registry has no versions of {model!r}")
registered = http("GET", f"{MLFLOW}/api/2.0/mlflow/registered-models/get?name={q(model)}")["registered_model"]
aliases = {a["alias"]: a["version"] for a in registered.get("aliases", [])}
version = aliases.get("champion") or max(versions, key=lambda v: int(v["version"]))["version"]
run_id = next(v["run_id"] for v in versions if v["version"] == version)
experiment = http("GET", f"{MLFLOW}/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]["info"]["experiment_id"]
review = {f["path"] for f in http("GET", f"{MLFLOW}/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=review")
          .get("files", [])}
runs = http("GET", f"{AIRFLOW}/api/v2/dags/{dag_id}/dagRuns?order_by=-logical_date&limit=100").get("dag_runs", [])
if not runs:
    sys.exit(f"screenshots: Airflow has no runs of {dag_id}")
shown_run = next((r for r in runs if "QUARANTINED" in (r.get("note") or "")), runs[0])
print(f"screenshots: version {version} (run {run_id}, experiment {experiment}), airflow run {shown_run['dag_run_id']}")

# Headless Chromium through chromedriver, kept off the network.
args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
        "--lang=en-US", f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={work / 'chromium-profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=127.0.0.1:9"]
caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
    "binary": "/usr/bin/chromium", "args": args}}}}
session = http("POST", f"{DRIVER}/session", caps, timeout=120)["value"]["sessionId"]
S = f"{DRIVER}/session/{session}"


def js(script, *arguments):
    return http("POST", f"{S}/execute/sync", {"script": script, "args": list(arguments)})["value"]


def click(selector, text=None):
    """Click the first element matching selector (and, if given, whose text is text); True if there was one."""
    return js("const [sel, text] = arguments;"
              "const el = [...document.querySelectorAll(sel)].find(e => text === null || e.innerText.trim() === text);"
              "if (el) { el.click(); return true; } return false;", selector, text)


def mlflow_preferences():
    """What a person does once in a new browser: pick the "Model training" side bar, close the assistant."""
    http("POST", f"{S}/url", {"url": f"{MLFLOW}/#/models"}, timeout=120)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not click("[role=button]", "Model training"):
        time.sleep(1)
    time.sleep(2)  # the assistant opens itself on the first page load
    click('[data-component-id="mlflow.assistant.chat_panel.close"]')
    time.sleep(1)


def shot(name, url, must_show, ready="return true;", height=HEIGHT, timeout=90):
    """Open url afresh, wait until every string in must_show is on the page and ready() holds, save name.png."""
    cdp = f"{S}/goog/cdp/execute"
    http("POST", cdp, {"cmd": "Emulation.setDeviceMetricsOverride",
                       "params": {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False}})
    began = time.monotonic()
    http("POST", f"{S}/url", {"url": "about:blank"})  # a hash change alone would not reload the page
    http("POST", f"{S}/url", {"url": url}, timeout=120)
    deadline, missing, done = time.monotonic() + timeout, list(must_show), False
    while time.monotonic() < deadline:
        text = js("return document.body ? document.body.innerText : '';") or ""
        missing = [s for s in must_show if s not in text]
        busy = js("return document.querySelectorAll('.chakra-spinner, [data-testid=loading-spinner], "
                  "[aria-busy=true]').length;")
        done = not missing and js(ready)
        if done and not busy:
            break
        time.sleep(1)
    click('[data-component-id="mlflow.assistant.chat_panel.close"]')  # in case it opened again
    time.sleep(2)  # charts and transitions settle
    png = base64.b64decode(http("POST", cdp, {"cmd": "Page.captureScreenshot",
                                              "params": {"format": "png"}})["value"]["data"])
    (out / f"{name}.png").write_bytes(png)
    ok = bool(done)
    print(f"screenshots: {'ok  ' if ok else 'FAIL'} {out / (name + '.png')}  {url}  ({time.monotonic() - began:.0f}s"
          + (f", still loading: {busy}" if busy else "") + ")"
          + ("" if ok else f"  (never showed: {missing or 'the ready check'})"))
    return ok


IMAGE_SHOWN = "return [...document.images].some(i => i.complete && i.naturalWidth >= 300);"
results = []
try:
    runs_in_grid = f"return document.querySelectorAll('a[href*=\"/dags/{dag_id}/runs/\"]').length >= {min(len(runs), 2)};"
    results.append(shot("airflow-grid", f"{AIRFLOW}/dags/{dag_id}", [dag_id, "publish_champion"], ready=runs_in_grid))
    results.append(shot("airflow-run", f"{AIRFLOW}/dags/{dag_id}/runs/{q(shown_run['dag_run_id'], safe='')}",
                        [dag_id, "publish_champion"]))
    mlflow_preferences()
    results.append(shot("mlflow-model-versions", f"{MLFLOW}/#/models/{q(model)}", [model, f"Version {version}"]))
    results.append(shot("mlflow-model-version", f"{MLFLOW}/#/models/{q(model)}/versions/{version}",
                        [model, f"Version {version}"]))
    base = f"{MLFLOW}/#/experiments/{experiment}/runs/{run_id}/artifacts"
    if "review/report.md" in review:
        results.append(shot("mlflow-review-report", f"{base}/review/report.md", ["review/report.md", "Gate checks"]))
    chart = next((f"review/{c}" for c in ("r_matrix.png", "forgetting_per_category.png", "metric_history.png")
                  if f"review/{c}" in review), None)
    if chart:
        results.append(shot("mlflow-review-chart", f"{base}/{chart}", [chart], ready=IMAGE_SHOWN))
    if len(review) == 0:
        print(f"screenshots: run {run_id} has no review/ artifacts; no review screenshots")
finally:
    try:
        http("DELETE", S)
    except Exception:  # noqa: BLE001 - chromedriver's process group is stopped by the shell anyway
        pass
sys.exit(0 if all(results) else 1)
PY
rc=$?
set -e
echo "screenshots: files in $out"
ls -1 "$out"/*.png 2>/dev/null || true
exit "$rc"
