"""Judgment imports (issue 20, defects 11 and 23), on a real DuckDB warehouse and the fixture CSV.

- The same import twice changes nothing (its event ids name it: seed, start hour and a digest of
  its rows and options); two different files with the same --start and --seed get ids of their
  own, so no hour is later quarantined for duplicate event ids.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from incremental.judgments import JudgmentsError, import_judgments
from incremental.warehouse import Warehouse

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "judgments_small.csv"
T0 = datetime(2024, 5, 1, tzinfo=UTC)
H = timedelta(hours=1)
COLS = {"query_col": "search", "title_col": "product_name", "grade_col": "score"}


def _import(warehouse: Warehouse, path: Path = FIXTURE, **overrides) -> dict:
    kwargs = {**COLS, "encoding": "latin-1", "start": T0, "rate": 10, "seed": 0, **overrides}
    return import_judgments(warehouse, path, **kwargs)


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
