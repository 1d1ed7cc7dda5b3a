"""Importing a relevance-judgment CSV: products, timestamped impressions, slicing, clear errors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest
from judgment_imports import COLS, FIXTURE, T0, H, import_fixture  # noqa: F401 - shared

from incremental.config import Settings
from incremental.data.warehouse import Warehouse
from incremental.sim.judgments import JudgmentsError, import_judgments

_import = import_fixture


def _rows(warehouse: Warehouse) -> pd.DataFrame:
    frame = warehouse.query_arrow("extract_search_logs", {"start": T0 - H, "end": T0 + 48 * H}).to_pandas()
    return frame.sort_values("event_id").reset_index(drop=True)


def test_fixture_is_latin1_with_non_ascii() -> None:
    raw = FIXTURE.read_bytes()
    assert "é".encode("latin-1") in raw
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")


def test_import_the_fixture(settings: Settings) -> None:
    warehouse = Warehouse(settings.warehouse_url)
    summary = _import(warehouse)
    assert summary["pairs"] == summary["impressions"] == 60
    assert summary["products"] == 55  # some rows share a title: one product each
    assert summary["hours"] == 6 and summary["skipped"] == 0
    frame = _rows(warehouse)
    assert len(frame) == 60 and frame["event_id"].is_unique
    assert frame["title"].notna().all()  # every impression joins its product
    assert frame["title"].str.contains("Café").any() and "Café" in set(frame["brand"])  # é survived
    assert set(frame["clicked"]) <= {0, 1} and frame["position"].between(1, 10).all()
    # `rate` impressions per event hour, from `start`
    per_hour = frame["event_ts"].dt.floor("h").value_counts().sort_index()
    assert per_hour.tolist() == [10] * 6 and per_hour.index[0] == pd.Timestamp(T0)
    assert ((frame["ingested_at"] - frame["event_ts"]).dt.total_seconds().between(1, 300)).all()
    # each query's pairs form one session's page, positions 1..n
    for _, page in frame.groupby("session_id"):
        assert page["query"].nunique() == 1
        assert sorted(page["position"]) == list(range(1, len(page) + 1))
    # clicks: never on the lowest grade, Bernoulli(normalised grade x position bias) otherwise
    grades = pd.read_csv(FIXTURE, encoding="latin-1").set_index(["search", "product_name"])["score"]
    frame["grade"] = [grades.loc[(q, t)].max() for q, t in zip(frame["query"], frame["title"], strict=True)]
    assert frame.loc[frame["grade"] == grades.min(), "clicked"].sum() == 0
    assert frame["clicked"].sum() > 0


def test_brand_slicing_drifts_from_hour_to_hour(settings: Settings, tmp_path: Path) -> None:
    by_brand = Warehouse(settings.warehouse_url)
    summary = _import(by_brand)
    assert set(summary["categories"]) == {"Café", "Voltrex", "Lumière", "Aquastream", "Stanwell", "Greenfield"}
    frame = _rows(by_brand)
    hour = frame["event_ts"].dt.floor("h")
    dominant = frame.groupby(hour)["category"].agg(lambda c: c.value_counts().index[0])
    share = frame.groupby(hour)["category"].agg(lambda c: c.value_counts(normalize=True).iloc[0])
    assert dominant.nunique() >= 5 and share.mean() >= 0.7

    by_hash = Warehouse(f"duckdb:///{tmp_path / 'hash.duckdb'}")
    _import(by_hash, slice_by="hash")
    hashed = _rows(by_hash)
    assert hashed["category"].str.fullmatch(r"bucket-\d\d").all()
    brand_share = hashed.groupby(hashed["event_ts"].dt.floor("h"))["brand"].agg(
        lambda c: c.value_counts(normalize=True).iloc[0]
    )
    assert brand_share.mean() < share.mean()  # spread evenly: no hour is one brand's


def test_top_brands_and_other(settings: Settings, tmp_path: Path) -> None:
    rows = [(f"Brand{b:02d} Thing {i}", f"query {b}", 2) for b in range(25) for i in range(b + 1)]
    path = tmp_path / "many.csv"
    pd.DataFrame(rows, columns=["title", "q", "g"]).to_csv(path, index=False)
    warehouse = Warehouse(settings.warehouse_url)
    summary = import_judgments(warehouse, path, query_col="q", title_col="title", grade_col="g", start=T0, rate=100)
    assert len(summary["categories"]) == 21 and "other" in summary["categories"]
    frame = _rows(warehouse)
    assert set(frame.loc[frame["brand"].isin(["Brand00", "Brand04"]), "category"]) == {"other"}
    assert set(frame.loc[frame["brand"] == "Brand24", "category"]) == {"Brand24"}
    assert frame["clicked"].sum() > 0  # all grades equal: every pair counts as relevant


def test_deterministic_by_seed(settings: Settings, tmp_path: Path) -> None:
    a = Warehouse(settings.warehouse_url)
    b = Warehouse(f"duckdb:///{tmp_path / 'b.duckdb'}")
    c = Warehouse(f"duckdb:///{tmp_path / 'c.duckdb'}")
    _import(a, seed=3)
    _import(b, seed=3)
    _import(c, seed=4)
    pd.testing.assert_frame_equal(_rows(a), _rows(b))
    ra, rc = _rows(a), _rows(c)
    assert set(ra["product_id"]) == set(rc["product_id"])  # product ids hash the title, not the seed
    assert not (ra[["query", "position", "clicked"]].equals(rc[["query", "position", "clicked"]]))


def test_zip_holding_one_csv(settings: Settings, tmp_path: Path) -> None:
    archive = tmp_path / "judgments.csv.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(FIXTURE, "judgments.csv")
    summary = _import(Warehouse(settings.warehouse_url), archive)
    assert summary["pairs"] == 60


# --- clear errors -----------------------------------------------------------------------------------
def test_bad_encoding_suggests_the_option(settings: Settings) -> None:
    with pytest.raises(JudgmentsError, match=r"not valid utf-8.*--encoding latin-1"):
        _import(Warehouse(settings.warehouse_url), encoding="utf-8")
    with pytest.raises(JudgmentsError, match="unknown encoding"):
        _import(Warehouse(settings.warehouse_url), encoding="klingon-8")


def test_missing_column_is_named(settings: Settings) -> None:
    with pytest.raises(JudgmentsError, match=r"column 'relevance' \(--grade-col\) not found.*search, score"):
        _import(Warehouse(settings.warehouse_url), grade_col="relevance")


def test_non_numeric_grades_are_named(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("search,product_name,score\ndrill,Voltrex Drill,3\nsaw,Voltrex Saw,high\nhose,Hose,\n")
    with pytest.raises(JudgmentsError, match=r"2 non-numeric or missing grade.*'score'.*line 3: 'high'"):
        _import(Warehouse(settings.warehouse_url), path, encoding="utf-8")


@pytest.mark.parametrize(("content", "message"), [("", "is empty"), ("search,product_name,score\n", "no rows")])
def test_empty_files(settings: Settings, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(JudgmentsError, match=message):
        _import(Warehouse(settings.warehouse_url), path)


def test_other_bad_inputs(settings: Settings, tmp_path: Path) -> None:
    warehouse = Warehouse(settings.warehouse_url)
    with pytest.raises(JudgmentsError, match="no such file"):
        _import(warehouse, tmp_path / "nope.csv")
    with pytest.raises(JudgmentsError, match="a directory: name the CSV"):
        _import(warehouse, tmp_path)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("search,product_name,score\ndrill,Drill,3\nsaw,Saw,2,extra\n")
    with pytest.raises(JudgmentsError, match="not a well-formed CSV: .*line 3") as ragged_error:
        _import(warehouse, ragged)
    assert not str(ragged_error.value).endswith("\n")  # one line, as the CLI prints it
    with pytest.raises(JudgmentsError, match="slice_by"):
        _import(warehouse, slice_by="colour")
    with pytest.raises(JudgmentsError, match="rate"):
        _import(warehouse, rate=0)
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(FIXTURE, "a.csv")
        zf.write(FIXTURE, "b.csv")
    with pytest.raises(JudgmentsError, match="could not be read as one CSV"):
        _import(warehouse, archive)
    blank = tmp_path / "blank.csv"
    blank.write_text("search,product_name,score\n,Drill,3\nsaw,,2\n")
    with pytest.raises(JudgmentsError, match="no row has both a query"):
        _import(warehouse, blank)
