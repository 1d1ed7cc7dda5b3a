"""A full retrain on two CPU processes (torchrun, DDP on gloo): disjoint shards that cover the
window's training sessions, one MLflow run, one model version, the single-process step count.

The real launch in a subprocess (`incremental bootstrap --nproc 2`, which runs `python -m
torch.distributed.run ... -m incremental.cli -- bootstrap ...`), the real CLI, MLflow and gate in
each rank; the tiny model on two small hours written straight into the lake.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from conftest import BASE, make_hour_frame, write_hour

from incremental import launch
from incremental.cli import main
from incremental.config import load_settings
from incremental.hours import HOUR, iso_hour
from incremental.model import distributed
from incremental.model.examples import training_set
from incremental.model.update import bootstrap_window

REPO = Path(__file__).resolve().parents[2]
START, END = BASE, BASE + 2 * HOUR
# bootstrap_steps below what one pass needs: the step count comes from the global rows and batch
CONFIG = """\
training:
  learning_rate: 0.001
  bootstrap_learning_rate: 0.001
  batch_size: 16
  bootstrap_steps: 10
  bootstrap_epochs: 1.0
  eval_every: 10
  early_stopping_patience: 100
  max_length: 64
"""


def small_home(home: Path, rows: int = 240) -> Path:
    """Two validated hours of `rows` impressions (sessions of 8) in `home`'s lake, and a config."""
    home.mkdir(parents=True, exist_ok=True)
    for k in range(2):
        hour = START + k * HOUR
        write_hour(home / "lake", hour, make_hour_frame(hour, rows, seed=k))
    (home / "ddp.yaml").write_text(CONFIG)
    return home / "ddp.yaml"


@pytest.fixture
def ddp_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INCREMENTAL_CONFIG", str(small_home(home)))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return home


def _two_ranks(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a `--nproc 2` command; it exits 0 with no traceback, both ranks having trained."""
    out = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, f"--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-5000:]}"
    assert "Traceback" not in out.stderr, out.stderr[-5000:]
    assert "rank 0/2: " in out.stderr and "rank 1/2: " in out.stderr, out.stderr[-5000:]  # two ranks trained
    return out


@pytest.mark.slow
def test_two_processes_train_disjoint_shards_into_one_candidate(ddp_home: Path) -> None:
    # `incremental bootstrap --nproc 2`, as the DAG runs it: the check, then python -m torch.distributed.run
    command = launch.cli_command(launch.bootstrap_args(START, END, nproc=2, anchor_size=100, verbose=True,
                                                       result_json=str(ddp_home / "decision.json")))
    out = _two_ranks(command)
    # one decision, printed by rank 0 alone
    assert out.stdout.count(f"{iso_hour(START)}  ") == 1 and " version 1 " in out.stdout, out.stdout
    decision = json.loads((ddp_home / "decision.json").read_text())
    assert decision["version"] == "1" and decision["decision"] in ("approved", "rejected"), decision

    settings = load_settings()
    boot, starts = bootstrap_window(settings, START, END)
    rows = training_set(boot, starts, "bootstrap").rows
    expected_steps = max(10, -(-len(rows) // 16))  # ceil(one pass of the global rows / the global batch)
    assert expected_steps > 10

    from incremental.registry import tracking

    client = tracking.configure(settings)
    runs = client.search_runs([tracking.get_or_create_experiment(settings)])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    run = runs[0]
    assert run.info.status == "FINISHED"
    versions = client.search_model_versions(f"name='{settings.model_name}'")
    assert [(str(v.version), v.run_id) for v in versions] == [("1", run.info.run_id)]
    assert run.data.metrics["steps"] == expected_steps
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == expected_steps  # rank 0 logs, once a step
    params = run.data.params
    assert params["ddp.world_size"] == "2" and params["ddp.batch_size_per_process"] == "8"

    shards = json.loads(Path(client.download_artifacts(run.info.run_id, distributed.SHARDS_ARTIFACT,
                                                       str(ddp_home / "dl"))).read_text())["shards"]
    assert [s["rank"] for s in shards] == [0, 1]
    first, second = (set(s["sessions"]) for s in shards)
    assert first and second and not first & second  # disjoint, neither empty
    assert first | second == set(rows["session_id"])  # together: every training session of the window
    for s in shards:
        assert params[f"ddp.rank{s['rank']}.sessions"] == str(len(s["sessions"]))
        assert params[f"ddp.rank{s['rank']}.sessions_sha256"] == distributed.sessions_digest(s["sessions"])[:16]
        assert int(params[f"ddp.rank{s['rank']}.rows"]) == int(rows["session_id"].isin(s["sessions"]).sum())
    assert sum(int(params[f"ddp.rank{r}.rows"]) for r in (0, 1)) == len(rows)


@pytest.mark.slow
def test_a_catch_up_on_two_processes_retrains_the_champion_on_disjoint_shards(ddp_home: Path) -> None:
    """`incremental catch-up --nproc 2`, as the hourly DAG runs it with `catch_up_nproc: 2`: a drift
    declared (its state written as the drift rule leaves it), a champion, a third hour; one
    candidate from the champion on disjoint shards of the window less the stale rows."""
    import math

    from incremental import retrain
    from incremental.judge import drift
    from incremental.judge.drift_rule import stale_rows
    from incremental.registry import champion as registry
    from incremental.registry import tracking

    (ddp_home / "ddp.yaml").write_text(CONFIG + "drift:\n  catch_up_hours: 1\n")
    settings = load_settings()
    first = retrain.full_retrain(settings, START, END, anchor_size=100)  # the champion: version 1
    if first.decision != "approved":  # the first tiny model may miss the value thresholds: a person promotes it
        registry.promote(settings, "1", "the test's champion, whatever the gate said")
    assert tracking.champion(settings) == ("1", f"models:/{settings.model_name}/1")
    hour = END  # the drifted hour that finds the catch-up pending
    write_hour(ddp_home / "lake", hour, make_hour_frame(hour, 240, seed=2, rule="inverted"))
    state = drift.load_state(settings)  # as `drift.declare` leaves it: adapt mode, catch-up pending
    state.mode, state.declared_at, state.began, state.catch_up = drift.ADAPT, iso_hour(hour), iso_hour(hour), "pending"
    state.changed_slices = ["footwear"]  # its rows from before the drift are stale: left out
    drift.save_state(settings, state)

    command = launch.cli_command(launch.catch_up_args(hour, nproc=2, verbose=True,
                                                      result_json=str(ddp_home / "decision.json")))
    out = _two_ranks(command)
    assert out.stdout.count(f"{iso_hour(hour)}  ") == 1 and " version 2 " in out.stdout, out.stdout  # rank 0 alone
    decision = json.loads((ddp_home / "decision.json").read_text())
    assert decision["version"] == "2" and decision["mode"] == "catch_up" and decision["hour"] == iso_hour(hour)
    assert decision["window"] == [iso_hour(START), iso_hour(hour + HOUR)] and decision["judged_on"] == [
        iso_hour(hour), iso_hour(hour + HOUR)], decision
    assert drift.load_state(settings).catch_up == decision["decision"]  # the episode knows it ran

    # what it trained on: the window less the stale rows (footwear before the drift), one pass
    plan = retrain.pending_catch_up(settings, hour)
    assert isinstance(plan, str)  # no longer pending
    boot, parts = bootstrap_window(settings, START, hour + HOUR)
    stale = stale_rows({"mode": "catch_up", "anomalous": [], "changed_slices": [],
                        "stale": [{"categories": ["footwear"], "before": iso_hour(hour)}]})
    rows = training_set(boot, parts, "bootstrap", stale, hour).rows
    assert len(rows) < len(training_set(boot, parts, "bootstrap", (), hour).rows)
    expected_steps = max(10, math.ceil(settings.drift.adapt.catch_up_passes * len(rows) / 16))

    client = tracking.configure(settings)
    versions = {str(v.version): v for v in client.search_model_versions(f"name='{settings.model_name}'")}
    assert sorted(versions) == ["1", "2"]  # one candidate
    run = client.get_run(versions["2"].run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["kind"] == "bootstrap" and versions["2"].tags["mode"] == "catch_up", versions["2"].tags
    assert run.data.tags["parent_version"] == "1" and versions["2"].tags["parent_version"] == "1"  # from the champion
    assert run.data.metrics["steps"] == expected_steps
    params = run.data.params
    assert params["ddp.world_size"] == "2"
    shards = json.loads(Path(client.download_artifacts(run.info.run_id, distributed.SHARDS_ARTIFACT,
                                                       str(ddp_home / "dl"))).read_text())["shards"]
    first_shard, second_shard = (set(s["sessions"]) for s in shards)
    assert first_shard and second_shard and not first_shard & second_shard
    assert first_shard | second_shard == set(rows["session_id"])
    assert sum(int(params[f"ddp.rank{r}.rows"]) for r in (0, 1)) == len(rows)
    # a warm start, as on one process: the word embeddings stay the champion's (freeze_word_embeddings),
    # the rest moved
    from incremental.model import ranker as rk

    champion_model, _ = rk.load_dir(tracking.version_model_dir(settings, "1"))
    caught_model, _ = rk.load_dir(tracking.version_model_dir(settings, "2"))
    before, after = champion_model.state_dict(), caught_model.state_dict()
    words = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(before[words], after[words])
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])


def test_catch_up_with_nothing_pending_and_bad_input(ddp_home: Path, capsys: pytest.CaptureFixture) -> None:
    """No catch-up pending: one line, exit 0, no process started (nor the decision file missing);
    `--nproc 0` and a bad hour: argparse's one error line, exit 2."""
    result = ddp_home / "decision.json"
    assert main(["catch-up", "--hour", iso_hour(END), "--nproc", "2", "--result-json", str(result)]) == 0
    assert capsys.readouterr().out == f"{iso_hour(END)}  no catch-up: mode normal, catch-up not needed\n"
    assert json.loads(result.read_text()) == {"hour": iso_hour(END), "skipped": "mode normal, catch-up not needed"}
    for bad, message in ((["--hour", iso_hour(END), "--nproc", "0"], "--nproc: 0: at least 1"),
                         (["--hour", "yesterday"], "--hour: 'yesterday'"),
                         (["--hour", "2026-03-01T00:30"], "--hour: '2026-03-01T00:30'")):
        with pytest.raises(SystemExit) as exited:
            main(["catch-up", *bad])
        err = capsys.readouterr().err
        assert exited.value.code == 2 and message in err and "Traceback" not in err, err


def test_shards_keep_sessions_whole_and_split_them_evenly() -> None:
    import pandas as pd

    sessions = pd.Series([f"s{i // 3}" for i in range(30)])  # 10 sessions of 3 rows
    masks = [distributed.shard_mask(sessions, r, 3) for r in range(3)]
    assert (sum(m.astype(int) for m in masks) == 1).all()  # every row in exactly one shard
    for m in masks:
        assert set(sessions[m]).isdisjoint(set(sessions[~m]))  # no session split between shards
    assert sorted(len(set(sessions[m])) for m in masks) == [3, 3, 4]


def test_more_processes_than_sessions_is_one_line_and_exit_2(ddp_home: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["bootstrap", "--start", iso_hour(START), "--end", iso_hour(END), "--nproc", "64"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "64 processes but the window has" in err and "training sessions" in err, err


def test_bad_nproc_and_uneven_batch_are_refused(ddp_home: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:  # argparse: usage and one error line
        main(["bootstrap", "--start", iso_hour(START), "--end", iso_hour(END), "--nproc", "0"])
    assert exited.value.code == 2 and "--nproc: 0: at least 1" in capsys.readouterr().err
    code = main(["bootstrap", "--start", iso_hour(START), "--end", iso_hour(END), "--nproc", "3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "batch_size 16 does not split evenly over 3 processes" in err, err


def test_world_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from incremental.errors import InputError

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.from_env() is None  # unset: one process, nothing initialised
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.from_env() is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.from_env() == distributed.Group(rank=1, world_size=2, local_rank=0)
    for name, value in (("RANK", "2"), ("WORLD_SIZE", "two"), ("WORLD_SIZE", "0")):
        monkeypatch.setenv(name, value)
        with pytest.raises(InputError):
            distributed.from_env()
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "1")


def test_the_launch_command() -> None:
    args = launch.bootstrap_args(START, START + timedelta(hours=5), nproc=1, dry_run=True, airflow_run_id="manual__x",
                                 result_json="/tmp/d.json")
    assert args == ["bootstrap", "--start", "2026-03-01T00:00Z", "--end", "2026-03-01T05:00Z", "--dry-run",
                    "--airflow-run-id", "manual__x", "--result-json", "/tmp/d.json"]
    assert launch.catch_up_args(START, nproc=2, airflow_run_id="scheduled__x") == [
        "catch-up", "--hour", "2026-03-01T00:00Z", "--nproc", "2", "--airflow-run-id", "scheduled__x"]
    assert launch.torchrun_command(4, args, python="py") == [
        "py", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", "-m", "incremental.cli", "--", *args]
    assert launch.cli_command(["bootstrap", "--nproc", "2"], python="py") == [
        "py", "-m", "incremental.cli", "bootstrap", "--nproc", "2"]
    with pytest.raises(ValueError):
        launch.torchrun_command(0, args)
    assert sys.executable in launch.torchrun_command(2, args)


def test_every_rank_follows_rank_0s_early_stopping_decision() -> None:
    """`fit` as a rank runs it: a rank that does not evaluate stops when rank 0 says so (and only
    then), at an evaluation step; rank 0's own evaluations do not stop a run that `agree` continues."""
    import torch

    from incremental.config import TrainingSettings
    from incremental.model import ranker as rk
    from incremental.model.fit import FitData, fit, make_trainer

    t = TrainingSettings(batch_size=8, eval_every=5, early_stopping_patience=1, max_length=32)
    frame = make_hour_frame(START, 64, seed=3)
    model, tokenizer = rk.load_base("tiny", seed=0)
    data = FitData.from_frames(tokenizer, frame[:48], frame[48:], t.max_length)
    asked: list[bool] = []

    def stop_at_10(stop: bool) -> bool:
        asked.append(stop)
        return len(asked) == 2

    worker = fit(make_trainer(model, t, 20, new_head=True, device=torch.device("cpu")), data, t, max_steps=20,
                 evaluates=False, agree=stop_at_10)
    assert worker.step == 10 and asked == [False, False]  # asked at steps 5 and 10, never evaluated itself
    assert worker.best_weights is None
    main_rank = fit(make_trainer(model, t, 20, new_head=True, device=torch.device("cpu")), data, t, max_steps=20,
                    agree=lambda stop: False)
    assert main_rank.step == 20 and main_rank.best_step in (5, 10, 15, 20)


@pytest.mark.slow
def test_bad_input_found_in_the_ranks_ends_every_rank(ddp_home: Path) -> None:
    """torchrun started by hand, past `--nproc`'s check: a rank refuses the uneven batch itself (one
    line, exit 2, before any collective), torchrun stops the other rank and ends instead of waiting."""
    (ddp_home / "ddp.yaml").write_text(CONFIG.replace("batch_size: 16", "batch_size: 15"))
    command = launch.torchrun_command(2, launch.bootstrap_args(START, END))
    out = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 1, out.stderr[-3000:]  # torchrun's status when a worker failed
    lines = [x for x in out.stderr.splitlines() if x.startswith("incremental: error: ")]
    assert lines and all("batch_size 15 does not split evenly over 2 processes" in x for x in lines), out.stderr
    assert "exitcode  : 2 " in out.stderr, out.stderr[-3000:]  # the first failure: the rank's exit 2
