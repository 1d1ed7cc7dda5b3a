"""Fault injection for the simulator: bad input of every kind the pipeline must survive.

``faults`` (each a name from :data:`FAULTS`) are injected in every event hour of the call, into
up to :data:`FAULT_ROWS` rows (disjoint blocks per fault) whose ``ingested_at`` lies in that same
hour, so the damage lands in that hour's partition; the summary lists the damaged event ids.
``sql_metacharacters`` is not bad data: those queries must be stored and extracted verbatim.
``invalid_text`` puts control characters (BEL, ESC, BS, DEL, VT, FF) into queries; it cannot use
lone surrogates (``"\\ud800"``) or NUL, because neither can be stored in a UTF-8 database
(PostgreSQL rejects both, DuckDB rejects invalid UTF-8): validation tests those at the frame
level instead. ``empty_hour`` is an upstream outage: nothing is ingested in the hour, and what
would have arrived in it (this call's rows and rows already in the warehouse) arrives one hour
later instead (repeatedly, for consecutive outage hours). Combined with other faults, the
damaged rows of an outage hour move to the next hour with everything else.

The later faults (appended to :data:`FAULTS`): ``zero_clicks`` / ``all_clicked`` (every row of
the hour), ``session_flood`` (90% of the hour's rows in one session), ``replayed_rows`` (every
row of the hour three times, the copies under new event ids), ``event_after_ingest`` (event_ts
later than ingested_at), ``whitespace_query``, ``mojibake_title`` (a product title with the Home
Depot set's ``\x89\xdb\xaa`` mojibake), ``xss_query`` (HTML/script in queries, half of them also
too long), ``late_rows_for_trained_hour`` (rows that belong to the *previous* hour and reach the
warehouse only now: a delta for an hour already extracted), ``unknown_product`` (title null after
the join), ``null_session``, ``long_query``, ``position_too_high`` and ``null_event_ts``.
And ``poisoned_clicks`` damages the whole hour: every session keeps its number of clicks (the CTR is
unchanged) but they move onto its least relevant results, which no CTR or volume check can see;
only the champion's own prequential metrics show it (`incremental.judge.drift`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypedDict

import numpy as np
import pyarrow as pa

from incremental.data.warehouse import Warehouse
from incremental.hours import HOUR, hours, parse_hour
from incremental.sim.catalogue import CATALOGUE_EPOCH, CATEGORIES, HOUR_US, hour_index, stream_rng, to_us

FAULTS = (
    "null_query",
    "bad_label",
    "bad_position",
    "bad_event_ts",
    "duplicate_event_id",
    "empty_query",
    "huge_title",
    "invalid_text",
    "sql_metacharacters",
    "empty_hour",
    # added later; appended so that the earlier faults keep hitting the same rows
    "zero_clicks",
    "all_clicked",
    "session_flood",
    "replayed_rows",
    "event_after_ingest",
    "whitespace_query",
    "mojibake_title",
    "xss_query",
    "late_rows_for_trained_hour",
    "unknown_product",
    "null_session",
    "long_query",
    "position_too_high",
    "null_event_ts",
    "poisoned_clicks",
)
_BLOCK_FAULTS_V1 = 10  # the block size is computed as with the first ten faults, so their rows do not change
WHOLE_HOUR_FAULTS = ("zero_clicks", "all_clicked", "session_flood", "replayed_rows")
SESSION_FLOOD_SHARE = 0.9
REPLAY_COPIES = 3  # replayed_rows: every row of the hour three times, under new event ids
MOJIBAKE_TITLE = "Solar Powered LED Path Light Kit (6 LED\x89\xdb\xaas per Light)"  # as in the Home Depot set
XSS_QUERIES = ('<script>alert("xss")</script>', '<img src=x onerror=alert(document.cookie)>' * 6)
WHITESPACE_QUERIES = ("   ", "\t", " \u00a0 ", "\n \n")

FAULT_ROWS = 10  # rows damaged per fault and hour (fewer when the hour is tiny)
HUGE_TITLE_BYTES = 100_000
SQL_METACHARACTER_QUERIES = (
    "'; DROP TABLE search_impressions; --",
    '" OR 1=1 --',
    "%_\\",
    "%_\\\\",
    "Robert'); DROP TABLE products;--",
    "drill' OR '1'='1",
    ":start $1 ? %s {0}",
    "paint; DELETE FROM products WHERE 1=1",
    "/* comment */ hammer",
    "tile\\'s \"quoted\"",
)
_INVALID_TEXT = (
    lambda q: q + "\x07",
    lambda q: "\x1b[31m" + q + "\x1b[0m",
    lambda q: q + "\x08\x7f",
    lambda q: "\x0b" + q + "\x0c",
)

_QUERY_TEXTS = {  # faults that replace queries with these texts, in turn
    "sql_metacharacters": SQL_METACHARACTER_QUERIES,
    "whitespace_query": WHITESPACE_QUERIES,
    "xss_query": XSS_QUERIES,
}


def apply_faults(
    rows: dict[str, np.ndarray], seed: int, hour: datetime, faults: Sequence[str]
) -> tuple[dict[str, list[str]], list[Product]]:
    """Damage rows ingested in this hour, in place. Returns {fault: damaged event_ids} and extra products."""
    h = to_us(hour)
    frng = stream_rng(seed, hour_index(hour), 2)
    eligible = np.flatnonzero((rows["ingested_at"] >= h) & (rows["ingested_at"] < h + HOUR_US))
    perm = frng.permutation(eligible)  # drawn whatever the faults, so each fault hits the same rows
    k = FAULT_ROWS if len(perm) >= FAULT_ROWS * _BLOCK_FAULTS_V1 else max(2, len(perm) // _BLOCK_FAULTS_V1)
    damaged: dict[str, list[str]] = {}
    products: list[Product] = []
    for fault in faults:
        fi = FAULTS.index(fault)
        if fault == "poisoned_clicks":
            damaged[fault] = _poison_clicks(rows)
        elif fault == "empty_hour" or len(perm) == 0:
            damaged[fault] = []
        elif fault in WHOLE_HOUR_FAULTS:
            damaged[fault] = _whole_hour_fault(rows, fault, eligible, perm, f"{seed}-{hour:%Y%m%d%H}")
        else:
            block = perm[(fi * k + np.arange(k)) % len(perm)]
            if fault in ("huge_title", "mojibake_title"):
                products.append(_fault_product(fault, seed, hour))
                rows["product_id"][block] = products[-1]["product_id"]
                damaged[fault] = rows["event_id"][block].tolist()
            else:
                vrng = stream_rng(seed, hour_index(hour), 3, fi)
                damaged[fault] = _damage_rows(rows, fault, block, vrng, h, seed)
    return damaged, products


def _damage_rows(rows: dict[str, np.ndarray], fault: str, block: np.ndarray, vrng: np.random.Generator, h: int,
                 seed: int) -> list[str]:
    """Damage the rows of `block` (indices of rows ingested in the hour starting at `h` us); their event ids."""
    ids = rows["event_id"][block].tolist()
    if fault == "null_query":
        rows["query"][block] = None
    elif fault == "empty_query":
        rows["query"][block] = ""
    elif fault == "bad_label":
        rows["clicked_null"][block[0::3]] = True
        rows["clicked"][block[1::3]] = 2
        rows["clicked"][block[2::3]] = -1
    elif fault == "bad_position":
        rows["position"][block[0::2]] = 0
        rows["position"][block[1::2]] = -vrng.integers(1, 4, len(block[1::2]))
    elif fault == "bad_event_ts":
        future, old = block[0::2], block[1::2]
        rows["event_ts"][future] = h + HOUR_US + vrng.integers(1, 5 * HOUR_US, len(future))
        rows["event_ts"][old] = h - 49 * HOUR_US - vrng.integers(0, 24 * HOUR_US, len(old))
    elif fault == "duplicate_event_id":
        first, second = block[0::2], block[1::2]
        m = min(len(first), len(second))
        rows["event_id"][second[:m]] = rows["event_id"][first[:m]]
        ids = sorted(set(rows["event_id"][first[:m]].tolist()))
    elif fault == "invalid_text":
        for j, i in enumerate(block):
            rows["query"][i] = _INVALID_TEXT[j % len(_INVALID_TEXT)](rows["query"][i] or "")
    elif fault in _QUERY_TEXTS:
        texts = _QUERY_TEXTS[fault]
        for j, i in enumerate(block):
            rows["query"][i] = texts[j % len(texts)]
    elif fault == "event_after_ingest":  # later than it arrived, still inside the interval
        gap = h + HOUR_US - rows["ingested_at"][block]
        rows["event_ts"][block] = rows["ingested_at"][block] + np.maximum(1, gap // 2)
    elif fault == "late_rows_for_trained_hour":  # rows of the previous hour that reach the warehouse only now
        rows["event_ts"][block] -= HOUR_US
        rows["ingested_at"][block] -= HOUR_US
    elif fault == "unknown_product":
        rows["product_id"][block] = np.array([f"P{seed}-GONE-{j}" for j in range(len(block))], dtype=object)
    elif fault == "null_session":
        rows["session_id"][block] = None
    elif fault == "long_query":
        for i in block:
            rows["query"][i] = ((rows["query"][i] or "drill") + " ") * 40
    elif fault == "position_too_high":
        rows["position"][block] = 101 + vrng.integers(0, 50, len(block))
    elif fault == "null_event_ts":
        rows["event_ts_null"][block] = True
    return ids


class Product(TypedDict):
    """A catalogue row a fault adds (the catalogue's columns)."""

    product_id: str
    title: str
    brand: str
    category: str
    price: float
    created_us: int  # microseconds since the epoch


def _fault_product(fault: str, seed: int, hour: datetime) -> Product:
    """The product a title fault shows in its rows: a 100 kB title, or the Home Depot set's mojibake."""
    if fault == "huge_title":
        c = CATEGORIES[0]
        unit = f"{c.brands[0]} Cordless Brushless Drill with Extra Long Description "
        pid, title = f"P{seed}-HUGE-{hour:%Y%m%d%H}", (unit * (HUGE_TITLE_BYTES // len(unit) + 1))[:HUGE_TITLE_BYTES]
    else:
        c = CATEGORIES[5]
        pid, title = f"P{seed}-MOJI-{hour:%Y%m%d%H}", f"{c.brands[0]} {MOJIBAKE_TITLE}"
    return {"product_id": pid, "title": title, "brand": c.brands[0], "category": c.name,
            "price": c.price, "created_us": to_us(CATALOGUE_EPOCH)}


def products_table(products: list[Product]) -> pa.Table:
    """The products that faults added (same columns as the catalogue's)."""
    return pa.table(
        {
            "product_id": [p["product_id"] for p in products],
            "title": [p["title"] for p in products],
            "brand": [p["brand"] for p in products],
            "category": [p["category"] for p in products],
            "price": pa.array([p["price"] for p in products], pa.float64()),
            "created_at": pa.array([p["created_us"] for p in products], pa.timestamp("us", tz="UTC")),
        }
    )


def _poison_clicks(rows: dict[str, np.ndarray]) -> list[str]:
    """Keep each session's number of clicks (so the hour's CTR is unchanged) but move them onto
    the session's least relevant results: a poisoned hour that no CTR or volume check can see.
    Returns the event ids whose label changed."""
    _, session = np.unique(rows["session_id"], return_inverse=True)
    n = len(session)
    order = np.lexsort((-rows["position"], rows["relevance"], session))  # least relevant first, then lower on the page
    sorted_session = session[order]
    first = np.flatnonzero(np.r_[True, sorted_session[1:] != sorted_session[:-1]])
    rank = np.arange(n) - np.repeat(first, np.diff(np.append(first, n)))
    clicks = np.bincount(session, weights=(rows["clicked"] > 0).astype(np.float64))
    poisoned = np.empty(n, dtype=np.int64)
    poisoned[order] = (rank < clicks[sorted_session]).astype(np.int64)
    changed = poisoned != rows["clicked"]
    rows["clicked"][:] = poisoned
    return rows["event_id"][changed].tolist()


def _whole_hour_fault(rows: dict[str, np.ndarray], fault: str, eligible: np.ndarray, perm: np.ndarray, tag: str) -> list[str]:
    """Faults that damage the hour as a whole (every row ingested in it, or most of them)."""
    if fault == "zero_clicks":
        rows["clicked"][eligible] = 0
        rows["clicked_null"][eligible] = False
    elif fault == "all_clicked":
        rows["clicked"][eligible] = 1
        rows["clicked_null"][eligible] = False
    elif fault == "session_flood":
        flood = perm[: int(len(perm) * SESSION_FLOOD_SHARE)]
        rows["session_id"][flood] = f"s{tag}-flood"
        rows["user_id"][flood] = f"u{tag}-flood"
        return rows["event_id"][flood].tolist()
    elif fault == "replayed_rows":  # the same impressions again, under new event ids
        copies = []
        for c in range(1, REPLAY_COPIES):
            copy = {k: v[eligible].copy() for k, v in rows.items()}
            copy["event_id"] = np.array([f"{e}-replay{c}" for e in copy["event_id"]], dtype=object)
            copies.append(copy)
        for key in rows:
            rows[key] = np.concatenate([rows[key], *(c[key] for c in copies)])
        return [e for c in copies for e in c["event_id"].tolist()]
    return rows["event_id"][eligible].tolist()


def _shift_stored_hour(warehouse: Warehouse, hour: datetime) -> int:
    """Move rows already in the warehouse that were ingested in `hour` to one hour later (an outage)."""
    return warehouse.execute_file("shift_ingested_hour", {"start": hour, "end": hour + HOUR})


def shift_outage(rows: dict[str, np.ndarray], span: Sequence[datetime]) -> int:
    """empty_hour: what would arrive in each hour of `span` arrives one hour later; the rows moved."""
    moved = 0
    for hour in span:
        h = to_us(hour)
        mask = (rows["ingested_at"] >= h) & (rows["ingested_at"] < h + HOUR_US)
        rows["ingested_at"][mask] += HOUR_US
        moved += int(mask.sum())
    return moved


def apply_stored_faults(warehouse: Warehouse, start: datetime, end: datetime, faults: Sequence[str]) -> int:
    """The faults that also damage rows already in the warehouse; returns the stored rows an outage moved."""
    moved_stored = 0
    for fault, value in (("zero_clicks", 0), ("all_clicked", 1)):  # click logging broken for the whole hour:
        if fault in faults:  # rows stored earlier that landed in it (late arrivals) too
            for hour in hours(parse_hour(start), parse_hour(end)):
                warehouse.execute_file("set_clicked_ingested_hour", {"start": hour, "end": hour + HOUR, "clicked": value})
    if "empty_hour" in faults:
        for hour in hours(parse_hour(start), parse_hour(end)):
            moved_stored += _shift_stored_hour(warehouse, hour)
    return moved_stored
