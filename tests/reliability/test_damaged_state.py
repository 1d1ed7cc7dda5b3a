"""Damaged state (issue 20, defects 8 and 9), on real files: a lake of two validated hours made by
the simulator, extraction and GX validation, then one file damaged as a crash, a bad restore or a
careless hand would leave it.

Every file the pipeline keeps is checked when read (a schema per file): the CLI answers with one
line naming the file and what is wrong, exit 2, no traceback. A torn last line of a JSON-lines
record (a crash in the middle of an append) is recovered by design: left out with a warning, and
set aside (never lost) before the next line is written; a bad line in the middle is damage, named
with its line number. A validated hour whose data file is gone is shown as damaged by
`partitions`, and reading it names the hour and the file; a damaged commit of the table's log is
named with the table.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import assert_clean_error, assert_ok, cli, cli_env

from incremental.config import Settings, load_settings
from incremental.data import files, lake, table
from incremental.errors import DamagedStateError, IncrementalError
from incremental.hours import HOUR, Hour
from incremental.judge import anchor, drift, prequential

T0 = Hour(2026, 6, 1, 0, tzinfo=UTC)
HOURS = ("--start", "2026-06-01T00:00", "--end", "2026-06-01T02:00")


def settings_for(home: Path) -> Settings:
    return load_settings({"INCREMENTAL_HOME": str(home), "INCREMENTAL_BASE_MODEL": "tiny"})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with two validated hours (about 300 rows each)."""
    from incremental.data.extract import extract_hour
    from incremental.data.warehouse import Warehouse
    from incremental.sim.simulate import simulate
    from incremental.validation.validate import validate_hour

    home = tmp_path_factory.mktemp("damaged") / "var"
    settings = settings_for(home)
    warehouse = Warehouse(settings.warehouse_url)
    simulate(warehouse, T0, T0 + 2 * HOUR, rate=300, seed=3)
    for hour in (T0, T0 + HOUR):
        extract_hour(warehouse, settings.lake, hour)
        assert validate_hour(settings.lake, hour, settings.validation).status == "validated"
    return home


@pytest.fixture
def home(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "var"
    shutil.copytree(built, copy, ignore=shutil.ignore_patterns("*.lock"))
    return copy


def hour_dir(home: Path, hour: datetime = T0) -> Path:
    return Path(lake.partition_dir(settings_for(home).lake, hour))


def drift_dir(home: Path) -> Path:
    folder = Path(drift.drift_dir(settings_for(home)))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def record(hour: str, version: str = "1", auc: float = 0.7) -> dict:
    return {"hour": hour, "champion_version": version, "source": "prequential", "rows": 100, "positives": 10,
            "auc": auc, "ndcg@10": 0.5, "logloss": 0.6, "per_category": {}}


# --- the table's log and the hour's validation record -----------------------------------------------
@pytest.mark.parametrize("which", [-1, 1], ids=["latest", "earlier"])  # delta-rs passes over an earlier empty one
@pytest.mark.parametrize("damage", [lambda t: t[: len(t) // 2], lambda t: "", lambda t: "not json\n"])
def test_a_damaged_commit_of_the_tables_log_is_named(home: Path, damage, which: int) -> None:
    log = Path(table.uri(settings_for(home).lake)) / "_delta_log"
    last = sorted(log.glob("*.json"))[which]
    last.write_text(damage(last.read_text()))
    assert_clean_error(cli(cli_env(home), "partitions", *HOURS), table.uri(settings_for(home).lake), "damaged")


@pytest.mark.parametrize("damage, what", [
    (lambda t: t[: len(t) // 3], "not valid JSON"),
    (lambda t: json.dumps({**json.loads(t), "checks": [{"rule": 1}]}), "checks[0]"),
    (lambda t: json.dumps({**json.loads(t), "sha256": "abc"}), "'sha256'"),
])
def test_a_damaged_validation_record_is_named_with_what_is_wrong(home: Path, damage, what: str) -> None:
    path = hour_dir(home) / files.VALIDATION_FILE
    path.write_text(damage(path.read_text()))
    assert_clean_error(cli(cli_env(home), "validate", *HOURS), str(path), "damaged", what)


# --- the drift state -------------------------------------------------------------------------------
@pytest.mark.parametrize("content, what", [
    ('{"mode": "normal", "sin', "not valid JSON"),
    ("[]", "a JSON object expected"),
    ('{"mode": "panic"}', "'mode'"),
    ('{"mode": "normal", "colour": "blue"}', "unknown key(s) 'colour'"),
    ('{"promoted": "3"}', "'promoted'"),
])
def test_a_damaged_drift_state_is_named(home: Path, content: str, what: str) -> None:
    (drift_dir(home) / "state.json").write_text(content)
    assert_clean_error(cli(cli_env(home), "drift"), "state.json", "damaged", what)


def test_a_valid_drift_state_still_loads(home: Path) -> None:
    settings = settings_for(home)
    state = drift.DriftState(mode=drift.ADAPT, declared_at="2026-06-01T01:00Z", promoted=["3"], flat_hours=1)
    drift.save_state(settings, state)
    assert drift.load_state(settings) == state


# --- the prequential record (JSON lines) -------------------------------------------------------------
def test_a_torn_last_line_is_recovered_and_the_next_append_starts_a_new_line(home: Path, caplog) -> None:
    settings = settings_for(home)
    path = drift_dir(home) / "prequential.jsonl"
    whole = json.dumps(record("2026-06-01T00:00Z"))
    torn = json.dumps(record("2026-06-01T01:00Z"))[:40]
    path.write_text(f"{whole}\n{torn}")  # a crash in the middle of the second append

    assert [r["hour"] for r in prequential.records(settings)] == ["2026-06-01T00:00Z"]
    assert "torn" in caplog.text
    prequential.append_record(settings, record("2026-06-01T02:00Z"))  # the next hour is not blocked
    assert [r["hour"] for r in prequential.records(settings)] == ["2026-06-01T00:00Z", "2026-06-01T02:00Z"]
    assert path.read_text().endswith("\n") and len(path.read_text().splitlines()) == 2
    assert (path.parent / "prequential.jsonl.torn").read_text() == f"{torn}\n"  # set aside, not lost
    assert_ok(cli(cli_env(home), "drift"))


@pytest.mark.parametrize("line, what", [
    ('{"hour": "2026-06-01T00:00Z", "champion', "line 2: not valid JSON"),
    ('["a list"]', "line 2: a JSON object expected"),
    ('{"champion_version": "1"}', "line 2: 'hour'"),
    (json.dumps({**record("2026-06-01T00:00Z"), "auc": "high"}), "line 2: 'auc'"),
])
def test_a_bad_line_in_the_middle_is_named_with_its_line(home: Path, line: str, what: str) -> None:
    path = drift_dir(home) / "prequential.jsonl"
    path.write_text(f"{json.dumps(record('2026-06-01T00:00Z'))}\n{line}\n{json.dumps(record('2026-06-01T01:00Z'))}\n")
    before = path.read_bytes()
    assert_clean_error(cli(cli_env(home), "drift"), str(path), what)
    with pytest.raises(DamagedStateError, match="line 2"):  # nothing is built on a damaged record
        prequential.append_record(settings_for(home), record("2026-06-01T02:00Z"))
    assert path.read_bytes() == before


# --- the anchor's record -----------------------------------------------------------------------------
@pytest.mark.parametrize("content, what", [
    ('{"sha256": "ab', "not valid JSON"),
    ('{"sha256": "' + "a" * 64 + '"}', "missing 'rows'"),
    ("null", "a JSON object expected"),
])
def test_a_damaged_anchor_record_is_named(home: Path, content: str, what: str) -> None:
    folder = Path(anchor.anchor_dir(settings_for(home).lake))
    folder.mkdir(parents=True)
    (folder / anchor.INFO_FILE).write_text(content)
    assert_clean_error(cli(cli_env(home), "benchmark", "show"), anchor.INFO_FILE, "damaged", what)


def test_damage_is_not_retryable(home: Path) -> None:
    (drift_dir(home) / "state.json").write_text("[]")
    with pytest.raises(IncrementalError) as caught:
        drift.load_state(settings_for(home))
    assert caught.value.retryable is False


# --- a validated hour's data file deleted (defect 9) ------------------------------------------------
def test_a_deleted_data_file_shows_as_damaged_and_reading_it_names_the_hour_and_file(home: Path) -> None:
    settings = settings_for(home)
    (gone,) = lake.partition(settings.lake, T0 + HOUR).files
    (Path(table.uri(settings.lake)) / unquote(gone.path)).unlink()
    out = assert_ok(cli(cli_env(home), "partitions", *HOURS)).stdout
    [line] = [line for line in out.splitlines() if line.startswith("2026-06-01T01:00Z")]
    assert line.split()[1] == "damaged", out
    assert f"missing data file(s): {gone.path}" in out
    assert "2026-06-01T00:00Z  validated" in out  # the other hour is in order

    part = lake.partition(settings.lake, T0 + HOUR)
    assert lake.missing_parts(part) == [gone.path]
    with pytest.raises(IncrementalError, match=r"hour 2026-06-01T01:00Z is damaged: .*missing"):
        lake.read_partition(part)
    # the replay read of a later hour, whose window holds the damaged hour, names it too
    from incremental.model import replay

    with pytest.raises(IncrementalError, match="2026-06-01T01:00Z is damaged"):
        replay.sample(settings.lake, T0 + 2 * HOUR, fresh_rows=300, fraction=0.3, replay_hours=24,
                      holdout_fraction=0.2, seed=0)
