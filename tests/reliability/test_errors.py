"""Bad configuration and a broken environment: one clear line naming what is wrong, exit 2,
never a traceback (issue 10, items 6 and 8)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import duckdb
import pytest
from conftest import assert_clean_error, assert_ok, cli, cli_command, cli_env, closed_port

from incremental.config import SettingsError, load_settings

HOUR = "2026-05-01T00:00"


# --- the warehouse -----------------------------------------------------------------------------
def test_malformed_warehouse_url(fresh_home: Path) -> None:
    env = cli_env(fresh_home, INCREMENTAL_WAREHOUSE_URL="postgres//ranker:s3cret@db.internal/warehouse")
    assert_clean_error(cli(env, "warehouse", "init"), "INCREMENTAL_WAREHOUSE_URL", "ranker:***@", hidden=("s3cret",))


@pytest.mark.parametrize("url", ["mysql://ranker:s3cret@127.0.0.1/test", "sqlite:///w.db?password=s3cret"])
def test_an_unsupported_warehouse_is_named(fresh_home: Path, url: str) -> None:
    # a trial found `mysql://` ending in a traceback (no MySQLdb) with exit 1
    env = cli_env(fresh_home, INCREMENTAL_WAREHOUSE_URL=url)
    line = assert_clean_error(cli(env, "warehouse", "init"), "is not a supported warehouse", "duckdb:///")
    assert "s3cret" not in line


def test_closed_postgres_port(fresh_home: Path) -> None:
    port = closed_port()
    env = cli_env(fresh_home, INCREMENTAL_WAREHOUSE_URL=f"postgresql://postgres:s3cret@127.0.0.1:{port}/test")
    assert_clean_error(cli(env, "extract", "--start", HOUR), f"127.0.0.1:{port}", "postgres:***@",
                       hidden=("s3cret",))


def test_missing_postgres_database(fresh_home: Path, postgres_server: str) -> None:
    base = postgres_server.rsplit("/", 1)[0]
    env = cli_env(fresh_home, INCREMENTAL_WAREHOUSE_URL=f"{base}/no_such_warehouse_db")
    line = assert_clean_error(cli(env, "warehouse", "init"), "no_such_warehouse_db")
    assert "does not exist" in line


def test_a_dropped_warehouse_column_is_named(fresh_home: Path) -> None:
    env = cli_env(fresh_home)
    assert_ok(cli(env, "simulate", "--start", HOUR, "--end", "2026-05-01T01:00", "--rate", "100"))
    with duckdb.connect(str(fresh_home / "warehouse.duckdb")) as con:
        con.execute("DROP INDEX search_impressions_ingested_at")  # DuckDB refuses to alter an indexed table
        con.execute("ALTER TABLE search_impressions DROP COLUMN position")
    assert_clean_error(cli(env, "extract", "--start", HOUR), "position", "sql/")


def test_a_read_only_lake_is_named(tmp_path: Path) -> None:
    """The lake cannot be written: the message names the folder. (As root, permissions do not
    bind, so the command runs as `nobody` through setpriv.)"""
    root = Path(tempfile.mkdtemp(prefix="ro-lake-"))  # not under pytest's private tmp: `nobody` must reach it
    try:
        home = root / "var"
        home.mkdir()
        env = cli_env(home)
        assert_ok(cli(env, "simulate", "--start", HOUR, "--end", "2026-05-01T01:00", "--rate", "100"))
        lake = home / "lake"
        lake.mkdir()
        command = ["extract", "--start", HOUR]
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: a read-only folder cannot be made here")
            for path in [root, home, *home.iterdir()]:
                path.chmod(0o777 if path.is_dir() else 0o666)
            lake.chmod(0o555)
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
            env = {**env, "HOME": str(root), "MPLCONFIGDIR": str(root)}
            result = subprocess.run(prefix + cli_command(*command), env=env, capture_output=True, text=True,
                                    timeout=300, cwd="/")
        else:
            lake.chmod(0o555)
            result = cli(env, *command)
        assert_clean_error(result, str(lake), "Permission denied")
    finally:
        for path in root.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


# --- MLflow --------------------------------------------------------------------------------------
def test_a_bad_mlflow_uri(fresh_home: Path) -> None:
    env = cli_env(fresh_home, INCREMENTAL_MLFLOW_URI="htp://mlflow:5000")
    assert_clean_error(cli(env, "history"), "INCREMENTAL_MLFLOW_URI", "htp://mlflow:5000")


def test_an_unreachable_mlflow_server_fails_fast(fresh_home: Path) -> None:
    port = closed_port()
    env = cli_env(fresh_home, INCREMENTAL_MLFLOW_URI=f"http://ops:s3cret@127.0.0.1:{port}")
    result = cli(env, "history", timeout=60)  # MLflow's own retries would take minutes
    assert_clean_error(result, f"127.0.0.1:{port}", "cannot be reached", hidden=("s3cret",))


# --- the config file and the arguments -----------------------------------------------------------
def test_a_yaml_syntax_error_names_the_file_and_line(fresh_home: Path, tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("training:\n  learning_rate: [0.001\n  batch_size: 32\n")
    env = cli_env(fresh_home, INCREMENTAL_CONFIG=str(config))
    assert_clean_error(cli(env, "history"), str(config), "line")


def test_the_last_representable_hour_is_refused(fresh_home: Path) -> None:
    result = cli(cli_env(fresh_home), "extract", "--start", "9999-12-31T23:00")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "9999-12-31T23:00" in result.stderr and "out of range" in result.stderr


@pytest.mark.parametrize(("section", "key", "value"), [
    ("training", "learning_rate", "-0.001"),
    ("training", "batch_size", "0"),
    ("training", "holdout_fraction", "1.5"),
    ("training", "replay_fraction", "-1"),
    ("training", "learning_rate", ".inf"),
    ("training", "max_steps", "0"),
    ("training", "warmup_fraction", "2"),
    ("training", "seed", "-1"),
    ("validation", "min_rows", "-5"),
    ("validation", "ctr_change_critical", ".nan"),
    ("validation", "max_position", "0"),
    ("gate", "min_holdout_auc", "1.5"),
    ("gate", "max_anchor_auc_drop", ".inf"),
])
def test_nonsense_settings_are_refused_naming_the_key(tmp_path: Path, section: str, key: str, value: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"{section}:\n  {key}: {value}\n")
    with pytest.raises(SettingsError, match=rf"{section}\.{key}"):
        load_settings({"INCREMENTAL_HOME": str(tmp_path), "INCREMENTAL_CONFIG": str(config)})


def test_nonsense_settings_on_the_command_line(fresh_home: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("training:\n  batch_size: 0\n")
    env = cli_env(fresh_home, INCREMENTAL_CONFIG=str(config))
    assert_clean_error(cli(env, "history"), str(config), "training.batch_size")
