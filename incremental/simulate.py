"""Synthetic home-improvement catalogue and hourly search traffic, with drift and fault injection.

Everything is deterministic by ``seed``: the catalogue comes from an RNG seeded by the seed (and,
for launches, the UTC day), and the rows of one *event hour* come from an RNG seeded by
``(seed, hour)``, so simulating ``[00:00, 24:00)`` in one call writes exactly the rows that 24
one-hour calls write. ``event_id`` is ``e<seed>-<YYYYMMDDHH>-<index>``: unique and stable.
The simulator appends: running the same hours twice duplicates the impressions (the products
insert is ``ON CONFLICT DO NOTHING``, so the catalogue is harmless to insert again).

Catalogue
---------
Ten categories (:data:`CATEGORIES`), each with its own five product nouns, six attributes and
four (invented) brands. A product title is ``"<Brand> <Attr> <Attr> <Noun>"``, e.g.
``"Voltrex Cordless Brushless Drill"``. The base catalogue (:data:`PRODUCTS_PER_NOUN` per noun)
exists since :data:`CATALOGUE_EPOCH`; on top of it :data:`LAUNCHES_PER_DAY` products are launched
every UTC day at a random time, are shown from the first hour that starts after their
``created_at`` and stay on the shelf for :data:`LAUNCH_SHELF_DAYS` days (older launches are
discontinued, which keeps the catalogue bounded for any date).

Traffic and the hidden click model
----------------------------------
Every event hour holds exactly ``rate`` impressions: sessions of one query and a page of
:data:`PAGE_SIZE` products (the last session of the hour may be cut short). A session picks a
category from a popularity that follows the hour of day (each category has its own peak hour,
amplitude :data:`DAILY_AMPLITUDE`) and the weekend (:data:`WEEKEND_BOOST`), then a noun of that
category; the query is the noun, or one of its synonyms, optionally preceded by an attribute
(``"cordless drill driver"``). Vocabulary drift: each noun has an established synonym (used in
:data:`SYNONYM_SHARE` of its queries) and an emerging one whose share grows from 0 to
:data:`EMERGING_SHARE_MAX` over an :data:`EMERGING_CYCLE_DAYS`-day fad cycle, then restarts.

A page holds :data:`LEXICAL_SLOTS` products whose title carries the query's noun (lexical
matches), :data:`RELATED_SLOTS` products of the same category with another noun (in the drift
scenario: products of the query's new intent, see below) and :data:`RANDOM_SLOTS` products of
other categories. A noisy lexical "production ranker" orders them into positions 1..10.
The hidden relevance of (query, product), in terms of the query's *intent* (category, noun):

* same category and noun: :data:`REL_EXACT`, plus :data:`REL_ATTRIBUTE_BONUS` when the query's
  attribute is one of the product's;
* same category, other noun: :data:`REL_CATEGORY`;
* anything else: :data:`REL_UNRELATED`.

``clicked ~ Bernoulli(relevance * position ** -POSITION_BIAS_EXPONENT)``. Outside the drift
scenario the intent is the category the query's words come from, so clicks follow the text
(a bag-of-words model reaches an AUC far above 0.5).

Late arrivals
-------------
``ingested_at = event_ts + delay``; the delay is ``SHORT_DELAY_MIN_S + Exp(SHORT_DELAY_MEAN_S)``
seconds capped at :data:`SHORT_DELAY_MAX_S` (1 s to 5 min) for most rows, and uniform in
[:data:`LATE_DELAY_MIN_H`, :data:`LATE_DELAY_MAX_H`] hours for a share :data:`LATE_SHARE` (3%),
which so land in a later hour's partition (partitions are keyed by ``ingested_at``). Rows of the
simulated event hours that arrive after ``end`` are written too (they arrive "later").

The drift scenario
------------------
From ``drift_at`` (default: the midpoint of ``[start, end)``, rounded down to the hour; pass it
explicitly when simulating hour by hour, or each call gets its own midpoint) two things change:

1. Traffic moves: the :data:`DRIFT_CONFLICT_CATEGORIES` conflicting categories (chosen by seed)
   get :data:`DRIFT_TRAFFIC_BOOST` times their popularity, the others :data:`DRIFT_TRAFFIC_DAMP`.
2. The click rule contradicts the past: for the queries whose words come from a conflicting
   category A, the intent becomes category B (a cyclic permutation among the conflicting
   categories, noun kept by index): the same words ("cordless drill") now lead to clicks on B's
   products and no longer on A's lexical matches, which are still shown on the page. A model
   fine-tuned naively on the new hours therefore forgets the old hours. :func:`drift_mapping`
   returns the mapping, by category name.

The ``steady`` scenario only has the seasonality and vocabulary drift above.

Faults
------
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
only the champion's own prequential metrics show it (`incremental.drift`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from incremental.lake import HOUR, hours, parse_hour
from incremental.warehouse import Warehouse

SCENARIOS = ("steady", "drift")
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

# --- the page and the hidden click model -------------------------------------------------
PAGE_SIZE = 10
LEXICAL_SLOTS = 4  # products whose title carries the query's noun
RELATED_SLOTS = 3  # same category, other noun (drift: the new intent's products)
RANDOM_SLOTS = 3  # other categories, other nouns
QUERY_ATTRIBUTE_SHARE = 0.5  # queries that start with an attribute ("cordless drill")
REL_EXACT = 0.7
REL_ATTRIBUTE_BONUS = 0.2
REL_CATEGORY = 0.15
REL_UNRELATED = 0.02
POSITION_BIAS_EXPONENT = 0.7  # P(examined | position p) = p ** -0.7 (1.0 at 1, 0.2 at 10)
RANKER_NOISE = 1.0  # std of the noise in the production ranker's lexical score

# --- late arrivals -------------------------------------------------------------------------
SHORT_DELAY_MIN_S = 1.0
SHORT_DELAY_MEAN_S = 20.0  # mean of the exponential part
SHORT_DELAY_MAX_S = 300.0
LATE_SHARE = 0.03  # share of rows delayed by hours
LATE_DELAY_MIN_H = 1.0
LATE_DELAY_MAX_H = 6.0

# --- catalogue, users, seasonality, vocabulary drift ----------------------------------------
CATALOGUE_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
PRODUCTS_PER_NOUN = 12
LAUNCHES_PER_DAY = 4
LAUNCH_SHELF_DAYS = 30
N_USERS = 20_000
DAILY_AMPLITUDE = 0.4
WEEKEND_BOOST = 0.5  # scaled by each category's weekend affinity
SYNONYM_SHARE = 0.15
EMERGING_SHARE_MAX = 0.35
EMERGING_CYCLE_DAYS = 14

# --- drift scenario ----------------------------------------------------------------------------
DRIFT_CONFLICT_CATEGORIES = 5
DRIFT_TRAFFIC_BOOST = 3.0
DRIFT_TRAFFIC_DAMP = 0.3

# --- faults ------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class Category:
    name: str
    nouns: tuple[tuple[str, str, str], ...]  # (canonical, established synonym, emerging synonym)
    attributes: tuple[str, ...]
    brands: tuple[str, ...]
    price: float  # typical price, USD
    peak_hour: int  # hour of day (UTC) of peak traffic
    weekend: float  # weekend affinity (0: none)


CATEGORIES: tuple[Category, ...] = (
    Category(
        "power_tools",
        (
            ("drill", "power drill", "drill driver"),
            ("circular saw", "circ saw", "track saw"),
            ("orbital sander", "palm sander", "finish sander"),
            ("angle grinder", "grinder", "cut off tool"),
            ("jigsaw", "jig saw", "scroll saw"),
        ),
        ("cordless", "20v", "brushless", "compact", "variable speed", "corded"),
        ("Voltrex", "Torqline", "Ampwerk", "Hexforge"),
        129.0, 19, 0.8,
    ),
    Category(
        "hand_tools",
        (
            ("hammer", "claw hammer", "framing hammer"),
            ("screwdriver set", "screwdrivers", "driver kit"),
            ("adjustable wrench", "crescent wrench", "spanner"),
            ("pliers", "needle nose pliers", "locking pliers"),
            ("utility knife", "box cutter", "razor knife"),
        ),
        ("steel", "magnetic", "ratcheting", "16 oz", "fiberglass", "insulated"),
        ("Irongrip", "Stanwell", "Kobaltic", "Trueforge"),
        25.0, 18, 0.6,
    ),
    Category(
        "paint",
        (
            ("interior paint", "wall paint", "emulsion"),
            ("paint roller", "roller cover", "roller frame"),
            ("paintbrush", "paint brush", "sash brush"),
            ("primer", "undercoat", "stain blocker"),
            ("painter's tape", "masking tape", "frog tape"),
        ),
        ("matte", "satin", "eggshell", "low voc", "white", "1 gallon"),
        ("Colorvane", "Behrly", "Valmora", "Glidex"),
        35.0, 11, 1.2,
    ),
    Category(
        "plumbing",
        (
            ("kitchen faucet", "sink faucet", "pull down faucet"),
            ("toilet", "commode", "dual flush toilet"),
            ("shower head", "showerhead", "rain shower"),
            ("p-trap", "drain trap", "sink trap"),
            ("water heater", "hot water tank", "tankless heater"),
        ),
        ("chrome", "brushed nickel", "low flow", "single handle", "50 gallon", "pvc"),
        ("Aquastream", "Moenta", "Pfisterra", "Deltano"),
        150.0, 9, 0.3,
    ),
    Category(
        "electrical",
        (
            ("light switch", "wall switch", "smart switch"),
            ("outlet", "receptacle", "usb outlet"),
            ("extension cord", "power cord", "cord reel"),
            ("circuit breaker", "breaker", "afci breaker"),
            ("electrical wire", "romex", "nm cable"),
        ),
        ("gfci", "15 amp", "12 gauge", "dimmer", "outdoor", "tamper resistant"),
        ("Levitron", "Southline", "Eatonix", "Squared"),
        20.0, 20, 0.2,
    ),
    Category(
        "lighting",
        (
            ("led bulb", "light bulb", "smart bulb"),
            ("ceiling fan", "fan light", "bladeless fan"),
            ("pendant light", "hanging light", "island pendant"),
            ("flood light", "security light", "motion floodlight"),
            ("table lamp", "lamp", "bedside lamp"),
        ),
        ("dimmable", "daylight", "60w equivalent", "wifi", "motion sensor", "bronze"),
        ("Lumora", "Halcyon", "Feitlux", "Globright"),
        45.0, 21, 0.4,
    ),
    Category(
        "flooring",
        (
            ("vinyl plank", "lvp", "luxury vinyl"),
            ("ceramic tile", "floor tile", "porcelain tile"),
            ("hardwood flooring", "wood floor", "engineered hardwood"),
            ("carpet", "carpeting", "carpet tile"),
            ("underlayment", "floor underlay", "foam underlayment"),
        ),
        ("waterproof", "oak", "gray", "12 in", "click lock", "hickory"),
        ("Floorwell", "Tarkona", "Shawmont", "Lifeprime"),
        60.0, 14, 1.0,
    ),
    Category(
        "garden",
        (
            ("lawn mower", "mower", "robot mower"),
            ("garden hose", "hose", "expandable hose"),
            ("pruning shears", "pruners", "secateurs"),
            ("mulch", "bark mulch", "rubber mulch"),
            ("leaf blower", "blower", "battery blower"),
        ),
        ("self propelled", "50 ft", "gas", "organic", "lightweight", "heavy duty"),
        ("Greenfield", "Toroid", "Husqvale", "Scottwood"),
        80.0, 8, 1.5,
    ),
    Category(
        "storage",
        (
            ("shelving unit", "shelves", "garage shelving"),
            ("tool chest", "toolbox", "rolling cabinet"),
            ("storage bin", "tote", "stackable bin"),
            ("garage cabinet", "cabinet", "wall cabinet"),
            ("pegboard", "peg board", "slatwall"),
        ),
        ("5 tier", "metal", "rolling", "plastic", "wall mounted", "lockable"),
        ("Husktron", "Gladius", "Sterla", "Rubbermax"),
        70.0, 16, 0.9,
    ),
    Category(
        "appliances",
        (
            ("refrigerator", "fridge", "smart fridge"),
            ("dishwasher", "dish washer", "drawer dishwasher"),
            ("washing machine", "washer", "washer dryer combo"),
            ("microwave", "microwave oven", "over the range microwave"),
            ("range hood", "vent hood", "exhaust hood"),
        ),
        ("stainless steel", "energy star", "french door", "front load", "30 in", "black"),
        ("Whirlton", "Samsova", "Frigidar", "Boschen"),
        700.0, 20, 0.7,
    ),
)
N_CATEGORIES = len(CATEGORIES)
N_NOUNS = 5
N_ATTRIBUTES = 6
CATEGORY_NAMES = tuple(c.name for c in CATEGORIES)

_US = 1_000_000
_HOUR_US = 3600 * _US


class SimulationError(ValueError):
    """Bad arguments for the simulator; the message names the argument."""


# --- small helpers ------------------------------------------------------------------------------
def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def _hour_index(hour: datetime) -> int:
    return int(hour.timestamp()) // 3600


def _us(ts: datetime) -> int:
    return int(ts.timestamp()) * _US + ts.microsecond


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _title_case(text: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


def position_bias(position: np.ndarray) -> np.ndarray:
    """P(a result at this 1-based position is looked at) in the hidden click model."""
    return np.asarray(position, dtype=float) ** -POSITION_BIAS_EXPONENT


def drift_mapping(seed: int) -> dict[str, str]:
    """The drift scenario's conflicting term -> intent mapping by category name (seeded)."""
    intent = _drift_intent(seed)
    return {CATEGORY_NAMES[a]: CATEGORY_NAMES[b] for a, b in enumerate(intent) if a != b}


def _drift_intent(seed: int) -> np.ndarray:
    rng = _rng(seed, 0xD41F7)
    chosen = rng.choice(N_CATEGORIES, size=DRIFT_CONFLICT_CATEGORIES, replace=False)
    intent = np.arange(N_CATEGORIES)
    intent[chosen] = np.roll(chosen, -1)
    return intent


# --- the query vocabulary ---------------------------------------------------------------------
def _query_table() -> np.ndarray:
    """All query strings, indexed by ((category * N_NOUNS + noun) * 3 + synonym) * 7 + attribute + 1."""
    out = []
    for cat in CATEGORIES:
        for forms in cat.nouns:
            for term in forms:
                out.append(term)
                out.extend(f"{attr} {term}" for attr in cat.attributes)
    return np.array(out, dtype=object)


_QUERIES = _query_table()


def query_vocabulary() -> dict[str, list[str]]:
    """Every query word form (nouns and synonyms) by category, for documentation and tests."""
    return {c.name: [t for forms in c.nouns for t in forms] for c in CATEGORIES}


# --- the catalogue ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Catalogue:
    """Product arrays (one element per product), sorted by product_id."""

    product_id: np.ndarray
    title: np.ndarray
    brand: np.ndarray
    category: np.ndarray  # index into CATEGORIES
    noun: np.ndarray
    attr1: np.ndarray
    attr2: np.ndarray
    price: np.ndarray
    created_us: np.ndarray
    shelf_end_us: np.ndarray  # first instant the product is no longer shown

    def __len__(self) -> int:
        return len(self.product_id)

    def to_arrow(self) -> pa.Table:
        return pa.table(
            {
                "product_id": pa.array(self.product_id, pa.string()),
                "title": pa.array(self.title, pa.string()),
                "brand": pa.array(self.brand, pa.string()),
                "category": pa.array(np.array(CATEGORY_NAMES, dtype=object)[self.category], pa.string()),
                "price": pa.array(self.price, pa.float64()),
                "created_at": pa.array(self.created_us, pa.timestamp("us", tz="UTC")),
            }
        )


def _make_products(
    rng: np.random.Generator, ids: list[str], category: np.ndarray, noun: np.ndarray
) -> dict[str, np.ndarray]:
    n = len(ids)
    brand_i = rng.integers(0, 4, n)
    a1 = rng.integers(0, N_ATTRIBUTES, n)
    a2 = (a1 + 1 + rng.integers(0, N_ATTRIBUTES - 1, n)) % N_ATTRIBUTES
    factor = np.exp(rng.normal(0.0, 0.35, n))
    titles, brands, prices = [], [], []
    for i in range(n):
        cat = CATEGORIES[category[i]]
        brand = cat.brands[brand_i[i]]
        brands.append(brand)
        titles.append(
            f"{brand} {_title_case(cat.attributes[a1[i]])} {_title_case(cat.attributes[a2[i]])} "
            f"{_title_case(cat.nouns[noun[i]][0])}"
        )
        prices.append(round(cat.price * factor[i], 2))
    return {
        "product_id": np.array(ids, dtype=object),
        "title": np.array(titles, dtype=object),
        "brand": np.array(brands, dtype=object),
        "category": category.astype(np.int64),
        "noun": noun.astype(np.int64),
        "attr1": a1,
        "attr2": a2,
        "price": np.array(prices, dtype=float),
    }


def catalogue(seed: int, start: datetime, end: datetime) -> Catalogue:
    """The base catalogue plus every launch that can be on the shelf during [start, end)."""
    rng = _rng(seed, 0xCA7A)
    grid = np.indices((N_CATEGORIES, N_NOUNS, PRODUCTS_PER_NOUN)).reshape(3, -1)
    ids = [f"P{seed}-{c:02d}{n}{k:02d}" for c, n, k in grid.T]
    parts = [_make_products(rng, ids, grid[0], grid[1])]
    created = [np.full(len(ids), _us(CATALOGUE_EPOCH), dtype=np.int64)]
    first_day = (start - timedelta(days=LAUNCH_SHELF_DAYS + 1)).date()
    last_day = (end - timedelta(microseconds=1)).date()
    day = first_day
    while day <= last_day:
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        drng = _rng(seed, 0x1A0C, day.toordinal())
        cats = drng.integers(0, N_CATEGORIES, LAUNCHES_PER_DAY)
        nouns = drng.integers(0, N_NOUNS, LAUNCHES_PER_DAY)
        offsets = drng.integers(0, 86_400, LAUNCHES_PER_DAY) * _US
        launch_ids = [f"P{seed}-L{day:%Y%m%d}{k}" for k in range(LAUNCHES_PER_DAY)]
        parts.append(_make_products(drng, launch_ids, cats, nouns))
        created.append(_us(day_start) + offsets)
        day += timedelta(days=1)
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    created_us = np.concatenate(created)
    shelf_end = np.where(
        created_us == _us(CATALOGUE_EPOCH), np.iinfo(np.int64).max, created_us + LAUNCH_SHELF_DAYS * 24 * _HOUR_US
    )
    order = np.argsort(merged["product_id"].astype(str), kind="stable")
    return Catalogue(
        **{k: v[order] for k, v in merged.items()}, created_us=created_us[order], shelf_end_us=shelf_end[order]
    )


# --- one event hour -------------------------------------------------------------------------------
def _category_weights(seed: int, hour: datetime, drifted: bool, intent: np.ndarray) -> np.ndarray:
    base = 0.5 + _rng(seed, 0x909).random(N_CATEGORIES)
    peak = np.array([c.peak_hour for c in CATEGORIES])
    weekend = np.array([c.weekend for c in CATEGORIES])
    daily = 1.0 + DAILY_AMPLITUDE * np.cos(2 * np.pi * (hour.hour - peak) / 24)
    w = base * daily * (1.0 + WEEKEND_BOOST * weekend * (hour.weekday() >= 5))
    if drifted:
        conflicting = intent != np.arange(N_CATEGORIES)
        w = w * np.where(conflicting, DRIFT_TRAFFIC_BOOST, DRIFT_TRAFFIC_DAMP)
    return w / w.sum()


def _emerging_share(seed: int, hour: datetime, cat: np.ndarray, noun: np.ndarray) -> np.ndarray:
    phase0 = _rng(seed, 0x5E7).random((N_CATEGORIES, N_NOUNS))
    cycles = (_us(hour) - _us(CATALOGUE_EPOCH)) / (EMERGING_CYCLE_DAYS * 24 * _HOUR_US)
    return EMERGING_SHARE_MAX * ((cycles + phase0[cat, noun]) % 1.0)


def _pools(cat: Catalogue, hour: datetime, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Products on the shelf in this hour, grouped by (category, noun) in a random order."""
    h = _us(hour)
    eligible = np.flatnonzero((cat.created_us <= h) & (cat.shelf_end_us > h))  # product_id order
    group = cat.category[eligible] * N_NOUNS + cat.noun[eligible]
    order = np.lexsort((rng.random(len(eligible)), group))
    members = eligible[order]
    counts = np.bincount(group, minlength=N_CATEGORIES * N_NOUNS)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return members, offsets, counts


def _pick(members, offsets, counts, group: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct products from each session's group: (sessions, k) product indices."""
    start = rng.integers(0, counts[group])
    steps = (start[:, None] + np.arange(k)[None, :]) % counts[group][:, None]
    return members[offsets[group][:, None] + steps]


def _hour_rows(
    seed: int, hour: datetime, rate: int, cat: Catalogue, drift_at: datetime | None, intent: np.ndarray
) -> dict[str, Any]:
    rng = _rng(seed, _hour_index(hour), 1)
    drifted = drift_at is not None and hour >= drift_at
    n_sess = math.ceil(rate / PAGE_SIZE)
    lex = rng.choice(N_CATEGORIES, size=n_sess, p=_category_weights(seed, hour, drifted, intent))
    noun = rng.integers(0, N_NOUNS, n_sess)
    want = intent[lex] if drifted else lex
    u = rng.random(n_sess)
    emerging = _emerging_share(seed, hour, lex, noun)
    syn = np.where(u < emerging, 2, np.where(u < emerging + SYNONYM_SHARE, 1, 0))
    q_attr = np.where(rng.random(n_sess) < QUERY_ATTRIBUTE_SHARE, rng.integers(0, N_ATTRIBUTES, n_sess), -1)
    query = _QUERIES[((lex * N_NOUNS + noun) * 3 + syn) * (N_ATTRIBUTES + 1) + q_attr + 1]

    members, offsets, counts = _pools(cat, hour, rng)
    other_noun = (noun + 1 + rng.integers(0, N_NOUNS - 1, n_sess)) % N_NOUNS
    related_group = np.where(want != lex, want * N_NOUNS + noun, lex * N_NOUNS + other_noun)
    r0 = rng.integers(0, N_CATEGORIES - 1, n_sess)
    random_cols = []
    for j in range(RANDOM_SLOTS):
        rc = (lex + 1 + (r0 + j) % (N_CATEGORIES - 1)) % N_CATEGORIES
        rn = (noun + 1 + rng.integers(0, N_NOUNS - 1, n_sess)) % N_NOUNS
        random_cols.append(_pick(members, offsets, counts, rc * N_NOUNS + rn, 1, rng))
    page = np.concatenate(
        [
            _pick(members, offsets, counts, lex * N_NOUNS + noun, LEXICAL_SLOTS, rng),
            _pick(members, offsets, counts, related_group, RELATED_SLOTS, rng),
            *random_cols,
        ],
        axis=1,
    )  # (sessions, PAGE_SIZE) product indices

    p_cat, p_noun = cat.category[page], cat.noun[page]
    # the production ranker: lexical, noisy
    score = 1.0 * ((p_cat == lex[:, None]) & (p_noun == noun[:, None])) + 0.5 * (p_cat == lex[:, None])
    score = score + rng.normal(0.0, RANKER_NOISE, page.shape)
    order = np.argsort(-score, axis=1, kind="stable")
    page = np.take_along_axis(page, order, axis=1)
    p_cat, p_noun = cat.category[page], cat.noun[page]
    position = np.broadcast_to(np.arange(1, PAGE_SIZE + 1), page.shape)

    exact = (p_cat == want[:, None]) & (p_noun == noun[:, None])
    attr_hit = (
        exact
        & ((want == lex) & (q_attr >= 0))[:, None]
        & ((cat.attr1[page] == q_attr[:, None]) | (cat.attr2[page] == q_attr[:, None]))
    )
    rel = np.where(exact, REL_EXACT, np.where(p_cat == want[:, None], REL_CATEGORY, REL_UNRELATED))
    rel = rel + REL_ATTRIBUTE_BONUS * attr_hit
    clicked = (rng.random(page.shape) < rel * position_bias(position)).astype(np.int64)

    session_start = rng.integers(0, _HOUR_US - PAGE_SIZE * 1000, n_sess)
    user = (N_USERS * rng.random(n_sess) ** 2).astype(np.int64)
    event_us = _us(hour) + session_start[:, None] + (position - 1) * 1000

    n = rate
    sess_of_row = np.repeat(np.arange(n_sess), PAGE_SIZE)[:n]
    late = rng.random(n) < LATE_SHARE
    short_s = np.minimum(SHORT_DELAY_MIN_S + rng.exponential(SHORT_DELAY_MEAN_S, n), SHORT_DELAY_MAX_S)
    late_s = rng.uniform(LATE_DELAY_MIN_H * 3600, LATE_DELAY_MAX_H * 3600, n)
    delay_us = (np.where(late, late_s, short_s) * _US).astype(np.int64)
    event_flat = event_us.reshape(-1)[:n]
    tag = f"{seed}-{hour:%Y%m%d%H}"
    return {
        "event_id": np.array([f"e{tag}-{i:06d}" for i in range(n)], dtype=object),
        "event_ts": event_flat.copy(),
        "ingested_at": event_flat + delay_us,
        "session_id": np.array([f"s{tag}-{s:05d}" for s in range(n_sess)], dtype=object)[sess_of_row],
        "user_id": np.array([f"u{seed}-{u:05d}" for u in user], dtype=object)[sess_of_row],
        "query": query[sess_of_row].copy(),
        "product_id": cat.product_id[page.reshape(-1)[:n]].copy(),
        "position": position.reshape(-1)[:n].astype(np.int64),
        "clicked": clicked.reshape(-1)[:n],
        "clicked_null": np.zeros(n, dtype=bool),
        "event_ts_null": np.zeros(n, dtype=bool),
        "query_category": lex[sess_of_row],
        "intent_category": want[sess_of_row],
        "relevance": rel.reshape(-1)[:n],  # hidden: never written to the warehouse
    }


# --- faults ------------------------------------------------------------------------------------
def _apply_faults(
    rows: dict[str, Any], seed: int, hour: datetime, faults: Sequence[str]
) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """Damage rows ingested in this hour, in place. Returns {fault: damaged event_ids} and extra products."""
    h = _us(hour)
    frng = _rng(seed, _hour_index(hour), 2)
    eligible = np.flatnonzero((rows["ingested_at"] >= h) & (rows["ingested_at"] < h + _HOUR_US))
    perm = frng.permutation(eligible)  # drawn whatever the faults, so each fault hits the same rows
    k = FAULT_ROWS if len(perm) >= FAULT_ROWS * _BLOCK_FAULTS_V1 else max(2, len(perm) // _BLOCK_FAULTS_V1)
    damaged: dict[str, list[str]] = {}
    products: list[dict[str, Any]] = []
    for fault in faults:
        fi = FAULTS.index(fault)
        vrng = _rng(seed, _hour_index(hour), 3, fi)
        if fault == "poisoned_clicks":
            damaged[fault] = _poison_clicks(rows)
            continue
        if fault == "empty_hour" or len(perm) == 0:
            damaged[fault] = []
            continue
        block = perm[(fi * k + np.arange(k)) % len(perm)]
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
            rows["event_ts"][future] = h + _HOUR_US + vrng.integers(1, 5 * _HOUR_US, len(future))
            rows["event_ts"][old] = h - 49 * _HOUR_US - vrng.integers(0, 24 * _HOUR_US, len(old))
        elif fault == "duplicate_event_id":
            first, second = block[0::2], block[1::2]
            m = min(len(first), len(second))
            rows["event_id"][second[:m]] = rows["event_id"][first[:m]]
            ids = sorted(set(rows["event_id"][first[:m]].tolist()))
        elif fault == "huge_title":
            pid = f"P{seed}-HUGE-{hour:%Y%m%d%H}"
            c = CATEGORIES[0]
            unit = f"{c.brands[0]} Cordless Brushless Drill with Extra Long Description "
            title = (unit * (HUGE_TITLE_BYTES // len(unit) + 1))[:HUGE_TITLE_BYTES]
            products.append(
                {"product_id": pid, "title": title, "brand": c.brands[0], "category": c.name,
                 "price": c.price, "created_us": _us(CATALOGUE_EPOCH)}
            )
            rows["product_id"][block] = pid
        elif fault == "invalid_text":
            for j, i in enumerate(block):
                rows["query"][i] = _INVALID_TEXT[j % len(_INVALID_TEXT)](rows["query"][i] or "")
        elif fault == "sql_metacharacters":
            for j, i in enumerate(block):
                rows["query"][i] = SQL_METACHARACTER_QUERIES[j % len(SQL_METACHARACTER_QUERIES)]
        elif fault in WHOLE_HOUR_FAULTS:
            ids = _whole_hour_fault(rows, fault, eligible, perm, f"{seed}-{hour:%Y%m%d%H}")
        elif fault == "event_after_ingest":  # later than it arrived, still inside the interval
            gap = h + _HOUR_US - rows["ingested_at"][block]
            rows["event_ts"][block] = rows["ingested_at"][block] + np.maximum(1, gap // 2)
        elif fault == "whitespace_query":
            for j, i in enumerate(block):
                rows["query"][i] = WHITESPACE_QUERIES[j % len(WHITESPACE_QUERIES)]
        elif fault == "mojibake_title":
            pid = f"P{seed}-MOJI-{hour:%Y%m%d%H}"
            c = CATEGORIES[5]
            products.append({"product_id": pid, "title": f"{c.brands[0]} {MOJIBAKE_TITLE}", "brand": c.brands[0],
                             "category": c.name, "price": c.price, "created_us": _us(CATALOGUE_EPOCH)})
            rows["product_id"][block] = pid
        elif fault == "xss_query":
            for j, i in enumerate(block):
                rows["query"][i] = XSS_QUERIES[j % len(XSS_QUERIES)]
        elif fault == "late_rows_for_trained_hour":  # rows of the previous hour that reach the warehouse only now
            rows["event_ts"][block] -= _HOUR_US
            rows["ingested_at"][block] -= _HOUR_US
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
        damaged[fault] = ids
    return damaged, products


def _poison_clicks(rows: dict[str, Any]) -> list[str]:
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


def _whole_hour_fault(rows: dict[str, Any], fault: str, eligible: np.ndarray, perm: np.ndarray, tag: str) -> list[str]:
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


# --- the public entry point ----------------------------------------------------------------------
IMPRESSION_COLUMNS = ("event_id", "event_ts", "ingested_at", "session_id", "user_id", "query", "product_id",
                      "position", "clicked")


def _impressions_table(rows: dict[str, Any]) -> pa.Table:
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


def generate(
    start: datetime,
    end: datetime,
    *,
    rate: int,
    seed: int,
    scenario: str = "steady",
    faults: Sequence[str] = (),
    drift_at: datetime | None = None,
) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """The rows `simulate` would write, without a warehouse: (products, impressions, summary).

    The impressions table carries two extra columns for analysis, `query_category` and
    `intent_category` (the hidden intent); `simulate` drops them before loading.
    """
    start, end = parse_hour(start), parse_hour(end)
    if end <= start:
        raise SimulationError(f"end ({_iso(end)}) must be after start ({_iso(start)})")
    if not isinstance(rate, int | np.integer) or rate < 1:
        raise SimulationError(f"rate must be a positive number of impressions per hour, got {rate!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise SimulationError(f"seed must be a non-negative integer, got {seed!r}")
    if scenario not in SCENARIOS:
        raise SimulationError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise SimulationError(f"unknown fault(s) {', '.join(map(repr, unknown))}; choose from {', '.join(FAULTS)}")
    faults = tuple(dict.fromkeys(faults))
    span = hours(start, end)
    if scenario == "drift":
        drift_at = parse_hour(drift_at) if drift_at is not None else start + HOUR * (len(span) // 2)
    elif drift_at is not None:
        raise SimulationError("drift_at only applies to the 'drift' scenario")
    intent = _drift_intent(seed) if scenario == "drift" else np.arange(N_CATEGORIES)

    cat = catalogue(seed, start, end)
    parts, damaged, extra_products = [], {f: {} for f in faults}, []
    for hour in span:
        rows = _hour_rows(seed, hour, int(rate), cat, drift_at, intent)
        hour_damage, products = _apply_faults(rows, seed, hour, faults)
        for fault, ids in hour_damage.items():
            damaged[fault][_iso(hour)] = ids
        extra_products.extend(products)
        parts.append(rows)
    rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    moved = 0
    if "empty_hour" in faults:  # outage: what would arrive in the hour arrives one hour later
        for hour in span:
            h = _us(hour)
            mask = (rows["ingested_at"] >= h) & (rows["ingested_at"] < h + _HOUR_US)
            rows["ingested_at"][mask] += _HOUR_US
            moved += int(mask.sum())

    products = cat.to_arrow()
    if extra_products:
        extra = pa.table(
            {
                "product_id": [p["product_id"] for p in extra_products],
                "title": [p["title"] for p in extra_products],
                "brand": [p["brand"] for p in extra_products],
                "category": [p["category"] for p in extra_products],
                "price": pa.array([p["price"] for p in extra_products], pa.float64()),
                "created_at": pa.array([p["created_us"] for p in extra_products], pa.timestamp("us", tz="UTC")),
            }
        )
        products = pa.concat_tables([products, extra])

    impressions = _impressions_table(rows).append_column(
        "query_category", pa.array(np.array(CATEGORY_NAMES, dtype=object)[rows["query_category"]], pa.string())
    ).append_column(
        "intent_category", pa.array(np.array(CATEGORY_NAMES, dtype=object)[rows["intent_category"]], pa.string())
    )
    ingested_hour = rows["ingested_at"] // _HOUR_US
    keys, counts = np.unique(ingested_hour, return_counts=True)
    per_hour = {_iso(datetime.fromtimestamp(int(k) * 3600, UTC)): int(c) for k, c in zip(keys, counts, strict=True)}
    launched = (cat.created_us >= _us(start)) & (cat.created_us < _us(end))
    summary: dict[str, Any] = {
        "start": _iso(start),
        "end": _iso(end),
        "seed": int(seed),
        "rate": int(rate),
        "scenario": scenario,
        "drift_at": _iso(drift_at) if drift_at is not None else None,
        "drift_mapping": drift_mapping(seed) if scenario == "drift" else {},
        "hours": len(span),
        "rows": impressions.num_rows,
        "products": products.num_rows,
        "launched_products": int(launched.sum()),
        "clicks": int(rows["clicked"][~rows["clicked_null"]].clip(0, 1).sum()),
        "late_rows": int(((rows["ingested_at"] - rows["event_ts"]) >= _HOUR_US).sum()),
        "per_hour": per_hour,
        "faults": damaged,
        "outage_moved_rows": moved,
    }
    return products, impressions, summary


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
) -> dict[str, Any]:
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
    moved_stored = 0
    for fault, value in (("zero_clicks", 0), ("all_clicked", 1)):  # click logging broken for the whole hour:
        if fault in faults:  # rows stored earlier that landed in it (late arrivals) too
            for hour in hours(parse_hour(start), parse_hour(end)):
                warehouse.execute_file("set_clicked_ingested_hour", {"start": hour, "end": hour + HOUR, "clicked": value})
    if "empty_hour" in faults:
        for hour in hours(parse_hour(start), parse_hour(end)):
            moved_stored += _shift_stored_hour(warehouse, hour)
    warehouse.insert("products", products)
    warehouse.insert("search_impressions", impressions.select(list(IMPRESSION_COLUMNS)))
    summary["outage_moved_stored_rows"] = moved_stored
    return summary
