"""The DAG files: they import cleanly, are documented and safe to parse, and wire what issue 5 asks for."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
PLUGINS = REPO / "plugins"
HEAVY = ("torch", "mlflow", "pandas", "transformers", "great_expectations")
DAG_IDS = {"search_ranker_hourly", "search_ranker_full_retrain", "search_ranker_benchmark", "search_ranker_deploy"}


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("airflow")
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
    })
    return home


@pytest.fixture(scope="module")
def dagbag(airflow_home: Path):
    # The dag-processor's own loader: it puts the bundle (the dags folder) on sys.path.
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS, bundle_name="dags-folder")


def test_dagbag_imports_without_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == DAG_IDS


def test_every_dag_has_tags_retries_and_docs(dagbag) -> None:
    from incremental.notifier import FailureAlert

    for dag in dagbag.dags.values():
        assert dag.tags and "search-ranker" in dag.tags, dag.dag_id
        assert dag.doc_md and dag.doc_md.strip().startswith(f"# {dag.dag_id}"), dag.dag_id
        assert dag.max_active_runs == 1, dag.dag_id
        for task in dag.tasks:
            assert task.doc_md, f"{dag.dag_id}.{task.task_id} has no docs"
            assert task.execution_timeout is not None, f"{dag.dag_id}.{task.task_id} has no time-out"
            callbacks = task.on_failure_callback if isinstance(task.on_failure_callback, list) else [task.on_failure_callback]
            assert any(isinstance(c, FailureAlert) for c in callbacks), f"{dag.dag_id}.{task.task_id} has no failure alert"
            if task.task_id not in ("check_validated", "publish_champion", "publish_catch_up"):  # decisions, not flaky I/O
                assert task.retries >= 1 and task.retry_exponential_backoff >= 2, f"{dag.dag_id}.{task.task_id}"


def test_hourly_dag_wiring(dagbag) -> None:
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.interval import CronDataIntervalTimetable

    dag = dagbag.dags["search_ranker_hourly"]
    timetable = coerce_to_core_timetable(dag.timetable)
    assert isinstance(timetable, CronDataIntervalTimetable)
    assert timetable.summary == "0 * * * *"
    # one run covers exactly the hour that just closed
    import pendulum

    interval = timetable.infer_manual_data_interval(run_after=pendulum.datetime(2026, 1, 1, 6, 20))
    assert (interval.start, interval.end) == (pendulum.datetime(2026, 1, 1, 5), pendulum.datetime(2026, 1, 1, 6))
    assert dag.max_active_runs == 1
    train = dag.get_task("train")
    assert (train.queue, train.pool) == ("gpu", "gpu")
    assert (dag.get_task("catch_up").queue, dag.get_task("catch_up").pool) == ("gpu", "gpu")
    chain = ["extract", "validate", "check_validated", "monitor", "train", "evaluate", "register", "publish_champion"]
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)
    # an ordinary promotion is published without waiting for the catch-up (a GPU task); the
    # catch-up, after register, announces its own champion
    assert "catch_up" not in dag.get_task("publish_champion").get_flat_relative_ids(upstream=True)
    assert dag.get_task("register").downstream_task_ids >= {"publish_champion", "catch_up"}
    assert dag.get_task("catch_up").downstream_task_ids == {"publish_catch_up"}
    assert {o.uri for o in dag.get_task("extract").outlets} == {"lake://search-ranker/search_logs"}
    for publish in ("publish_champion", "publish_catch_up"):
        assert {o.uri for o in dag.get_task(publish).outlets} == {"mlflow://models/search-ranker"}
    full = dagbag.dags["search_ranker_full_retrain"].get_task("full_retrain")
    assert (full.queue, full.pool) == ("gpu", "gpu")


def test_deploy_dag_runs_on_each_new_champion(dagbag) -> None:
    """Scheduled on the asset the hourly and full-retrain DAGs' publish_champion task emits."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.simple import AssetTriggeredTimetable

    dag = dagbag.dags["search_ranker_deploy"]
    timetable = coerce_to_core_timetable(dag.timetable)
    assert isinstance(timetable, AssetTriggeredTimetable)
    published = {o.uri for o in dagbag.dags["search_ranker_hourly"].get_task("publish_champion").outlets}
    assert published == {"mlflow://models/search-ranker"}
    assert {a.uri for a in dag.timetable.asset_condition.objects} == published
    assert {o.uri for o in dagbag.dags["search_ranker_full_retrain"].get_task("publish_champion").outlets} == published
    assert [t.task_id for t in dag.tasks] == ["reload_serving"]


def _resolve(dag, conf: dict) -> dict:
    """What Airflow does with a run's conf: merge it over the DAG's params and validate."""
    params = copy.deepcopy(dag.params)
    params.update(conf)
    return params.validate()


def test_params_reject_force_promote_without_a_reason(dagbag) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    dag = dagbag.dags["search_ranker_hourly"]
    assert _resolve(dag, {})["force_promote"] is None  # scheduled runs: the normal gate
    for bad in ({"force_promote": True}, {"force_promote": ""}, {"force_promote": "because"}):
        with pytest.raises(ParamValidationError):
            _resolve(dag, bad)
    ok = _resolve(dag, {"force_promote": "rollback after incident 42", "dry_run": True, "max_steps": 50})
    assert ok["force_promote"] == "rollback after incident 42" and ok["dry_run"] is True
    for bad in ({"learning_rate": 0}, {"learning_rate": 1.0}, {"max_steps": 0}, {"replay_fraction": 1.5},
                {"dry_run": "yes"}):
        with pytest.raises(ParamValidationError):
            _resolve(dag, bad)
    bench = dagbag.dags["search_ranker_benchmark"]
    with pytest.raises(ParamValidationError):  # a new anchor set needs a reason
        _resolve(bench, {"window_start": "2026-01-01T00:00:00+00:00", "window_end": "2026-01-02T00:00:00+00:00"})


PARSE_PROBE = r"""
import json, socket, sys
def refuse(*args, **kwargs):
    raise AssertionError(f"network access while parsing DAG files: {args!r}")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
from airflow.dag_processing.dagbag import BundleDagBag
dags = sys.argv[1]
bag = BundleDagBag(dag_folder=dags, bundle_path=dags, bundle_name="dags-folder")
heavy = [m for m in ("torch", "mlflow", "pandas", "transformers", "great_expectations") if m in sys.modules]
light = {"incremental.config", "incremental.errors", "incremental.data", "incremental.data.storage",  # config and what it imports
         "incremental.notifier",  # the failure alert
         "incremental.hours",  # the hour helpers (datetime only): the run's hour is checked at the edge
         "incremental.handover"}  # the typed hand-overs the tasks convert their XComs to (dataclasses only)
pipeline = [m for m in sys.modules if m.startswith("incremental.") and m not in light]
print("RESULT " + json.dumps({"errors": {k: v[-300:] for k, v in bag.import_errors.items()},
                              "dags": sorted(bag.dag_ids), "heavy": heavy, "pipeline": pipeline}))
"""


def test_parsing_opens_no_connection_and_imports_nothing_heavy(airflow_home: Path) -> None:
    """In a fresh interpreter with sockets refused: the DAG files parse, and pull in no ML library."""
    env = {**os.environ, "INCREMENTAL_WAREHOUSE_URL": "postgresql+psycopg://nobody@10.255.255.1:5432/none",
           "AIRFLOW_CONN_SEARCH_WAREHOUSE": "postgres://nobody@10.255.255.1:5432/none"}
    out = subprocess.run([sys.executable, "-c", PARSE_PROBE, str(DAGS)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["errors"] == {}
    assert set(result["dags"]) == DAG_IDS
    assert result["heavy"] == [], f"parsing the DAG files imported {result['heavy']}"
    assert result["pipeline"] == [], f"parsing the DAG files imported {result['pipeline']}"


def test_plugin_loads_and_links(airflow_home: Path) -> None:
    sys.path.insert(0, str(PLUGINS))
    try:
        import search_ranker_plugin as plugin
    finally:
        sys.path.remove(str(PLUGINS))
    from airflow.plugins_manager import AirflowPlugin

    assert issubclass(plugin.SearchRankerPlugin, AirflowPlugin)
    instance = plugin.SearchRankerPlugin()
    assert {link.name for link in instance.global_operator_extra_links} == {"MLflow run", "Model version", "GX data docs"}
    assert any(v["destination"] == "nav" and "#/models/search-ranker" in v["href"] for v in instance.external_views)
    assert plugin.model_version_link({"version": "7"}).endswith("/#/models/search-ranker/versions/7")
    assert plugin.mlflow_run_link({"mlflow_run_url": "http://m/#/experiments/1/runs/abc"}) == "http://m/#/experiments/1/runs/abc"
    assert plugin.mlflow_run_link({"decision": "approved"}) is None
    lake = Path(os.environ.get("INCREMENTAL_HOME", "var")).absolute() / "lake"
    docs = lake / "quarantine/search_logs/dt=2026-01-01/hour=05/abc/data_docs/index.html"
    assert plugin.data_docs_link({"data_docs": str(docs)}, "http://af") == (
        "http://af/search-ranker/data-docs/quarantine/search_logs/dt%3D2026-01-01/hour%3D05/abc/data_docs/index.html")
    assert plugin.data_docs_link({"data_docs": None}) is None
    key = "quarantine/search_logs/dt=2026-01-01/hour=05/abc/data_docs/index.html"  # what tasks hand over
    assert plugin.data_docs_link({"data_docs": key}, "http://af") == plugin.data_docs_link({"data_docs": str(docs)},
                                                                                            "http://af")
    quarantined = {"status": "quarantined", "hour": "2026-01-01T05:00Z", "summary": "null query", "lake_key": "q"}
    assert "QUARANTINED" in plugin.run_note(quarantined, None)
    assert plugin.run_note({"status": "validated"}, {"decision": "rejected", "reasons": ["auc"], "hour": "h"}).startswith(
        "Hour h: rejected (mode normal")
    adapted = plugin.run_note({"status": "validated"},
                              {"decision": "rejected", "reasons": ["r"], "hour": "h", "mode": "adapt", "version": "5",
                               "changed_slices": ["paint"], "drift_evidence": ["paint: champion AUC 0.3"]},
                              {"decision": "approved", "version": "6", "champion": "6"})
    assert "mode adapt" in adapted and "changed (not protected): paint" in adapted and "Drift: paint" in adapted
    assert "Catch-up retrain: approved (version 6, champion 6)" in adapted
    why = "hour h is already in champion v2's training data (trained through t): not trained again"
    assert plugin.run_note({"status": "validated"}, {"decision": "skipped", "reasons": [why], "hour": "h",
                                                     "version": None, "champion": "2"}).startswith(
        f"Hour h: skipped (mode normal, version None, champion 2). {why}")


def test_alert_line_and_champion_event() -> None:
    sys.path.insert(0, str(DAGS))
    try:
        import search_ranker_common as common
    finally:
        sys.path.remove(str(DAGS))
    from airflow.sdk import BaseNotifier
    from airflow.sdk.exceptions import AirflowSkipException

    from incremental.notifier import FailureAlert, alert_line

    assert isinstance(common.default_args()["on_failure_callback"], FailureAlert)
    assert issubclass(FailureAlert, BaseNotifier)  # Airflow 3's notifier API, not a hand-written callback

    class TI:
        dag_id, task_id, run_id, try_number = "search_ranker_hourly", "train", "scheduled__x", 4

    line = alert_line({"ti": TI(), "data_interval_start": datetime(2026, 1, 1, 5, tzinfo=UTC),
                       "exception": RuntimeError("CUDA out of memory\nat step 3")})
    assert line == ("ALERT search-ranker: search_ranker_hourly.train failed for hour 2026-01-01T05:00Z "
                    "(run scheduled__x, try 4): RuntimeError: CUDA out of memory at step 3")
    assert "\n" not in line
    hour = "2026-01-01T05:00Z"  # register's XCom (`incremental.handover.Registered`)
    assert common.champion_event({"hour": hour, "decision": "approved", "version": "3", "champion": "3"}) == {
        "version": "3", "hour": hour, "decision": "approved", "model_version_url": None}
    for no in ({"hour": hour, "skipped": "mode normal, catch-up not needed"},  # no catch-up
               {"hour": hour, "decision": "rejected", "version": "3", "champion": "2"},
               {"hour": hour, "decision": "approved", "version": "3", "champion": "3", "reused": True},
               {"hour": hour, "decision": "approved", "version": None, "champion": "2", "dry_run": True},
               {"hour": hour, "decision": "skipped", "version": None, "champion": "2",  # an hour already in the lineage
                "skipped": "hour 2026-01-01T02:00Z is already in champion v2's training data"}):
        with pytest.raises(AirflowSkipException):
            common.champion_event(no)
    assert common.training_overrides({"learning_rate": None, "max_steps": 5, "replay_fraction": 0.0}) == {
        "max_steps": 5, "replay_fraction": 0.0}


def test_the_runs_hour_is_parsed_once_from_its_data_interval() -> None:
    """A task's hour: its data interval (pendulum, any zone) as a plain aware UTC datetime on the
    hour, which the pipeline takes as it is; an interval that is not one whole UTC hour fails the task."""
    import pendulum

    sys.path.insert(0, str(DAGS))
    try:
        import search_ranker_common as common
    finally:
        sys.path.remove(str(DAGS))
    from airflow.sdk.exceptions import AirflowFailException

    from incremental.hours import Hour

    paris = pendulum.datetime(2026, 1, 1, 6, tz="Europe/Paris")  # 05:00 UTC
    hour = common.interval_hour({"data_interval_start": paris, "data_interval_end": paris.add(hours=1)})
    assert hour == datetime(2026, 1, 1, 5, tzinfo=UTC) and type(hour) is Hour and hour.tzinfo is UTC
    assert str(hour) == "2026-01-01T05:00Z"  # an Hour (no pendulum DateTime) that writes itself
    start = pendulum.datetime(2026, 1, 1, 5)
    for end in (start.add(hours=2), start.add(minutes=30), None):
        with pytest.raises(AirflowFailException):
            common.interval_hour({"data_interval_start": start, "data_interval_end": end})
    with pytest.raises(AirflowFailException, match="not one whole UTC hour"):
        common.interval_hour({"data_interval_start": start.add(minutes=30), "data_interval_end": start.add(minutes=90)})


def test_errors_that_would_fail_again_fail_the_task_without_retries(dagbag) -> None:
    """Bad input, configuration and data fail a task at once (AirflowFailException: no retry);
    a service that may come back keeps the task's retries."""
    sys.path.insert(0, str(DAGS))
    try:
        import search_ranker_common as common
    finally:
        sys.path.remove(str(DAGS))
    from airflow.sdk.exceptions import AirflowFailException

    from incremental.config import SettingsError
    from incremental.data.lake import LakeError
    from incremental.errors import IncrementalError, TrackingError, WarehouseError
    from incremental.hours import parse_hour
    from incremental.pipeline import PipelineError
    from incremental.validation.report import ValidationError

    def raising(exc: BaseException):
        @common.fail_fast
        def body(hour: str) -> dict:
            """A task body."""
            raise exc

        return body

    permanent = (PipelineError("hour 2026-01-01T05:00Z is quarantined, not validated"), SettingsError("training.lr"),
                 LakeError("no partition"), ValidationError("no partition"),
                 TrackingError("not an MLflow URI", retryable=False))
    for exc in permanent:
        with pytest.raises(AirflowFailException, match=type(exc).__name__) as raised:
            raising(exc)("2026-01-01T05:00")
        assert raised.value.__cause__ is exc
    with pytest.raises(AirflowFailException, match="not on the hour"):
        common.fail_fast(parse_hour)("2026-01-01T05:30")
    for exc in (WarehouseError("cannot be reached"), TrackingError("cannot be reached"), RuntimeError("CUDA")):
        with pytest.raises(type(exc)):
            raising(exc)("2026-01-01T05:00")
    assert issubclass(PipelineError, IncrementalError) and not PipelineError.retryable
    wrapped = raising(ValueError())
    assert wrapped.__name__ == "body" and wrapped.__doc__ == "A task body."  # what @task reads: task id and docs

    # every task that runs pipeline code is wrapped (the two decisions only read XCom)
    for dag in dagbag.dags.values():
        for t in dag.tasks:
            if t.task_id not in ("check_validated", "publish_champion", "publish_catch_up"):
                assert getattr(t.python_callable, "fails_fast", False), f"{dag.dag_id}.{t.task_id} is not @fail_fast"


def test_full_retrain_on_several_processes_builds_the_torchrun_launch(dagbag, tmp_path: Path) -> None:
    """`nproc` (default 1: the retrain in the task itself) > 1: the task runs `incremental bootstrap
    --nproc N` (which starts torchrun) on the gpu queue and reads rank 0's decision back."""
    from airflow.sdk.exceptions import ParamValidationError

    sys.path.insert(0, str(DAGS))
    try:
        import search_ranker_common as common
    finally:
        sys.path.remove(str(DAGS))
    from incremental.errors import IncrementalError, InputError

    dag = dagbag.dags["search_ranker_full_retrain"]
    window = {"window_start": "2026-01-01T00:00:00+00:00", "window_end": "2026-01-02T00:00:00+00:00"}
    assert _resolve(dag, window)["nproc"] == 1
    assert _resolve(dag, {**window, "nproc": 4})["nproc"] == 4
    for bad in (0, -1, 17, "two", 1.5):
        with pytest.raises(ParamValidationError):
            _resolve(dag, {**window, "nproc": bad})
    task = dag.get_task("full_retrain")
    assert (task.queue, task.pool) == ("gpu", "gpu")

    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    command = common.sharded_retrain_command(start, end, 4, dry_run=True, airflow_run_id="manual__1",
                                             result_json="/tmp/x/decision.json")
    assert command == [sys.executable, "-m", "incremental.cli", "-v", "bootstrap", "--start", "2026-01-01T00:00Z",
                       "--end", "2026-01-02T00:00Z", "--nproc", "4", "--dry-run", "--airflow-run-id", "manual__1",
                       "--result-json", "/tmp/x/decision.json"]
    with pytest.raises(InputError):
        common.sharded_retrain_command(start, end, 1, dry_run=False, airflow_run_id="r", result_json="/tmp/d.json")

    # the launch's exit status: 2 fails the task at once (bad input), another is retried; 0 reads the decision
    result = tmp_path / "decision.json"
    write = f"import json; json.dump({{'decision': 'approved', 'version': '3'}}, open({str(result)!r}, 'w'))"
    assert common.run_sharded_retrain([sys.executable, "-c", write], str(result)) == {"decision": "approved",
                                                                                     "version": "3"}
    with pytest.raises(InputError, match="exit 2"):
        common.run_sharded_retrain([sys.executable, "-c", "raise SystemExit(2)"], str(result))
    with pytest.raises(IncrementalError, match="exit 1") as failed:
        common.run_sharded_retrain([sys.executable, "-c", "raise SystemExit(1)"], str(result))
    assert failed.value.retryable


def test_catch_up_on_several_processes_builds_the_torchrun_launch(dagbag, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hourly DAG's catch-up processes (a run's `catch_up_nproc`, else the reviewed config's
    `drift.adapt.catch_up_processes`, 1: the catch-up in the task itself) > 1: the task runs
    `incremental catch-up --nproc N` (which starts torchrun) and reads rank 0's decision back."""
    from types import SimpleNamespace

    from airflow.sdk.exceptions import ParamValidationError

    sys.path.insert(0, str(DAGS))
    try:
        import search_ranker_common as common
    finally:
        sys.path.remove(str(DAGS))
    from incremental import retrain
    from incremental.errors import InputError
    from incremental.handover import CaughtUp

    dag = dagbag.dags["search_ranker_hourly"]
    assert _resolve(dag, {})["catch_up_nproc"] is None  # scheduled runs: the config's
    assert _resolve(dag, {"catch_up_nproc": 4})["catch_up_nproc"] == 4
    for bad in (0, -1, 17, "two", 1.5):
        with pytest.raises(ParamValidationError):
            _resolve(dag, {"catch_up_nproc": bad})

    hour = datetime(2026, 1, 1, 5, tzinfo=UTC)
    command = common.sharded_catch_up_command(hour, 2, dry_run=True, airflow_run_id="scheduled__1",
                                              result_json="/tmp/x/decision.json")
    assert command == [sys.executable, "-m", "incremental.cli", "-v", "catch-up", "--hour", "2026-01-01T05:00Z",
                       "--nproc", "2", "--dry-run", "--airflow-run-id", "scheduled__1",
                       "--result-json", "/tmp/x/decision.json"]
    with pytest.raises(InputError):
        common.sharded_catch_up_command(hour, 1, dry_run=False, airflow_run_id="r", result_json="/tmp/d.json")

    # the task body: nproc 1 calls catch_up_step in the task; nproc 2 launches and reads the decision back
    import pendulum

    from incremental.judge import drift

    def run_with(conf: dict, processes: int = 1, pending: bool = True) -> tuple[CaughtUp, list]:
        calls: list = []
        state = drift.DriftState(mode=drift.ADAPT, catch_up="pending") if pending else drift.DriftState()
        monkeypatch.setattr(drift, "load_state", lambda settings: state)
        context = {"params": _resolve(dag, conf), "run_id": "scheduled__1",
                   "data_interval_start": pendulum.instance(hour), "data_interval_end": pendulum.instance(hour).add(hours=1)}
        monkeypatch.setattr(common, "get_current_context", lambda: context)
        settings = SimpleNamespace(drift=SimpleNamespace(adapt=SimpleNamespace(catch_up_processes=processes)))
        monkeypatch.setattr(common, "task_settings", lambda: settings)
        monkeypatch.setattr(retrain, "catch_up_step", lambda *a, **k: calls.append(("in task", a, k))
                            or CaughtUp(hour=hour, skipped="mode normal, catch-up not needed"))
        decision = {"hour": "2026-01-01T05:00Z", "version": "4", "decision": "approved", "reasons": [],
                    "champion": "4", "window": ["2026-01-01T00:00Z", "2026-01-01T06:00Z"],
                    "judged_on": ["2026-01-01T04:00Z", "2026-01-01T06:00Z"]}
        monkeypatch.setattr(common, "run_sharded_retrain", lambda c, r: calls.append(("torchrun", c, r)) or decision)
        return common.catch_up_hour(), calls

    # most hours: nothing pending, answered from the drift state before the training code loads
    caught, calls = run_with({}, processes=2, pending=False)
    assert caught.skipped == "mode normal, catch-up not needed" and calls == []
    caught, calls = run_with({})
    assert caught.skipped and [c[0] for c in calls] == ["in task"]
    assert calls[0][1][1] == hour and calls[0][2] == {"airflow_run_id": "scheduled__1", "dry_run": False}
    _, calls = run_with({}, processes=2)  # a scheduled run on a worker the config gives 2 GPUs
    assert [c[0] for c in calls] == ["torchrun"] and "--nproc" in calls[0][1] and "2" in calls[0][1]
    _, calls = run_with({"catch_up_nproc": 1}, processes=2)  # a manual run's param wins
    assert [c[0] for c in calls] == ["in task"]
    caught, calls = run_with({"catch_up_nproc": 2, "dry_run": True})
    assert [c[0] for c in calls] == ["torchrun"]
    assert calls[0][1][3:] == ["-v", "catch-up", "--hour", "2026-01-01T05:00Z", "--nproc", "2", "--dry-run",
                               "--airflow-run-id", "scheduled__1", "--result-json", calls[0][2]]
    assert caught.registered is not None and caught.registered.version == "4" and caught.window == (
        hour - timedelta(hours=5), hour + timedelta(hours=1))



PRELOAD_PROBE = r"""
import ast, importlib, importlib.util, json, pathlib, sys
sys.path.insert(0, sys.argv[3])
import search_ranker_preload as preload
executor = preload.PreloadedLocalExecutor(parallelism=2)
executor.start()  # preloads, then forks its two workers
workers = len(executor.workers)
executor.end()
lazy = set()  # what a function imports when it runs: the task bodies, the pipeline's modules
for path in [*pathlib.Path(sys.argv[1]).glob("*.py"), *pathlib.Path(sys.argv[2]).rglob("*.py")]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                    lazy.add(sub.module)
                    if sub.module.startswith("incremental") and importlib.util.find_spec(sub.module).submodule_search_locations:
                        lazy.update(f"{sub.module}.{a.name}" for a in sub.names
                                    if importlib.util.find_spec(f"{sub.module}.{a.name}") is not None)
                elif isinstance(sub, ast.Import):
                    lazy.update(a.name for a in sub.names)
print("RESULT " + json.dumps({"workers": workers, "not_preloaded": sorted(lazy - set(sys.modules))}))
"""
NOT_PRELOADED = {"mlflow.pyfunc.scoring_server"}  # imported lazily by `incremental serve` alone


def test_the_executor_preloads_what_the_tasks_import_before_it_forks_its_workers(airflow_home: Path) -> None:
    """`search_ranker_preload.PreloadedLocalExecutor` imports the pipeline's modules, then forks its
    workers (the tasks are forked from them). Every heavy library that a task body or a pipeline
    module imports inside a function is among them, so that no task pays for it again."""
    out = subprocess.run([sys.executable, "-c", PRELOAD_PROBE, str(DAGS), str(REPO / "incremental"), str(PLUGINS)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["workers"] == 2
    missing = {m for m in result["not_preloaded"] if m.split(".")[0] in {*HEAVY, "matplotlib", "duckdb"}}
    assert missing - NOT_PRELOADED == set(), "imported in a task and not preloaded"


CELERY_PROBE = r"""
import json, sys
from airflow.configuration import conf
from airflow.providers.celery.executors.celery_executor_utils import create_celery_app
app = create_celery_app(conf)
before = "torch" in sys.modules
app.loader.init_worker()  # what `airflow celery worker` does at start, before it forks its pool
print("RESULT " + json.dumps({"imports": list(app.conf.imports), "before": before, "after": "torch" in sys.modules,
                              "broker": app.conf.broker_url}))
"""


def test_celery_workers_preload_the_same_modules(airflow_home: Path) -> None:
    """docker-compose.yaml's `celery_config_options`: Airflow's Celery app, with Celery's `imports`
    set to the same modules, which a worker imports at start (torch among them)."""
    env = {**os.environ, "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "search_ranker_preload.CELERY_CONFIG",
           "AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:6379/15", "PYTHONPATH": str(PLUGINS)}
    out = subprocess.run([sys.executable, "-c", CELERY_PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
    sys.path.insert(0, str(PLUGINS))
    try:
        import search_ranker_preload as preload
    finally:
        sys.path.remove(str(PLUGINS))
    assert result["imports"] == list(preload.PRELOAD)
    assert result["broker"] == "redis://127.0.0.1:6379/15"  # Airflow's own settings kept
    assert (result["before"], result["after"]) == (False, True)
