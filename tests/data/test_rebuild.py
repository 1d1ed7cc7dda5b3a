"""A model version's training rows rebuilt by time travel in the lake's table (`incremental training-rows`):
the same bytes whatever was committed since, refused when the history does not hold them."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest
from lake_rows import rows, tiny_home

from incremental.config import Settings
from incremental.data import lake, table
from incremental.errors import InputError
from incremental.hours import Hour
from incremental.model.rebuild import RebuildError, rebuild

H = Hour(2026, 9, 1, 4, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return tiny_home(tmp_path)


def trained_lineage(settings: Settings) -> dict:
    """An hour validated, and the lineage training records when it reads it (`examples.load_hours`)."""
    table.append(settings.lake, H, table.with_status(rows("a", 50), H, table.VALIDATED), "test fixture", {})
    part = lake.partition(settings.lake, H)
    read = lake.read_partition(part)
    return {"partitions": [{"hour": H.isoformat(), "sha256": part.manifest["sha256"], "table_version": part.version,
                            "rows_sha256": table.rows_sha256(read), "rows": read.num_rows}]}


def test_rows_are_rebuilt_byte_identical_after_the_table_moved_on(settings: Settings, tmp_path: Path) -> None:
    lineage = trained_lineage(settings)
    # late rows of the hour, validated: the hour the version trained on has grown since
    table.append(settings.lake, H, table.with_status(rows("late", 5), H, table.VALIDATED), "test fixture", {})
    assert lake.read_partition(lake.partition(settings.lake, H)).num_rows == 55
    (hour,) = rebuild(settings, lineage, tmp_path / "out")
    assert hour.rows == 50 and hour.table_version == 0 and hour.sha256 == lineage["partitions"][0]["rows_sha256"]
    back = lake.read_parquet(hour.path)
    assert back.equals(lake.read_partition(lake.partition(settings.lake, H, table.open_table(settings.lake, 0))))
    again = rebuild(settings, lineage, tmp_path / "again")[0]
    assert again.path.read_bytes() == hour.path.read_bytes()  # the very same bytes, every time


def test_a_rewritten_history_or_a_lineage_without_versions_is_refused(settings: Settings, tmp_path: Path) -> None:
    lineage = trained_lineage(settings)
    wrong = {"partitions": [{**lineage["partitions"][0], "rows_sha256": "0" * 64}]}
    with pytest.raises(RebuildError, match="history was rewritten"):
        rebuild(settings, wrong, tmp_path / "out")
    old = {"partitions": [{**lineage["partitions"][0], "table_version": None}]}
    with pytest.raises(InputError, match="before the lake recorded table versions"):
        rebuild(settings, old, tmp_path / "out")
    ahead = {"partitions": [{**lineage["partitions"][0], "table_version": 9}]}
    with pytest.raises(InputError, match="is at version 0"):
        rebuild(settings, ahead, tmp_path / "out")


def test_the_command_names_a_version_that_is_not_there(settings: Settings, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {"INCREMENTAL_HOME": str(settings.home), "INCREMENTAL_BASE_MODEL": "tiny", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-m", "incremental.cli", "training-rows", "--version", "42", "--out",
                           str(tmp_path / "out")], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "has no version '42'" in done.stderr


def test_an_emptied_earlier_commit_is_named_for_every_version_that_replays_over_it(settings: Settings,
                                                                                   tmp_path: Path) -> None:
    """A commit file emptied by something outside the project, not the latest: delta-rs replays the
    log over it as a commit of nothing (the hour's validated rows gone, its extracted rows back), so
    every version from it on is refused by name, training-rows included; the versions before it open."""
    from incremental.data import delta_log
    from incremental.errors import DamagedStateError

    table.append(settings.lake, H, table.with_status(rows("a", 50), H, table.EXTRACTED), "extract", {})  # v0
    table.overwrite_hour(settings.lake, H, table.with_status(rows("a", 50), H, table.VALIDATED), "validate", {},
                         keep_validated=False, read=table.open_table(settings.lake))  # v1
    table.append(settings.lake, H, table.with_status(rows("late", 5), H, table.EXTRACTED), "extract", {})  # v2
    part = lake.partition(settings.lake, H)
    lineage = {"partitions": [{"hour": H.isoformat(), "table_version": part.version,
                               "rows_sha256": table.rows_sha256(lake.read_partition(part)), "rows": 50}]}
    log = Path(table.uri(settings.lake)) / "_delta_log"
    (log / f"{1:020d}.json").write_text("")
    delta_log._CHECKED.clear()  # as a new process finds it
    table._FILES.clear()
    for version in (None, 1, 2):
        with pytest.raises(DamagedStateError, match=r"commit 1 \(_delta_log/0+1\.json\) records nothing"):
            table.open_table(settings.lake, version)
    with pytest.raises(DamagedStateError, match="commit 1"):
        lake.partition(settings.lake, H)  # not "extracted" again, as the replay alone would say
    with pytest.raises(DamagedStateError, match="commit 1"):
        rebuild(settings, lineage, tmp_path / "out")  # not rows that differ: the commit that lost them
    assert table.open_table(settings.lake, 0).version() == 0  # before it: whole
