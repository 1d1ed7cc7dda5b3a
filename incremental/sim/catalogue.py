"""The simulator's synthetic home-improvement catalogue, and the small helpers the simulator shares.

Ten categories (:data:`CATEGORIES`), each with its own five product nouns, six attributes and
four (invented) brands. A product title is ``"<Brand> <Attr> <Attr> <Noun>"``, e.g.
``"Voltrex Cordless Brushless Drill"``. The base catalogue (:data:`PRODUCTS_PER_NOUN` per noun)
exists since :data:`CATALOGUE_EPOCH`; on top of it :data:`LAUNCHES_PER_DAY` products are launched
every UTC day at a random time, are shown from the first hour that starts after their
``created_at`` and stay on the shelf for :data:`LAUNCH_SHELF_DAYS` days (older launches are
discontinued, which keeps the catalogue bounded for any date).

Everything is deterministic by ``seed``: the catalogue comes from an RNG seeded by the seed (and,
for launches, the UTC day). See `incremental.sim.traffic` for the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

CATALOGUE_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
PRODUCTS_PER_NOUN = 12
LAUNCHES_PER_DAY = 4
LAUNCH_SHELF_DAYS = 30

US = 1_000_000  # microseconds per second
HOUR_US = 3600 * US


# --- small helpers ------------------------------------------------------------------------------
def stream_rng(seed: int, *stream: int) -> np.random.Generator:
    """The RNG of one stream of the simulation (deterministic by seed and stream)."""
    return np.random.default_rng([seed, *stream])


def hour_index(hour: datetime) -> int:
    return int(hour.timestamp()) // 3600


def to_us(ts: datetime) -> int:
    """Microseconds since the epoch."""
    return int(ts.timestamp()) * US + ts.microsecond


def _title_case(text: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


# --- the categories -----------------------------------------------------------------------------
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


QUERIES = _query_table()


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
    rng = stream_rng(seed, 0xCA7A)
    grid = np.indices((N_CATEGORIES, N_NOUNS, PRODUCTS_PER_NOUN)).reshape(3, -1)
    ids = [f"P{seed}-{c:02d}{n}{k:02d}" for c, n, k in grid.T]
    parts = [_make_products(rng, ids, grid[0], grid[1])]
    created = [np.full(len(ids), to_us(CATALOGUE_EPOCH), dtype=np.int64)]
    first_day = (start - timedelta(days=LAUNCH_SHELF_DAYS + 1)).date()
    last_day = (end - timedelta(microseconds=1)).date()
    day = first_day
    while day <= last_day:
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        drng = stream_rng(seed, 0x1A0C, day.toordinal())
        cats = drng.integers(0, N_CATEGORIES, LAUNCHES_PER_DAY)
        nouns = drng.integers(0, N_NOUNS, LAUNCHES_PER_DAY)
        offsets = drng.integers(0, 86_400, LAUNCHES_PER_DAY) * US
        launch_ids = [f"P{seed}-L{day:%Y%m%d}{k}" for k in range(LAUNCHES_PER_DAY)]
        parts.append(_make_products(drng, launch_ids, cats, nouns))
        created.append(to_us(day_start) + offsets)
        day += timedelta(days=1)
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    created_us = np.concatenate(created)
    shelf_end = np.where(
        created_us == to_us(CATALOGUE_EPOCH), np.iinfo(np.int64).max, created_us + LAUNCH_SHELF_DAYS * 24 * HOUR_US
    )
    order = np.argsort(merged["product_id"].astype(str), kind="stable")
    return Catalogue(
        **{k: v[order] for k, v in merged.items()}, created_us=created_us[order], shelf_end_us=shelf_end[order]
    )
