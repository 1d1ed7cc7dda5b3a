"""Every command of the README's command table runs, as a person runs it: the `incremental` CLI in a
subprocess, on one small home (the embedded default, the tiny model, `airflow_helpers.E2E_CONFIG`:
few steps and a permissive gate), asserting each command's exit code and a key line of its output.

One home is bootstrapped once for the module (`commands`); the tests after it read or extend it, in
file order. Left to their own tests: `python -m benchmarks.continual` (tests/e2e/test_continual.py runs
its entry in process) and `serve` (tests/model/test_serving.py starts
`incremental serve` in a subprocess and queries it over HTTP).
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from airflow_helpers import E2E_CONFIG, Env

T0 = datetime(2026, 6, 1, 0)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def at(hours: int) -> str:
    return (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M")


BOOTSTRAP = (at(0), at(3))  # the first champion's window
TRAIN_HOUR, RUN_HOUR, BAD_HOUR = at(3), at(4), at(6)


def run(env: Env, command: str, expect: int = 0, config: Path | None = None) -> str:
    """`incremental <command>` in the home (with another reviewed `config`); asserts the exit code
    and that nothing was a traceback."""
    prefix = f"INCREMENTAL_CONFIG={config} " if config else ""
    out: subprocess.CompletedProcess = env.sh(f"{prefix}incremental {command}", timeout=600, check=False)
    assert out.returncode == expect, (f"`incremental {command}` exited {out.returncode}, not {expect}\n"
                                      f"--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-3000:]}")
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def commands(tmp_path_factory: pytest.TempPathFactory) -> tuple[Env, dict[str, str]]:
    """A home through the data commands (a zero-click hour among them), the anchor and the first
    champion; each command's output by name."""
    env = Env(tmp_path_factory.mktemp("commands") / "var")
    done = {"warehouse init": run(env, "warehouse init")}
    done["simulate"] = run(env, f"simulate --start {at(0)} --end {at(6)} --rate 300 --seed 7")
    run(env, f"simulate --start {BAD_HOUR} --end {at(7)} --rate 100 --seed 3 --fault zero_clicks")
    done["extract"] = run(env, f"extract --start {at(0)} --end {at(7)}")
    done["validate"] = run(env, f"validate --start {at(0)} --end {at(7)}", expect=1)  # 1: an hour was quarantined
    done["benchmark freeze"] = run(env, f"benchmark freeze --start {BOOTSTRAP[0]} --end {BOOTSTRAP[1]} --size 300 "
                                        "--reason 'e2e: the commands test'")
    done["benchmark show"] = run(env, "benchmark show")
    done["bootstrap"] = run(env, f"bootstrap --start {BOOTSTRAP[0]} --end {BOOTSTRAP[1]}")
    # the tiny random model loses to BM25 on its own hours: a person makes it the first champion
    done["promote"] = run(env, "promote --version 1 --reason 'e2e: the tiny bootstrap is the first champion'")
    return env, done


def test_data_commands_and_the_first_champion(commands: tuple[Env, dict[str, str]]) -> None:
    env, done = commands
    assert done["warehouse init"].startswith("warehouse ready: "), done["warehouse init"]
    simulated = json.loads(done["simulate"])
    assert simulated["hours"] == 6 and simulated["rows"] > 0 and simulated["start"] == f"{at(0)}Z", simulated
    assert done["extract"].count(" rows  sha256 ") == 7, done["extract"]
    assert done["validate"].count(" validated: ") == 6, done["validate"]
    assert f"hour {BAD_HOUR}Z quarantined" in done["validate"], done["validate"]
    assert "expect_column_mean_to_be_between(clicked)" in done["validate"], done["validate"]
    frozen = json.loads(done["benchmark freeze"])
    assert frozen["rows"] > 0 and len(frozen["sha256"]) == 64 and frozen["baseline_version"] is None, frozen
    assert f"anchor {frozen['sha256']}" in done["benchmark show"], done["benchmark show"]
    # the permissive gate passes its value checks, but the first model is also judged against BM25
    # fitted on its own hours, which the tiny random model always loses to: rejected, then promoted
    assert f"{BOOTSTRAP[0]}Z  REJECTED  version 1  champion None" in done["bootstrap"], done["bootstrap"]
    assert "holdout_vs_lexical_floor: " in done["bootstrap"] and "worse than the floor" in done["bootstrap"]
    assert json.loads(done["promote"])["champion"] == "1", done["promote"]


def test_train_prints_the_run_and_the_candidate(commands: tuple[Env, dict[str, str]]) -> None:
    env, _ = commands
    out = run(env, f"train --start {TRAIN_HOUR}")  # was KeyError: 'candidate_dir' (issue 19)
    assert "MLflow run " in out and "(mode normal)" in out, out
    assert "candidate  runs:/" in out and "parent     1; holdout runs:/" in out, out


def test_run_hour_registers_a_version(commands: tuple[Env, dict[str, str]]) -> None:
    env, _ = commands
    out = run(env, f"run-hour --start {RUN_HOUR}")
    assert f"{RUN_HOUR}Z  APPROVED  version 2  champion 2" in out, out


def test_partitions_and_readmit_after_a_fix(commands: tuple[Env, dict[str, str]]) -> None:
    env, _ = commands
    out = run(env, f"partitions --start {at(5)} --end {at(8)}")
    status = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
    assert status == {f"{at(5)}Z": "validated", f"{BAD_HOUR}Z": "quarantined", f"{at(7)}Z": "missing"}, out
    # the fix: a reviewed rule change (zero-click hours accepted), then the hour is validated again
    fixed = env.home / "fixed.yaml"
    fixed.write_text(E2E_CONFIG + "validation:\n  min_ctr: 0.0\n")
    out = run(env, f"readmit --start {BAD_HOUR} --reason 'e2e: min_ctr lowered'", config=fixed)
    assert f"hour {BAD_HOUR}Z validated: " in out, out


def test_import_judgments(commands: tuple[Env, dict[str, str]]) -> None:
    env, _ = commands
    out = run(env, f"import-judgments {FIXTURES / 'judgments_small.csv'} --query-col search "
                   f"--title-col product_name --grade-col score --encoding latin-1 --start {at(24)} --rate 10")
    summary = json.loads(out)
    assert summary["pairs"] == summary["impressions"] == 60 and summary["hours"] == 6, summary


def test_promote_rollback_history_drift(commands: tuple[Env, dict[str, str]]) -> None:
    env, _ = commands
    out = run(env, "rollback --reason 'e2e: back to the bootstrap'")
    assert json.loads(out)["champion"] == "1", out
    out = run(env, "promote --version 2 --reason 'e2e: the hourly update again'")
    assert json.loads(out)["champion"] == "2", out
    out = run(env, "history")
    assert f"{BOOTSTRAP[0]}Z" in out and f"{RUN_HOUR}Z" in out, out
    out = run(env, "drift --hours 3")
    assert out.startswith("mode: normal"), out
    assert "champion's prequential AUC" in out and f"{RUN_HOUR}Z  v1" in out, out


def test_maintain_lake_keeps_what_live_versions_trained_on(commands: tuple[Env, dict[str, str]]) -> None:
    env, _ = commands
    before = {v: env.home / f"rows-v{v}-before" for v in ("1", "2")}
    for version, folder in before.items():
        run(env, f"training-rows --version {version} --out {folder}")
    dry = run(env, "maintain-lake --dry-run --retention-hours 0")
    assert "live model versions: 1, 2; table versions kept readable: from version " in dry, dry
    listed = [Path(line.strip()).name for line in dry.splitlines() if line.startswith("  ")]
    assert listed and "would be deleted" in dry, dry  # the extracted files validation replaced, before version 1
    assert all(list(env.home.rglob(name)) for name in listed)  # a dry run deletes nothing
    out = run(env, "maintain-lake --retention-hours 0")
    assert "checkpoint at version " in out and f"{len(listed)} data file(s) no kept version needs deleted" in out, out
    assert not any(list(env.home.rglob(name)) for name in listed)
    for version, folder in before.items():  # each live version's training rows, byte for byte
        after = env.home / f"rows-v{version}-after"
        run(env, f"training-rows --version {version} --out {after}")
        assert sorted(p.name for p in after.iterdir()) == sorted(p.name for p in folder.iterdir())
        assert all((after / p.name).read_bytes() == p.read_bytes() for p in folder.iterdir())
