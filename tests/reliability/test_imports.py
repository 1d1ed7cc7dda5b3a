"""Judgment imports (issue 20, defects 11 and 23), on a real DuckDB warehouse and the fixture CSV.

- The same import twice changes nothing (its event ids name it: seed, start hour and a digest of
  its rows and options); two different files with the same --start and --seed get ids of their
  own, so no hour is later quarantined for duplicate event ids.
- A row repeated exactly is imported once (a warning says so); a grade far from the
  others (1e300), which would squash every other grade, is refused naming its line.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from judgment_imports import COLS, FIXTURE, T0, H, import_fixture  # noqa: F401 - shared

from incremental.data.warehouse import Warehouse
from incremental.sim.judgments import JudgmentsError, import_judgments

_import = import_fixture


def _event_ids(warehouse: Warehouse) -> pd.Series:
    return warehouse.query_arrow("extract_search_logs", {"start": T0 - H, "end": T0 + 48 * H}).to_pandas()["event_id"]


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")


def test_the_same_import_twice_changes_nothing(warehouse: Warehouse) -> None:
    first = _import(warehouse)
    before = _event_ids(warehouse)
    again = _import(warehouse)
    assert not first["already_imported"] and again["already_imported"]
    assert again["import_id"] == first["import_id"]
    after = _event_ids(warehouse)
    assert len(after) == len(before) == 60 and after.is_unique


def test_two_files_with_the_same_start_and_seed_get_distinct_ids(warehouse: Warehouse, tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    frame = pd.read_csv(FIXTURE, encoding="latin-1")
    frame.assign(search=frame["search"] + " deluxe").to_csv(other, index=False, encoding="latin-1")
    a, b = _import(warehouse), _import(warehouse, other)
    assert a["import_id"] != b["import_id"] and not b["already_imported"]
    ids = _event_ids(warehouse)
    assert len(ids) == 120 and ids.is_unique
    # the same file laid out otherwise (another rate) is another import too
    c = _import(warehouse, rate=20)
    assert c["import_id"] not in (a["import_id"], b["import_id"])
    assert _event_ids(warehouse).is_unique


def test_a_partial_earlier_load_is_refused_with_the_way_out(warehouse: Warehouse) -> None:
    summary = _import(warehouse)
    import duckdb

    with duckdb.connect(warehouse.duckdb_path) as con:
        con.execute("DELETE FROM search_impressions WHERE event_id IN "
                    "(SELECT event_id FROM search_impressions ORDER BY event_id LIMIT 5)")
    with pytest.raises(JudgmentsError, match=f"55 of its 60 impressions .*{summary['import_id']}"):
        _import(warehouse)


# --- defect 23: repeated rows and a far-off grade --------------------------------------------------
def test_repeated_rows_are_one_pair_with_a_warning(warehouse: Warehouse, tmp_path: Path, caplog) -> None:
    path = tmp_path / "repeated.csv"
    rows = [("drill", "Voltrex Cordless Drill", 3)] * 400 + [("drill", f"Voltrex Bit {i}", 1) for i in range(9)]
    pd.DataFrame(rows, columns=["q", "t", "g"]).to_csv(path, index=False)
    summary = import_judgments(warehouse, path, query_col="q", title_col="t", grade_col="g", start=T0, rate=100)
    assert summary["pairs"] == 10 and summary["duplicates"] == 399
    assert "repeat an earlier row exactly" in caplog.text
    frame = warehouse.query_arrow("extract_search_logs", {"start": T0 - H, "end": T0 + 48 * H}).to_pandas()
    assert frame.groupby("session_id")["product_id"].agg(lambda p: p.is_unique).all()  # one product once a page


def test_a_grade_far_from_the_others_is_refused_naming_its_line(warehouse: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "typo.csv"
    rows = [(f"query {i % 7}", f"Brand Thing {i}", 1 + i % 3) for i in range(50)]
    rows[20] = ("query 6", "Brand Thing 20", 1e300)
    pd.DataFrame(rows, columns=["q", "t", "g"]).to_csv(path, index=False)
    with pytest.raises(JudgmentsError, match=r"1 grade\(s\) in column 'g' far from the others \(line 22: 1e\+300"):
        import_judgments(warehouse, path, query_col="q", title_col="t", grade_col="g", start=T0, rate=100)
    assert not Path(warehouse.duckdb_path).exists()  # refused before anything was loaded
