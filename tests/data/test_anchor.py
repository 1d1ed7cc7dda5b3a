"""The frozen anchor: stratified, content-hashed, refreshed only on purpose; the score cache."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from incremental.data import lake
from incremental.data import table as delta
from incremental.hours import Hour
from incremental.judge import anchor, anchor_table, score_cache, strata

H0 = Hour(2025, 3, 1, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)
# rows per (hour offset, category); hour 2 is extracted but not validated, hour 4 is missing
LAYOUT = {
    0: {"books": 60, "toys": 30, "garden": 10},
    1: {"books": 40, "toys": 50, "music": 1},
    3: {"books": 20, "garden": 29},
}


def write_hour(root: Path, start: datetime, per_category: dict[str, int], validated: bool = True) -> str:
    rows = [(cat, i) for cat, n in per_category.items() for i in range(n)]
    n = len(rows)
    ts = [start + timedelta(seconds=i) for i in range(n)]
    table = pa.table(
        {
            "event_id": [f"{start:%H}-{cat}-{i}" for cat, i in rows],
            "event_ts": ts,
            "ingested_at": ts,
            "session_id": [f"s{i % 7}" for i in range(n)],
            "user_id": [f"u{i % 5}" for i in range(n)],
            "query": [f"q{i % 3}" for i in range(n)],
            "product_id": [f"p{i}" for i in range(n)],
            "position": [i % 10 + 1 for i in range(n)],
            "clicked": [int(i % 4 == 0) for i in range(n)],
            "title": [f"title {i}" for i in range(n)],
            "brand": ["acme"] * n,
            "category": [cat for cat, _ in rows],
            "price": [9.99] * n,
        },
        schema=lake.SEARCH_LOG_SCHEMA,
    )
    status = delta.VALIDATED if validated else delta.EXTRACTED
    delta.append(root, start, delta.with_status(table, start, status), "test fixture", {})
    return str(lake.partition(root, start).manifest["sha256"])


@pytest.fixture
def lake_root(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    for offset, cats in LAYOUT.items():
        write_hour(root, H0 + offset * HOUR, cats)
    write_hour(root, H0 + 2 * HOUR, {"books": 500}, validated=False)
    return root


def iso(offset: int) -> str:
    return f"{H0 + offset * HOUR:%Y-%m-%dT%H:%MZ}"


def test_freeze_stratifies_by_hour_and_category(lake_root: Path) -> None:
    total = sum(sum(c.values()) for c in LAYOUT.values())  # 240
    info = anchor.freeze(lake_root, H0, H0 + 5 * HOUR, size=48, seed=1, reason="first anchor")
    frame, loaded = anchor.load(lake_root)
    assert loaded == info and len(frame) == info.rows == 48
    assert list(frame.columns) == anchor.ANCHOR_SCHEMA.names
    # only validated hours: hour 2 (extracted) and hour 4 (missing) are skipped and said so
    assert set(info.source_hours) == {iso(0), iso(1), iso(3)}
    assert info.skipped_hours == {iso(2): "extracted", iso(4): "missing"}
    assert info.source_hours[iso(0)] == lake.partition(lake_root, H0).manifest["sha256"]
    counts = frame.groupby([frame.source_hour.dt.strftime("%Y-%m-%dT%H:%MZ"), "category"]).size().to_dict()
    for offset, cats in LAYOUT.items():
        for cat, n in cats.items():
            got = counts.get((iso(offset), cat), 0)
            assert got >= 1, (offset, cat)  # every non-empty stratum is represented
            assert abs(got - 48 * n / total) <= 1.0, (offset, cat, got)  # proportional
    assert counts[(iso(1), "music")] == 1  # the one-row stratum made it in
    # quotas x0.2: 12 6 2 / 8 10 0.2 / 4 5.8; music is raised to 1, which leaves no room to round 5.8 up
    assert info.per_hour == {iso(0): 20, iso(1): 19, iso(3): 9}
    assert sum(info.per_category.values()) == 48 and set(info.per_category) == {"books", "toys", "garden", "music"}
    assert info.available_per_hour[iso(0)] == 100
    # rows really come from the stratum they claim
    assert (frame.event_id.str[:2] == frame.source_hour.dt.strftime("%H")).all()
    text = anchor.show(lake_root)
    assert info.sha256 in text and "music" in text and iso(3) in text and "first anchor" in text


def test_allocation_edge_cases() -> None:
    assert strata.allocate({"a": 5, "b": 5}, 100) == {"a": 5, "b": 5}
    assert strata.allocate({"a": 90, "b": 9, "c": 1}, 10) == {"a": 8, "b": 1, "c": 1}
    assert strata.allocate({"a": 9, "b": 5, "c": 1, "d": 0}, 2) == {"a": 1, "b": 1, "c": 0}
    alloc = strata.allocate({i: n for i, n in enumerate([1] * 30 + [1000])}, 40)
    assert sum(alloc.values()) == 40 and all(v >= 1 for v in alloc.values())


def test_hash_is_stable_for_the_same_inputs(lake_root: Path, tmp_path: Path) -> None:
    first = anchor.freeze(lake_root, H0, H0 + 5 * HOUR, size=48, seed=1)
    twin = tmp_path / "twin"
    for offset, cats in LAYOUT.items():
        write_hour(twin, H0 + offset * HOUR, cats)
    second = anchor.freeze(twin, H0, H0 + 5 * HOUR, size=48, seed=1, reason="elsewhere")
    assert second.sha256 == first.sha256
    other_seed = anchor.freeze(twin, H0, H0 + 5 * HOUR, size=48, seed=2, refresh=True)
    assert other_seed.sha256 != first.sha256
    # a changed anchor file is caught
    (path,) = (Path(u) for u in DeltaTable(anchor_table.uri(lake_root)).file_uris())
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(anchor.AnchorError, match="changed"):
        anchor.load(lake_root)


def test_refresh_requires_the_flag_and_keeps_history(lake_root: Path) -> None:
    old = anchor.freeze(lake_root, H0, H0 + 2 * HOUR, size=30, reason="bootstrap")
    with pytest.raises(anchor.AnchorExistsError, match="--refresh"):
        anchor.freeze(lake_root, H0, H0 + 5 * HOUR, size=40)
    assert anchor.load(lake_root)[1] == old  # untouched
    new = anchor.freeze(lake_root, H0, H0 + 5 * HOUR, size=40, reason="new categories", refresh=True)
    assert new.sha256 != old.sha256 and new.previous_sha256 == old.sha256
    folder = anchor.anchor_dir(lake_root)
    # each anchor is a version of the anchor_set table: the old one is still there, intact, by time travel
    assert (old.table_version, new.table_version) == (0, 1)
    assert hashlib.sha256(anchor_table.read_bytes(lake_root, 0) or b"").hexdigest() == old.sha256
    (record,) = anchor.history(lake_root)
    assert record["sha256"] == old.sha256 and record["reason"] == "bootstrap" and record["table_version"] == 0
    assert record["replaced_because"] == "new categories" and record["archived_file"] is None
    assert json.loads((folder / anchor.INFO_FILE).read_text())["sha256"] == new.sha256
    assert anchor.load(lake_root)[1] == new
    assert old.sha12 in anchor.show(lake_root) and "new categories" in anchor.show(lake_root)
    assert "forgetting budget: none" in anchor.show(lake_root) and new.baseline_version is None
    anchor.freeze(lake_root, H0, H0 + 5 * HOUR, size=45, refresh=True)
    assert [r["sha256"] for r in anchor.history(lake_root)] == [old.sha256, new.sha256]
    commits = DeltaTable(anchor_table.uri(lake_root)).history()  # an outside reader: one commit each
    assert sorted((c["event"], c["sha256"]) for c in commits) == sorted(
        [("freeze", old.sha256), ("refresh", new.sha256), ("refresh", anchor.current(lake_root).sha256)])
    assert not list(folder.glob("*.parquet"))  # the rows are in the table only


def test_a_rolled_anchor_carries_the_unchanged_slices_old_rows(lake_root: Path) -> None:
    """A drift episode rolls the anchor to recent rows; the rows of the slices that did not change
    stay, so what still holds is measured on what it was."""
    anchor.freeze(lake_root, H0, H0 + 2 * HOUR, size=60, reason="bootstrap")
    old, _ = anchor.load(lake_root)
    unchanged = old[old["category"] != "toys"]  # toys changed
    carry = pa.Table.from_pandas(unchanged, preserve_index=False)
    rolled = anchor.freeze(lake_root, H0 + 3 * HOUR, H0 + 4 * HOUR, size=20, reason="drift", refresh=True, carry=carry,
                           baseline_version="4", protected_categories=["books", "garden"])
    new, info = anchor.load(lake_root)
    assert (info.baseline_version, info.protected_categories) == ("4", ["books", "garden"])  # the forgetting budget
    assert "candidates held to version 4 on books, garden" in anchor.show(lake_root)
    anchor.freeze(lake_root, H0, H0 + 2 * HOUR, size=20, refresh=True, baseline_version="5", protected_categories=[])
    assert "forgetting budget: none (no category was measured stable when version 5 served)" in anchor.show(lake_root)
    assert info == rolled and anchor.history(lake_root)[0]["replaced_because"] == "drift"
    carried = new[new["source_hour"] < H0 + 3 * HOUR]
    assert len(carried) == min(20, len(unchanged)) and "toys" not in set(carried["category"])
    assert set(carried["event_id"]) <= set(unchanged["event_id"])
    assert len(new) - len(carried) == 20  # the recent sample, as asked
    assert sum(info.per_category.values()) == len(new)


def test_freeze_needs_a_validated_hour(tmp_path: Path) -> None:
    with pytest.raises(anchor.AnchorError, match="no validated hour"):
        anchor.freeze(tmp_path / "lake", H0, H0 + 3 * HOUR, size=10)


def test_cache_computes_once_per_version_and_anchor(lake_root: Path) -> None:
    info = anchor.freeze(lake_root, H0, H0 + 5 * HOUR, size=48)
    calls: list[str] = []

    def compute(version: str):
        def run() -> np.ndarray:
            calls.append(version)
            return np.linspace(0, 1, info.rows)
        return run

    first = score_cache.cached_scores(lake_root, "3", info.sha256, compute("3"), rows=info.rows)
    again = score_cache.cached_scores(lake_root, "3", info.sha256, compute("3"), rows=info.rows)
    np.testing.assert_array_equal(first, again)
    assert calls == ["3"]
    assert (anchor.anchor_dir(lake_root) / "scores" / info.sha12 / "v3.npy").is_file()
    score_cache.cached_scores(lake_root, "4", info.sha256, compute("4"))
    score_cache.cached_scores(lake_root, "3", "f" * 64, compute("3b"))  # another anchor: another entry
    assert calls == ["3", "4", "3b"]
    # a plain cache folder is used as is
    cache = lake_root.parent / "cache"
    score_cache.cached_scores(cache, "v5", info.sha256, compute("5"))
    assert (cache / "scores" / info.sha12 / "v5.npy").is_file()
    with pytest.raises(ValueError):
        score_cache.cached_scores(cache, "../x", info.sha256, compute("bad"))
    with pytest.raises(ValueError, match="48 rows"):
        score_cache.cached_scores(cache, "6", info.sha256, lambda: np.zeros(3), rows=info.rows)


def test_holdout_window_gives_only_unseen_rows_of_the_categories_asked(lake_root: Path) -> None:
    """What a rolled anchor carries for the stable categories besides the old anchor's rows."""
    from incremental.model.replay import holdout_mask

    table = anchor.holdout_window(lake_root, H0, H0 + 5 * HOUR, 0.5, ["books"])
    frame = table.to_pandas()
    assert set(frame["category"]) == {"books"} and holdout_mask(frame["session_id"], 0.5).all()
    assert H0 + 2 * HOUR not in set(frame["source_hour"])  # not validated: skipped
    assert anchor.holdout_window(lake_root, H0, H0 + 5 * HOUR, 0.5, ["no-such-category"]) is None
    assert anchor.holdout_window(lake_root, H0 + 5 * HOUR, H0 + 5 * HOUR, 0.5, ["books"]) is None


def test_an_anchor_frozen_before_the_table_still_loads_and_is_kept_when_refreshed(lake_root: Path) -> None:
    import shutil

    old = anchor.freeze(lake_root, H0, H0 + 2 * HOUR, size=30, reason="bootstrap")
    folder = anchor.anchor_dir(lake_root)
    data = anchor_table.read_bytes(lake_root, 0) or b""
    shutil.rmtree(lake_root / anchor_table.TABLE)  # as the lake held it before: anchor.parquet, no table version
    (folder / anchor.ANCHOR_FILE).write_bytes(data)
    legacy = {k: v for k, v in old.to_dict().items() if k != "table_version"}
    (folder / anchor.INFO_FILE).write_text(json.dumps(legacy))
    frame, info = anchor.load(lake_root)
    assert info.table_version is None and info.sha256 == old.sha256 and len(frame) == old.rows
    new = anchor.freeze(lake_root, H0, H0 + 5 * HOUR, size=40, reason="new categories", refresh=True)
    assert new.table_version == 0 and anchor.load(lake_root)[1] == new
    (record,) = anchor.history(lake_root)
    assert record["archived_file"] == f"anchor-{old.sha12}.parquet" and (folder / record["archived_file"]).is_file()
