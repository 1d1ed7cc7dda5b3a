"""Synthetic home-improvement search traffic over a window of hours, with drift and fault injection.

Everything is deterministic by ``seed``: the catalogue comes from an RNG seeded by the seed (and,
for launches, the UTC day), and the rows of one *event hour* come from an RNG seeded by
``(seed, hour)``, so simulating ``[00:00, 24:00)`` in one call writes exactly the rows that 24
one-hour calls write. ``event_id`` is ``e<seed>-<YYYYMMDDHH>-<index>``: unique and stable.
The simulator appends: running the same hours twice duplicates the impressions (the products
insert is ``ON CONFLICT DO NOTHING``, so the catalogue is harmless to insert again).

Catalogue
---------
Ten categories of products with nouns, attributes and brands, and daily launches: see
`incremental.sim.catalogue`.

Traffic
-------
Sessions of one query and a ranked page each, clicks from a hidden relevance and a position bias,
late arrivals, and the ``drift`` scenario (from ``drift_at``, by default the window's midpoint
rounded down to the hour, traffic moves and the click rule contradicts the past): see
`incremental.sim.traffic`. The ``steady`` scenario only has the seasonality and vocabulary drift.

Faults
------
``faults`` (each a name from :data:`FAULTS`) are injected in every event hour of the call, into
up to ``FAULT_ROWS`` rows whose ``ingested_at`` lies in that same hour, or into the whole hour:
see `incremental.sim.faults` for every kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NotRequired, TypedDict

import numpy as np
import pyarrow as pa

from incremental.data.warehouse import Warehouse
from incremental.errors import IncrementalError
from incremental.hours import HOUR, hours, iso_hour, parse_hour
from incremental.sim.catalogue import CATEGORY_NAMES, HOUR_US, N_CATEGORIES, catalogue, to_us
from incremental.sim.faults import FAULTS, apply_faults, apply_stored_faults, products_table, shift_outage
from incremental.sim.traffic import drift_intent, drift_mapping, hour_rows

SCENARIOS = ("steady", "drift")


class SimulationError(IncrementalError, ValueError):
    """Bad arguments for the simulator; the message names the argument."""


# --- the public entry point ----------------------------------------------------------------------
IMPRESSION_COLUMNS = ("event_id", "event_ts", "ingested_at", "session_id", "user_id", "query", "product_id",
                      "position", "clicked")


def _impressions_table(rows: dict[str, np.ndarray]) -> pa.Table:
    ts = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "event_id": pa.array(rows["event_id"], pa.string()),
            "event_ts": pa.array(rows["event_ts"], ts, mask=rows["event_ts_null"]),
            "ingested_at": pa.array(rows["ingested_at"], ts),
            "session_id": pa.array(rows["session_id"], pa.string()),
            "user_id": pa.array(rows["user_id"], pa.string()),
            "query": pa.array(rows["query"], pa.string()),
            "product_id": pa.array(rows["product_id"], pa.string()),
            "position": pa.array(rows["position"], pa.int32()),
            "clicked": pa.array(rows["clicked"], pa.int32(), mask=rows["clicked_null"]),
        }
    )


def _check_args(start: datetime, end: datetime, rate: int, seed: int, scenario: str, faults: Sequence[str]) -> None:
    if end <= start:
        raise SimulationError(f"end ({iso_hour(end)}) must be after start ({iso_hour(start)})")
    if not isinstance(rate, int | np.integer) or rate < 1:
        raise SimulationError(f"rate must be a positive number of impressions per hour, got {rate!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise SimulationError(f"seed must be a non-negative integer, got {seed!r}")
    if scenario not in SCENARIOS:
        raise SimulationError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise SimulationError(f"unknown fault(s) {', '.join(map(repr, unknown))}; choose from {', '.join(FAULTS)}")


class SimulationSummary(TypedDict):
    """What a simulation made (`generate`; `simulate` adds what it did to the rows already stored)."""

    start: str  # ISO hours [start, end)
    end: str
    seed: int
    rate: int
    scenario: str
    drift_at: str | None
    drift_mapping: dict[str, str]  # the drift scenario's conflicting term -> intent (`traffic.drift_mapping`)
    hours: int
    rows: int  # impressions
    products: int  # catalogue rows offered to the ON-CONFLICT-DO-NOTHING insert
    launched_products: int
    clicks: int
    late_rows: int
    per_hour: dict[str, int]  # rows by *ingested* hour (ISO keys)
    faults: dict[str, dict[str, list[str]]]  # fault -> hour -> damaged event ids
    outage_moved_rows: int
    outage_moved_stored_rows: NotRequired[int]  # `simulate` only (empty_hour)


def generate(
    start: datetime,
    end: datetime,
    *,
    rate: int,
    seed: int,
    scenario: str = "steady",
    faults: Sequence[str] = (),
    drift_at: datetime | None = None,
) -> tuple[pa.Table, pa.Table, SimulationSummary]:
    """The rows `simulate` would write, without a warehouse: (products, impressions, summary).

    The impressions table carries three extra columns for analysis, `query_category`,
    `intent_category` (the hidden intent) and `relevance` (the hidden relevance of the row's
    product to the query's intent, the click probability at position 1); `simulate` drops them
    before loading: the warehouse never holds them.
    """
    start, end = parse_hour(start), parse_hour(end)
    _check_args(start, end, rate, seed, scenario, faults)
    faults = tuple(dict.fromkeys(faults))
    span = hours(start, end)
    if scenario == "drift":
        drift_at = parse_hour(drift_at) if drift_at is not None else start + HOUR * (len(span) // 2)
    elif drift_at is not None:
        raise SimulationError("drift_at only applies to the 'drift' scenario")
    intent = drift_intent(seed) if scenario == "drift" else np.arange(N_CATEGORIES)

    cat = catalogue(seed, start, end)
    parts, extra_products = [], []
    damaged: dict[str, dict[str, list[str]]] = {f: {} for f in faults}
    for hour in span:
        rows = hour_rows(seed, hour, int(rate), cat, drift_at, intent)
        hour_damage, products = apply_faults(rows, seed, hour, faults)
        for fault, ids in hour_damage.items():
            damaged[fault][iso_hour(hour)] = ids
        extra_products.extend(products)
        parts.append(rows)
    rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    # outage: what would arrive in the hour arrives one hour later
    moved = shift_outage(rows, span) if "empty_hour" in faults else 0

    products = cat.to_arrow()
    if extra_products:
        products = pa.concat_tables([products, products_table(extra_products)])
    names = np.array(CATEGORY_NAMES, dtype=object)
    impressions = _impressions_table(rows).append_column(
        "query_category", pa.array(names[rows["query_category"]], pa.string())
    ).append_column("intent_category", pa.array(names[rows["intent_category"]], pa.string())
    ).append_column("relevance", pa.array(rows["relevance"], pa.float64()))
    launched = (cat.created_us >= to_us(start)) & (cat.created_us < to_us(end))
    summary: SimulationSummary = {
        "start": iso_hour(start),
        "end": iso_hour(end),
        "seed": int(seed),
        "rate": int(rate),
        "scenario": scenario,
        "drift_at": iso_hour(drift_at) if drift_at is not None else None,
        "drift_mapping": drift_mapping(seed) if scenario == "drift" else {},
        "hours": len(span),
        "rows": impressions.num_rows,
        "products": products.num_rows,
        "launched_products": int(launched.sum()),
        "clicks": int(rows["clicked"][~rows["clicked_null"]].clip(0, 1).sum()),
        "late_rows": int(((rows["ingested_at"] - rows["event_ts"]) >= HOUR_US).sum()),
        "per_hour": _per_hour(rows),
        "faults": damaged,
        "outage_moved_rows": moved,
    }
    return products, impressions, summary


def _per_hour(rows: dict[str, np.ndarray]) -> dict[str, int]:
    """Rows by *ingested* hour (ISO keys)."""
    keys, counts = np.unique(rows["ingested_at"] // HOUR_US, return_counts=True)
    return {iso_hour(datetime.fromtimestamp(int(k) * 3600, UTC)): int(c) for k, c in zip(keys, counts, strict=True)}


def simulate(
    warehouse: Warehouse,
    start: datetime,
    end: datetime,
    *,
    rate: int,
    seed: int,
    scenario: str = "steady",
    faults: Sequence[str] = (),
    drift_at: datetime | None = None,
) -> SimulationSummary:
    """Simulate the event hours [start, end) and append them to the warehouse; returns a summary.

    Summary keys: rows (impressions written), products (catalogue rows offered to the
    ON-CONFLICT-DO-NOTHING insert), launched_products, per_hour (rows by *ingested* hour, ISO
    keys), faults ({fault: {hour: [damaged event_ids]}}), outage_moved_rows and
    outage_moved_stored_rows (for empty_hour), drift_at and drift_mapping, clicks, late_rows.
    """
    products, impressions, summary = generate(
        start, end, rate=rate, seed=seed, scenario=scenario, faults=faults, drift_at=drift_at
    )
    warehouse.init_schema()
    moved_stored = apply_stored_faults(warehouse, start, end, faults)
    warehouse.insert("products", products)
    warehouse.insert("search_impressions", impressions.select(list(IMPRESSION_COLUMNS)))
    summary["outage_moved_stored_rows"] = moved_stored
    return summary
