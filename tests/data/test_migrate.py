"""`incremental migrate-lake`: a lake in the format before Delta Lake (Parquet parts, manifests, a
quarantine folder), written here file by file as that format wrote it, moved into the table: every
row once, with its status and reason, nothing deleted, and a second run changes nothing."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from incremental.data import lake, table
from incremental.data import quarantine as lake_quarantine
from incremental.data.migrate import OLD, migrate
from incremental.errors import InputError
from incremental.hours import Hour

T0 = Hour(2026, 10, 1, 0, tzinfo=UTC)
A, B, C, D = (T0 + timedelta(hours=k) for k in range(4))


def rows(prefix: str, n: int) -> pa.Table:
    base = {f.name: pa.nulls(n, f.type) for f in lake.SEARCH_LOG_SCHEMA}
    base["event_id"] = pa.array([f"{prefix}-{i}" for i in range(n)])
    return pa.table(base, schema=lake.SEARCH_LOG_SCHEMA)


def part(folder: Path, name: str, data: pa.Table) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, folder / name)
    return {"file": name, "rows": data.num_rows, "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest()}


def manifest(folder: Path, parts: list[dict]) -> str:
    sha = parts[0]["sha256"] if len(parts) == 1 else hashlib.sha256(str(parts).encode()).hexdigest()
    (folder / "_manifest.json").write_text(json.dumps({"parts": parts, "sha256": sha, "schema_version": 2}))
    return sha


def validation(folder: Path, names: list[str], sha: str) -> None:
    (folder / "_validation.json").write_text(json.dumps({"status": "validated", "parts": names, "sha256": sha,
                                                         "checks": [], "statistics": {"rows": 1, "ctr": 0.1}}))


def old_lake(root: Path) -> None:
    live = lambda h: root / "search_logs" / lake.hour_key(h)  # noqa: E731
    quarantine = lambda h: root / "quarantine" / "search_logs" / lake.hour_key(h)  # noqa: E731
    # A: validated after its 3 bad rows went to a row set
    p = part(live(A), "part-0.valid.parquet", rows("a", 40))
    validation(live(A), ["part-0.valid.parquet"], manifest(live(A), [p]))
    bad = rows("a-bad", 3).append_column(lake.REASON_COLUMN, pa.array(["expect_x(query)"] * 3))
    part(quarantine(A) / "rows" / "part-0-abc", "rows.parquet", bad)
    (quarantine(A) / "rows" / "part-0-abc" / "quarantine.json").write_text('{"rows": 3}')
    # B: validated, and a delta of late rows pending
    p0, p1 = part(live(B), "part-0.parquet", rows("b", 30)), part(live(B), "part-1.parquet", rows("b-late", 5))
    manifest(live(B), [p0, p1])
    validation(live(B), ["part-0.parquet"], p0["sha256"])
    # C: quarantined whole; D: quarantined whole with a column the table cannot hold
    p = part(quarantine(C) / "abcdef012345", "part-0.parquet", rows("c", 20))
    manifest(quarantine(C) / "abcdef012345", [p])
    (quarantine(C) / "abcdef012345" / "quarantine.json").write_text(json.dumps(
        {"rows": 20, "failures": [{"rule": "expect_column_values_to_be_unique"}]}))
    wrong = rows("d", 10).set_column(8, "clicked", pa.array(["yes"] * 10))
    p = part(quarantine(D) / "0123456789ab", "part-0.parquet", wrong)
    manifest(quarantine(D) / "0123456789ab", [p])
    (quarantine(D) / "0123456789ab" / "quarantine.json").write_text('{"rows": 10, "failures": []}')


def test_an_old_lake_moves_into_the_table_every_row_once(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    old_lake(root)
    done = {h.start: h for h in migrate(root)}
    assert (done[A].validated, done[A].quarantined) == (40, 3)
    assert (done[B].validated, done[B].extracted) == (30, 5)
    assert done[C].quarantined == 20 and done[D].kept_as_file == 10
    a, b, c, d = (lake.partition(root, h) for h in (A, B, C, D))
    assert a.status == b.status == "validated" and b.pending_parts == 1
    assert c.status == d.status == "quarantined"
    assert lake.read_partition(b).num_rows == 30 and lake.read_partition(a).num_rows == 40
    counts = {h: lake_quarantine.row_counts(root, h) for h in (A, B, C, D)}
    assert [counts[h]["total"] for h in (A, B, C, D)] == [43, 35, 20, 10]  # every row of the old lake, once
    held = table.read_rows(table.open_table(root), C, [table.QUARANTINED], columns=table.TABLE_SCHEMA.names)
    assert set(held[table.REASON_COLUMN].to_pylist()) == {"expect_column_values_to_be_unique"}
    assert (root / OLD / lake.hour_key(A) / "_manifest.json").is_file()  # the old hours are kept
    record = json.loads((lake.partition_dir(root, A) / "_validation.json").read_text())
    assert record["statistics"]["rows"] == 1 and record["sha256"] == a.manifest["sha256"]
    # one commit per hour with rows for the table (D's stay a file); again: nothing to do
    version = table.open_table(root).version()
    assert version == 2 and done[D].version is None and all(h.version is None for h in migrate(root))
    assert table.open_table(root).version() == version


def test_a_lake_without_the_old_format_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="holds no lake in the old format"):
        migrate(tmp_path / "lake")


def test_a_migration_killed_after_an_hours_commit_gets_its_record_on_the_next_run(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The hour's validation record is written pending before its commit: a run killed after the
    commit (here: before the record is published) leaves it to the next run, which finishes it."""
    root = tmp_path / "lake"
    old_lake(root)
    real = lake_quarantine.finish_record

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # what a kill leaves: nothing after the commit ran

    monkeypatch.setattr(lake_quarantine, "finish_record", killed)
    with pytest.raises(KeyboardInterrupt):
        migrate(root)
    assert table.files_of(table.open_table(root), A)  # A's commit was made ...
    assert not (lake.partition_dir(root, A) / "_validation.json").exists()  # ... and its record is pending
    monkeypatch.setattr(lake_quarantine, "finish_record", real)
    done = {h.start: h for h in migrate(root)}
    assert done[A].version is None and done[B].validated == 30  # A skipped, the rest migrated
    record = json.loads((lake.partition_dir(root, A) / "_validation.json").read_text())
    assert record["sha256"] == lake.partition(root, A).manifest["sha256"] and record["version"] == 0  # the commit that created the table
    assert record["migrated_from"] == f"{OLD}/{lake.hour_key(A)}"
    assert not (lake.partition_dir(root, A) / "_validation.pending.json").exists()
