"""Extraction against the real embedded DuckDB and the real PostgreSQL on this machine."""

from __future__ import annotations

from datetime import UTC, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from incremental.data import extract, lake, table
from incremental.data import quarantine as lake_quarantine
from incremental.data.warehouse import Warehouse
from incremental.hours import HOUR, Hour

T0 = Hour(2026, 3, 1, 10, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
NASTY = ["'; DROP TABLE search_impressions; --", "\" OR 1=1 --", "100% _under\\score", "naïve café \u2603", ""]


def products() -> pa.Table:
    return pa.table({
        "product_id": ["p1", "p2", "p3"],
        "title": ["cordless drill 18v", "white interior paint", "garden hose 50ft"],
        "brand": ["acme", "brite", "greenco"],
        "category": ["tools", "paint", "garden"],
        "price": [99.0, 25.5, 30.0],
        "created_at": pa.array([T0 - timedelta(days=30)] * 3, TS),
    })


def impressions() -> pa.Table:
    """Rows around the hour [T0, T0+1h): boundaries, a late arrival, an unknown product, nasty text."""
    rows = [
        # (event_id, event_ts, ingested_at, query, product_id, position, clicked)
        ("e-before", T0 - timedelta(minutes=5), T0 - timedelta(microseconds=1), "drill", "p1", 1, 1),
        ("e-start", T0, T0, "drill", "p1", 1, 1),
        ("e-late", T0 - timedelta(hours=5), T0 + timedelta(minutes=7), "paint", "p2", 2, 0),
        ("e-unknown-product", T0 + timedelta(minutes=8), T0 + timedelta(minutes=9), "hose", "p404", 3, 0),
        ("e-last", T0 + timedelta(minutes=59), T0 + timedelta(minutes=59, seconds=59, microseconds=999999), "hose", "p3", 1, 1),
        ("e-end", T0 + timedelta(minutes=59), T0 + timedelta(hours=1), "hose", "p3", 2, 0),
    ]
    rows += [(f"e-nasty-{i}", T0 + timedelta(minutes=10), T0 + timedelta(minutes=11), q, "p2", i + 1, 0)
             for i, q in enumerate(NASTY)]
    ids, ets, ing, query, pid, pos, clicked = zip(*rows, strict=True)
    n = len(rows)
    return pa.table({
        "event_id": list(ids), "event_ts": pa.array(ets, TS), "ingested_at": pa.array(ing, TS),
        "session_id": [f"s{i % 3}" for i in range(n)], "user_id": [f"u{i % 2}" for i in range(n)],
        "query": list(query), "product_id": list(pid),
        "position": pa.array(pos, pa.int32()), "clicked": pa.array(clicked, pa.int32()),
    })


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if request.param == "duckdb":
        url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    else:
        url = request.getfixturevalue("postgres_url")
    w = Warehouse(url)
    w.init_schema()
    w.insert("products", products())
    w.insert("search_impressions", impressions())
    return w


def test_hour_holds_exactly_the_rows_ingested_in_it(warehouse: Warehouse, tmp_path: Path) -> None:
    manifest = extract.extract_hour(warehouse, tmp_path / "lake", T0)
    rows = lake.read_partition(lake.partition(tmp_path / "lake", T0))
    ids = set(rows.column("event_id").to_pylist())
    assert "e-start" in ids and "e-last" in ids and "e-late" in ids  # half-open, by ingested_at
    assert "e-before" not in ids and "e-end" not in ids
    assert "e-unknown-product" in ids  # LEFT JOIN: kept, for validation to judge
    assert manifest["rows"] == rows.num_rows == extract.warehouse_count(warehouse, T0) == 4 + len(NASTY)
    assert rows.schema.equals(lake.SEARCH_LOG_SCHEMA)
    # the late event's event_ts is in the manifest's range
    assert manifest["min_event_ts"] == (T0 - timedelta(hours=5)).isoformat()
    # neighbouring hours get the boundary rows: nothing lost, nothing twice
    before = extract.extract_hour(warehouse, tmp_path / "lake", T0 - HOUR)
    after = extract.extract_hour(warehouse, tmp_path / "lake", T0 + HOUR)
    assert before["rows"] == 1 and after["rows"] == 1


def test_sql_metacharacters_are_plain_data(warehouse: Warehouse, tmp_path: Path) -> None:
    extract.extract_hour(warehouse, tmp_path / "lake", T0)
    part = lake.partition(tmp_path / "lake", T0)
    rows = {r["event_id"]: r for r in lake.read_partition(part).to_pylist()}
    assert [rows[f"e-nasty-{i}"]["query"] for i in range(len(NASTY))] == NASTY
    assert extract.warehouse_count(warehouse, T0) == part.manifest["rows"]  # the tables are still there


def test_re_extraction_commits_nothing_new(warehouse: Warehouse, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    first = extract.extract_hour(warehouse, root, T0)
    second = extract.extract_hour(warehouse, root, T0)
    assert first["sha256"] == second["sha256"] and second["delta_rows"] == 0
    dt = table.open_table(root)
    assert dt is not None and dt.version() == first["version"] == second["version"] == 0  # one commit, not two
    (commit,) = table.hour_versions(dt, T0)
    assert commit["event"] == "extract" and commit["hour"] == "2026-03-01T10:00Z"
    assert commit["rows_sha256"] == first["sha256"] and commit["sql_sha256"] == first["sql_sha256"]
    assert lake_quarantine.row_counts(root, T0)["total"] == extract.warehouse_count(warehouse, T0)


def test_late_rows_are_one_append_of_only_the_new_rows(warehouse: Warehouse, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    extract.extract_hour(warehouse, root, T0)
    late = impressions().slice(0, 1).to_pylist()[0] | {"event_id": "e-later", "ingested_at": T0 + timedelta(minutes=30)}
    warehouse.insert("search_impressions", pa.Table.from_pylist([late], schema=impressions().schema))
    again = extract.extract_hour(warehouse, root, T0)
    assert again["delta_rows"] == 1 and again["version"] == 1
    commits = table.hour_versions(table.open_table(root), T0)
    assert [c["event"] for c in commits] == ["extract", "late_rows"] and commits[1]["rows"] == "1"
    rows = lake.read_partition(lake.partition(root, T0))
    assert rows.num_rows == extract.warehouse_count(warehouse, T0) and "e-later" in rows["event_id"].to_pylist()
    assert extract.extract_hour(warehouse, root, T0)["delta_rows"] == 0  # and nothing twice


def test_empty_hour_is_staged_for_validation(warehouse: Warehouse, tmp_path: Path) -> None:
    empty_hour = T0 + timedelta(hours=5)
    manifest = extract.extract_hour(warehouse, tmp_path / "lake", empty_hour)
    assert manifest["rows"] == 0 and manifest["min_event_ts"] is None and manifest["staged"]
    staged = lake.staged_file(tmp_path / "lake", empty_hour)
    assert staged is not None
    rows = lake.read_parquet(staged)
    assert rows.num_rows == 0 and rows.schema.equals(lake.SEARCH_LOG_SCHEMA)
    assert lake.partition(tmp_path / "lake", empty_hour).status == "extracted"
    assert table.open_table(tmp_path / "lake") is None  # the table holds rows only


def test_duckdb_and_postgresql_give_the_same_bytes(tmp_path: Path, postgres_url: str) -> None:
    shas = []
    for name, url in [("duck", f"duckdb:///{tmp_path / 'w.duckdb'}"), ("pg", postgres_url)]:
        w = Warehouse(url)
        w.init_schema()
        w.insert("products", products())
        w.insert("search_impressions", impressions())
        shas.append(extract.extract_hour(w, tmp_path / name, T0)["sha256"])
    assert shas[0] == shas[1]


def test_a_changed_column_type_reaches_validation_unchanged(tmp_path: Path) -> None:
    """A warehouse whose clicked column became text: extraction keeps the text type for validation to see."""
    w = Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}")
    w.init_schema()
    w.insert("products", products())
    w.insert("search_impressions", impressions())
    import duckdb

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("DROP INDEX search_impressions_ingested_at")  # DuckDB cannot alter an indexed table
    con.execute("ALTER TABLE search_impressions ALTER clicked TYPE VARCHAR")
    con.close()
    manifest = extract.extract_hour(w, tmp_path / "lake", T0)
    assert manifest["columns"]["clicked"] == "string"
    staged = lake.staged_file(tmp_path / "lake", T0)  # not rows of the table: staged as it came
    assert staged is not None and lake.read_parquet(staged).schema.field("clicked").type == pa.string()


def test_loading_names_only_known_tables_and_columns(tmp_path: Path) -> None:
    w = Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}")
    w.init_schema()
    with pytest.raises(ValueError, match="unknown warehouse table"):
        w.insert("products; DROP TABLE products", products())
    with pytest.raises(ValueError, match=r"no column\(s\) \['evil\) --'\]"):
        w.insert("products", products().append_column("evil) --", pa.array([1, 2, 3])))
