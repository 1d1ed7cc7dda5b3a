"""Maintenance of the lake's table (`incremental maintain-lake`): small files of an hour compacted,
a checkpoint, and a vacuum that deletes the files only versions older than the oldest kept one
needed, while a model version's training rows still rebuild byte for byte by time travel."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import pytest
from lake_rows import rows, tiny_home

from incremental.config import Settings
from incremental.data import lake, table
from incremental.data.maintain import maintain
from incremental.hours import iso_hour
from incremental.model.rebuild import rebuild

H = datetime(2026, 9, 1, 4, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return tiny_home(tmp_path)


def on_disk(settings: Settings, version: int) -> set[Path]:
    """The data files of a table version, as files of the local lake."""
    root = Path(table.uri(settings.lake))  # the log's paths are URL-encoded
    return {root / unquote(f.path) for f in table.files_of(table.open_table(settings.lake, version))}


def lineage_now(settings: Settings) -> dict:
    part = lake.partition(settings.lake, H)
    read = lake.read_partition(part)
    return {"partitions": [{"hour": H.isoformat(), "sha256": part.manifest["sha256"], "table_version": part.version,
                            "rows_sha256": table.rows_sha256(read), "rows": read.num_rows}]}


def test_maintenance_keeps_what_a_live_version_trained_on_and_deletes_what_only_older_ones_needed(
        settings: Settings, tmp_path: Path) -> None:
    lk = settings.lake
    table.append(lk, H, table.with_status(rows("a", 50), H, table.EXTRACTED), "extract", {})  # v0
    table.overwrite_hour(lk, H, table.with_status(rows("a", 50), H, table.VALIDATED), "validate", {},
                         keep_validated=False, read=table.open_table(lk))  # v1: v0's extracted file removed
    trained = lineage_now(settings)  # a model version trains at v1
    before = rebuild(settings, trained, tmp_path / "before")[0].path.read_bytes()
    for k in range(3):  # late rows: three small files of the hour's pending rows (v2..v4)
        table.append(lk, H, table.with_status(rows(f"late{k}", 4), H, table.EXTRACTED), "extract", {})
    only_v0 = on_disk(settings, 0) - on_disk(settings, 1)
    kept = set().union(*(on_disk(settings, v) for v in range(1, 5)))
    identity = lake.partition(lk, H).manifest["sha256"]

    dry = maintain(lk, keep_from=1, retention_hours=0, dry_run=True)
    assert dry.compacted == (f"{iso_hour(H)} extracted: 3 files",) and dry.checkpoint is None
    assert {Path(p).name for p in dry.vacuumed} == {p.name for p in only_v0}  # (vacuum names them decoded)
    assert all(p.is_file() for p in only_v0) and table.open_table(lk).version() == 4  # nothing changed

    done = maintain(lk, keep_from=1, retention_hours=0)
    assert done.compacted == dry.compacted and done.checkpoint == 5  # one commit: the compaction
    assert done.version == 7 and {Path(p).name for p in done.vacuumed} == {p.name for p in only_v0}  # + vacuum's two
    commit = table.hour_versions(table.open_table(lk), H)[-1]
    assert (commit["event"], commit["status"]) == ("optimize", table.EXTRACTED)
    assert not any(p.exists() for p in only_v0)  # what only version 0 needed is gone
    assert all(p.is_file() for p in kept)  # every file of versions 1.. stays (time travel reads them)
    part = lake.partition(lk, H)
    assert part.manifest["sha256"] == identity  # the validated files untouched: the hour is not "changed"
    assert [f.status for f in table.files_of(table.open_table(lk), H)] == [table.EXTRACTED, table.VALIDATED]
    assert table.read_rows(table.open_table(lk), H, [table.EXTRACTED]).num_rows == 12
    again = rebuild(settings, trained, tmp_path / "after")[0]
    assert again.path.read_bytes() == before  # training-rows of the live version: byte for byte

    # once no live version needs version 1 any more, its validated file goes too (kept: the latest)
    later = maintain(lk, keep_from=None, retention_hours=0)
    assert later.compacted == () and not any(p.exists() for p in kept - on_disk(settings, later.version))


def test_the_retention_keeps_files_removed_lately_and_a_keep_from_past_the_table_is_refused(settings: Settings) -> None:
    lk = settings.lake
    table.append(lk, H, table.with_status(rows("a", 5), H, table.EXTRACTED), "extract", {})
    table.overwrite_hour(lk, H, table.with_status(rows("a", 5), H, table.VALIDATED), "validate", {},
                         keep_validated=False, read=table.open_table(lk))
    assert maintain(lk, keep_from=None).vacuumed == ()  # removed a moment ago: a week's retention keeps it
    with pytest.raises(ValueError, match="past the table's latest"):
        maintain(lk, keep_from=9)
