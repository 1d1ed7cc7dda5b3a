"""The traffic simulator: determinism, rate, late arrivals, faults, drift, both warehouses."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from incremental.config import Settings
from incremental.data.warehouse import Warehouse
from incremental.hours import Hour
from incremental.sim import catalogue, faults, traffic
from incremental.sim import simulate as sim

T0 = Hour(2024, 3, 1, tzinfo=UTC)  # a Friday
H = timedelta(hours=1)
COLUMNS = ["event_id", "event_ts", "ingested_at", "session_id", "user_id", "query", "product_id", "position", "clicked"]


def _wh(settings: Settings) -> Warehouse:
    return Warehouse(settings.warehouse_url)


def _extract(warehouse: Warehouse, start: datetime, end: datetime) -> pd.DataFrame:
    return warehouse.query_arrow("extract_search_logs", {"start": start, "end": end}).to_pandas()


def _all_rows(warehouse: Warehouse) -> pd.DataFrame:
    frame = _extract(warehouse, T0 - 1000 * H, T0 + 1000 * H)[COLUMNS]
    for col in ("position", "clicked"):
        frame[col] = frame[col].astype("Int64")
    return frame.sort_values(["event_id", "ingested_at", "product_id"]).reset_index(drop=True)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    labels = np.asarray(labels).astype(bool)
    ranks = pd.Series(scores).rank().to_numpy()
    n1, n0 = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _tv(a: pd.Series, b: pd.Series) -> float:
    pa_, pb = a.value_counts(normalize=True), b.value_counts(normalize=True)
    return float(0.5 * pa_.subtract(pb, fill_value=0).abs().sum())


# --- determinism, rate, late arrivals, catalogue --------------------------------------------------
def test_one_call_equals_hour_by_hour(settings: Settings, tmp_path) -> None:
    kwargs = dict(rate=230, seed=5, faults=("bad_label", "sql_metacharacters", "huge_title"))
    whole = _wh(settings)
    sim.simulate(whole, T0, T0 + 6 * H, **kwargs)
    hourly = Warehouse(f"duckdb:///{tmp_path / 'hourly.duckdb'}")
    for k in range(6):
        sim.simulate(hourly, T0 + k * H, T0 + (k + 1) * H, **kwargs)
    a, b = _all_rows(whole), _all_rows(hourly)
    assert len(a) == 6 * 230
    pd.testing.assert_frame_equal(a, b)
    # drift with an explicit drift_at is hour-by-hour deterministic too
    _, one, _ = sim.generate(T0, T0 + 4 * H, rate=50, seed=5, scenario="drift", drift_at=T0 + 2 * H)
    parts = [sim.generate(T0 + k * H, T0 + (k + 1) * H, rate=50, seed=5, scenario="drift",
                          drift_at=T0 + 2 * H)[1] for k in range(4)]
    assert one.equals(__import__("pyarrow").concat_tables(parts))
    # event ids are unique, and another seed gives other rows
    assert a["event_id"].is_unique
    _, other, _ = sim.generate(T0, T0 + H, rate=230, seed=6)
    assert other.column("query").to_pylist() != a["query"].iloc[:230].tolist()


def test_rate_is_respected_per_event_hour() -> None:
    _, rows, summary = sim.generate(T0, T0 + 5 * H, rate=137, seed=1)
    frame = rows.to_pandas()
    per_hour = frame["event_ts"].dt.floor("h").value_counts()
    assert per_hour.to_dict() == {pd.Timestamp(T0 + k * H): 137 for k in range(5)}
    assert summary["rows"] == 5 * 137 and sum(summary["per_hour"].values()) == 5 * 137
    assert frame["position"].between(1, traffic.PAGE_SIZE).all() and set(frame["clicked"]) == {0, 1}
    # sessions: one query and one user each, pages of PAGE_SIZE positions 1..10
    sessions = frame.groupby("session_id")
    assert (sessions["query"].nunique() == 1).all() and (sessions["user_id"].nunique() == 1).all()
    assert sessions.size().max() == traffic.PAGE_SIZE


def test_late_arrivals() -> None:
    _, rows, summary = sim.generate(T0, T0 + 24 * H, rate=2000, seed=2)
    frame = rows.to_pandas()
    delay = (frame["ingested_at"] - frame["event_ts"]).dt.total_seconds()
    late = delay >= 3600
    assert 0.025 <= late.mean() <= 0.035  # LATE_SHARE = 3%
    assert delay.min() >= traffic.SHORT_DELAY_MIN_S and delay[~late].max() <= traffic.SHORT_DELAY_MAX_S
    assert delay.max() <= traffic.LATE_DELAY_MAX_H * 3600
    assert summary["late_rows"] == int(late.sum())
    # late rows land in a later hour's partition; some rows arrive after `end`
    ingested_hour, event_hour = frame["ingested_at"].dt.floor("h"), frame["event_ts"].dt.floor("h")
    assert (ingested_hour[late] > event_hour[late]).all()
    assert (frame["ingested_at"] >= pd.Timestamp(T0 + 24 * H)).sum() > 0
    assert summary["per_hour"]["2024-03-02T05:00Z"] > 0  # 5-6 h late arrivals after the window


def test_catalogue_launches_and_reinsert(settings: Settings) -> None:
    warehouse = _wh(settings)
    summary = sim.simulate(warehouse, T0, T0 + 48 * H, rate=300, seed=3)
    products = _extract_products(warehouse)
    assert products["category"].nunique() == len(catalogue.CATEGORIES) == 10
    assert summary["launched_products"] == 2 * catalogue.LAUNCHES_PER_DAY
    launched = products[products["created_at"] >= pd.Timestamp(T0)]
    assert len(launched) == summary["launched_products"]
    frame = _all_rows(warehouse).merge(products, on="product_id")
    assert (frame["event_ts"] >= frame["created_at"]).all()  # never shown before launch
    assert frame["product_id"].isin(launched["product_id"]).any()  # but shown after it
    again = sim.simulate(warehouse, T0, T0 + H, rate=10, seed=3)  # the catalogue again: harmless
    assert again["products"] > 0 and len(_extract_products(warehouse)) == len(products)


def _extract_products(warehouse: Warehouse) -> pd.DataFrame:
    import duckdb

    with duckdb.connect(warehouse.duckdb_path, read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute("SELECT * FROM products").fetch_df()


def test_clicks_follow_the_text_and_the_position() -> None:
    products, rows, _ = sim.generate(T0, T0 + 6 * H, rate=1000, seed=4)
    frame = rows.to_pandas().merge(products.to_pandas()[["product_id", "title", "category"]], on="product_id")
    pairs = zip(frame["query"], frame["title"], strict=True)
    overlap = [len(set(q.split()) & set(t.lower().split())) for q, t in pairs]
    assert _auc(frame["clicked"].to_numpy(), np.array(overlap, dtype=float)) > 0.7
    same_category = (frame["category"] == frame["query_category"]).to_numpy(dtype=float)
    assert _auc(frame["clicked"].to_numpy(), same_category) > 0.6  # 70% of a page is that category
    ctr = frame.groupby("position")["clicked"].mean()
    assert ctr.iloc[0] > 2 * ctr.iloc[-1]


# --- faults ------------------------------------------------------------------------------------
def _bad(fault: str, frame: pd.DataFrame, hour: datetime) -> pd.Series:
    if fault == "null_query":
        return frame["query"].isna()
    if fault == "empty_query":
        return frame["query"] == ""
    if fault == "bad_label":
        return ~frame["clicked"].isin([0, 1])
    if fault == "bad_position":
        return frame["position"] < 1
    if fault == "bad_event_ts":
        return (frame["event_ts"] >= pd.Timestamp(hour + H)) | (frame["event_ts"] < pd.Timestamp(hour - 48 * H))
    if fault == "duplicate_event_id":
        return frame["event_id"].duplicated(keep=False)
    if fault == "huge_title":
        return frame["title"].str.len() >= faults.HUGE_TITLE_BYTES
    if fault == "invalid_text":
        return frame["query"].fillna("").str.contains(r"[\x00-\x1f\x7f]", regex=True)
    raise AssertionError(fault)


# the first ten faults damage a block of rows each (the later ones are tested end to end in tests/reliability)
@pytest.mark.parametrize("fault", [f for f in faults.FAULTS[:10] if f not in ("empty_hour", "sql_metacharacters")])
def test_fault_lands_in_the_asked_hour_only(settings: Settings, fault: str) -> None:
    warehouse = _wh(settings)
    sim.simulate(warehouse, T0, T0 + 2 * H, rate=300, seed=8)
    summary = sim.simulate(warehouse, T0 + 2 * H, T0 + 3 * H, rate=300, seed=8, faults=[fault])
    sim.simulate(warehouse, T0 + 3 * H, T0 + 5 * H, rate=300, seed=8)
    damaged = summary["faults"][fault]["2024-03-01T02:00Z"]
    assert 5 <= len(damaged) <= 20
    for k in range(5):
        hour = T0 + k * H
        part = _extract(warehouse, hour, hour + H)
        bad = _bad(fault, part, hour)
        if k == 2:
            assert bad.sum() >= 5, fault
            assert set(part.loc[bad, "event_id"]) == set(damaged)
            damaged_part = part[bad]
        else:
            assert not bad.any(), (fault, k)
            assert not part["event_id"].isin(damaged).any()
    if fault == "bad_label":
        labels = damaged_part["clicked"]
        assert labels.isna().any() and {2, -1} <= set(labels.dropna().astype(int))
    if fault == "bad_position":
        assert (damaged_part["position"] == 0).any() and (damaged_part["position"] < 0).any()
    if fault == "bad_event_ts":
        assert (damaged_part["event_ts"] > pd.Timestamp(T0 + 3 * H)).any()
        assert (damaged_part["event_ts"] < pd.Timestamp(T0 + 2 * H - 48 * H)).any()


def test_faults_are_combinable_and_disjoint() -> None:
    _, rows, summary = sim.generate(T0, T0 + 2 * H, rate=400, seed=9, faults=faults.FAULTS[:9])
    ids = [i for kind in summary["faults"].values() for hour in kind.values() for i in hour]
    assert len(ids) == len(set(ids))
    _, alone, alone_summary = sim.generate(T0, T0 + 2 * H, rate=400, seed=9, faults=["null_query"])
    assert alone_summary["faults"]["null_query"] == summary["faults"]["null_query"]


def test_sql_metacharacters_are_stored_verbatim(settings: Settings) -> None:
    warehouse = _wh(settings)
    summary = sim.simulate(warehouse, T0, T0 + H, rate=300, seed=10, faults=["sql_metacharacters"])
    damaged = summary["faults"]["sql_metacharacters"]["2024-03-01T00:00Z"]
    part = _extract(warehouse, T0, T0 + H)
    stored = part.set_index("event_id").loc[damaged, "query"]
    assert set(stored) == set(faults.SQL_METACHARACTER_QUERIES)
    assert "'; DROP TABLE search_impressions; --" in set(stored) and "%_\\" in set(stored)
    assert len(_all_rows(warehouse)) == 300  # nothing was dropped or deleted
    assert len(_extract_products(warehouse)) == summary["products"]


def test_empty_hour_moves_arrivals_to_the_next_hour(settings: Settings, tmp_path) -> None:
    clean = Warehouse(f"duckdb:///{tmp_path / 'clean.duckdb'}")
    sim.simulate(clean, T0, T0 + 4 * H, rate=300, seed=11)
    warehouse = _wh(settings)
    sim.simulate(warehouse, T0, T0 + 2 * H, rate=300, seed=11)
    summary = sim.simulate(warehouse, T0 + 2 * H, T0 + 3 * H, rate=300, seed=11, faults=["empty_hour"])
    sim.simulate(warehouse, T0 + 3 * H, T0 + 4 * H, rate=300, seed=11)
    assert summary["outage_moved_stored_rows"] > 0 and summary["outage_moved_rows"] > 0
    assert summary["faults"]["empty_hour"] == {"2024-03-01T02:00Z": []}

    def count(wh: Warehouse, k: int) -> int:
        return len(_extract(wh, T0 + k * H, T0 + (k + 1) * H))

    assert count(warehouse, 2) == 0
    assert count(warehouse, 3) == count(clean, 2) + count(clean, 3)
    assert [count(warehouse, k) for k in (0, 1, 4)] == [count(clean, k) for k in (0, 1, 4)]
    assert len(_all_rows(warehouse)) == len(_all_rows(clean)) == 1200


# --- drift ---------------------------------------------------------------------------------------
def _rule_ctr(frame: pd.DataFrame, mapping: dict[str, str]) -> tuple[float, float]:
    """CTR of lexical matches and of the remapped category's products, for conflicting queries."""
    conflicting = frame[frame["query_category"].isin(list(mapping))]
    lexical = conflicting["category"] == conflicting["query_category"]
    remapped = conflicting["category"] == conflicting["query_category"].map(mapping)
    return conflicting.loc[lexical, "clicked"].mean(), conflicting.loc[remapped, "clicked"].mean()


def test_drift_changes_category_mix_and_contradicts_the_click_rule() -> None:
    products, rows, summary = sim.generate(T0, T0 + 8 * H, rate=1500, seed=12, scenario="drift")
    assert summary["drift_at"] == "2024-03-01T04:00Z"
    mapping = summary["drift_mapping"]
    assert mapping == traffic.drift_mapping(12) and len(mapping) == traffic.DRIFT_CONFLICT_CATEGORIES
    assert all(a != b for a, b in mapping.items())
    frame = rows.to_pandas().merge(products.to_pandas()[["product_id", "title", "category"]], on="product_id")
    after = frame["event_ts"] >= pd.Timestamp(T0 + 4 * H)
    old, new = frame[~after], frame[after]
    assert _tv(old["query_category"], new["query_category"]) > 0.3
    assert _tv(old["category"], new["category"]) > 0.1
    # the same query words: clicks on their own category before, on another category after
    old_lexical, old_remapped = _rule_ctr(old, mapping)
    new_lexical, new_remapped = _rule_ctr(new, mapping)
    assert old_lexical > 0.2 and old_remapped < 0.05
    assert new_lexical < 0.05 and new_remapped > 0.1
    shared = set(old["query"]) & set(new["query"])
    assert len(shared) > 50  # really the same words
    # text overlap predicts clicks before and anti-predicts them after
    def overlap_auc(part: pd.DataFrame) -> float:
        conflicting = part[part["query_category"].isin(list(mapping))]
        ov = [len(set(q.split()) & set(t.lower().split()))
              for q, t in zip(conflicting["query"], conflicting["title"], strict=True)]
        return _auc(conflicting["clicked"].to_numpy(), np.array(ov, dtype=float))

    assert overlap_auc(old) > 0.7 and overlap_auc(new) < 0.4


def test_steady_keeps_the_click_rule() -> None:
    products, rows, summary = sim.generate(T0, T0 + 8 * H, rate=1500, seed=12)
    assert summary["drift_at"] is None and summary["drift_mapping"] == {}
    frame = rows.to_pandas().merge(products.to_pandas()[["product_id", "category"]], on="product_id")
    after = frame["event_ts"] >= pd.Timestamp(T0 + 4 * H)
    mapping = traffic.drift_mapping(12)
    for part in (frame[~after], frame[after]):
        lexical, remapped = _rule_ctr(part, mapping)
        assert lexical > 0.2 and remapped < 0.05
    assert _tv(frame.loc[~after, "query_category"], frame.loc[after, "query_category"]) < 0.2


def test_vocabulary_drifts_in_steady() -> None:
    """The emerging synonyms' share changes over days (fad cycles)."""
    def emerging_share(day: int) -> float:
        _, rows, _ = sim.generate(T0 + day * 24 * H, T0 + day * 24 * H + 2 * H, rate=2000, seed=13)
        emerging = {forms[2] for c in catalogue.CATEGORIES for forms in c.nouns}
        queries = pd.Series(rows.column("query").to_pylist())
        return float(queries.map(lambda q: any(q == e or q.endswith(" " + e) for e in emerging)).mean())

    shares = [emerging_share(d) for d in (0, 4, 9)]
    assert max(shares) - min(shares) > 0.005 and all(0 < s < traffic.EMERGING_SHARE_MAX for s in shares)


# --- arguments, speed, PostgreSQL ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate"),
        ({"seed": -1}, "seed"),
        ({"scenario": "chaos"}, "scenario"),
        ({"faults": ["meteor"]}, "meteor"),
        ({"drift_at": T0}, "drift_at"),
        ({"end": T0}, "end"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"start": T0, "end": T0 + H, "rate": 10, "seed": 0, **kwargs}
    with pytest.raises(sim.SimulationError, match=message):
        sim.generate(**args)
    with pytest.raises(ValueError, match="on the hour"):
        sim.generate(T0 + timedelta(minutes=5), T0 + H, rate=10, seed=0)


def test_a_day_at_5000_per_hour_is_fast(settings: Settings) -> None:
    began = time.perf_counter()
    summary = sim.simulate(_wh(settings), T0, T0 + 24 * H, rate=5000, seed=0)
    elapsed = time.perf_counter() - began
    assert summary["rows"] == 120_000
    assert elapsed < 60, f"{elapsed:.1f}s: a per-row loop crept in?"  # ~1-2 s here; generous for shared CPUs


def test_postgres_round_trip_matches_duckdb(postgres_url: str, settings: Settings) -> None:
    kwargs = dict(rate=200, seed=14, faults=("sql_metacharacters", "invalid_text", "empty_query", "null_query",
                                             "bad_label", "huge_title"))
    pg, duck = Warehouse(postgres_url), _wh(settings)
    summary = sim.simulate(pg, T0, T0 + 2 * H, **kwargs)
    sim.simulate(duck, T0, T0 + 2 * H, **kwargs)
    a, b = _all_rows(pg), _all_rows(duck)
    assert len(a) == summary["rows"] == 400
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    part = _extract(pg, T0 + H, T0 + 2 * H).set_index("event_id")
    damaged = summary["faults"]["sql_metacharacters"]["2024-03-01T01:00Z"]
    assert set(part.loc[damaged, "query"]) == set(faults.SQL_METACHARACTER_QUERIES)
    huge = summary["faults"]["huge_title"]["2024-03-01T01:00Z"]
    assert (part.loc[huge, "title"].str.len() == faults.HUGE_TITLE_BYTES).all()
    # an outage on PostgreSQL: stored rows of the hour move on too
    outage = sim.simulate(pg, T0 + 3 * H, T0 + 4 * H, rate=200, seed=14, faults=["empty_hour"])
    assert outage["outage_moved_stored_rows"] > 0  # late rows of hours 0-1 that arrived in hour 3
    assert len(_extract(pg, T0 + 3 * H, T0 + 4 * H)) == 0
    assert len(_all_rows(pg)) == 600
