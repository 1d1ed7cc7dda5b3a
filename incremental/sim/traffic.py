"""One event hour of synthetic search traffic: sessions, pages, the hidden click model, late
arrivals, and what the drift scenario changes.

Deterministic: the rows of one *event hour* come from an RNG seeded by ``(seed, hour)``, so they
are the same whichever window of hours is simulated (the products come from
`incremental.sim.catalogue`, seeded by the seed). `incremental.sim.simulate` puts the hours
together, injects the faults and writes them to the warehouse.

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
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np

from incremental.sim.catalogue import (
    CATALOGUE_EPOCH,
    CATEGORIES,
    CATEGORY_NAMES,
    HOUR_US,
    N_ATTRIBUTES,
    N_CATEGORIES,
    N_NOUNS,
    QUERIES,
    US,
    Catalogue,
    hour_index,
    stream_rng,
    to_us,
)

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

# --- users, seasonality, vocabulary drift ----------------------------------------------------
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


# --- small helpers ------------------------------------------------------------------------------
def position_bias(position: np.ndarray) -> np.ndarray:
    """P(a result at this 1-based position is looked at) in the hidden click model."""
    return np.asarray(position, dtype=float) ** -POSITION_BIAS_EXPONENT


def drift_mapping(seed: int) -> dict[str, str]:
    """The drift scenario's conflicting term -> intent mapping by category name (seeded)."""
    intent = drift_intent(seed)
    return {CATEGORY_NAMES[a]: CATEGORY_NAMES[b] for a, b in enumerate(intent) if a != b}


def drift_intent(seed: int) -> np.ndarray:
    rng = stream_rng(seed, 0xD41F7)
    chosen = rng.choice(N_CATEGORIES, size=DRIFT_CONFLICT_CATEGORIES, replace=False)
    intent = np.arange(N_CATEGORIES)
    intent[chosen] = np.roll(chosen, -1)
    return intent


# --- one event hour -------------------------------------------------------------------------------
def _category_weights(seed: int, hour: datetime, drifted: bool, intent: np.ndarray) -> np.ndarray:
    base = 0.5 + stream_rng(seed, 0x909).random(N_CATEGORIES)
    peak = np.array([c.peak_hour for c in CATEGORIES])
    weekend = np.array([c.weekend for c in CATEGORIES])
    daily = 1.0 + DAILY_AMPLITUDE * np.cos(2 * np.pi * (hour.hour - peak) / 24)
    w = base * daily * (1.0 + WEEKEND_BOOST * weekend * (hour.weekday() >= 5))
    if drifted:
        conflicting = intent != np.arange(N_CATEGORIES)
        w = w * np.where(conflicting, DRIFT_TRAFFIC_BOOST, DRIFT_TRAFFIC_DAMP)
    return w / w.sum()


def _emerging_share(seed: int, hour: datetime, cat: np.ndarray, noun: np.ndarray) -> np.ndarray:
    phase0 = stream_rng(seed, 0x5E7).random((N_CATEGORIES, N_NOUNS))
    cycles = (to_us(hour) - to_us(CATALOGUE_EPOCH)) / (EMERGING_CYCLE_DAYS * 24 * HOUR_US)
    return EMERGING_SHARE_MAX * ((cycles + phase0[cat, noun]) % 1.0)


def _pools(cat: Catalogue, hour: datetime, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Products on the shelf in this hour, grouped by (category, noun) in a random order."""
    h = to_us(hour)
    eligible = np.flatnonzero((cat.created_us <= h) & (cat.shelf_end_us > h))  # product_id order
    group = cat.category[eligible] * N_NOUNS + cat.noun[eligible]
    order = np.lexsort((rng.random(len(eligible)), group))
    members = eligible[order]
    counts = np.bincount(group, minlength=N_CATEGORIES * N_NOUNS)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return members, offsets, counts


def _pick(members: np.ndarray, offsets: np.ndarray, counts: np.ndarray, group: np.ndarray, k: int,
          rng: np.random.Generator) -> np.ndarray:
    """k distinct products from each session's group: (sessions, k) product indices."""
    start = rng.integers(0, counts[group])
    steps = (start[:, None] + np.arange(k)[None, :]) % counts[group][:, None]
    return members[offsets[group][:, None] + steps]


def _page(cat: Catalogue, hour: datetime, rng: np.random.Generator, lex: np.ndarray, noun: np.ndarray,
          want: np.ndarray) -> np.ndarray:
    """Each session's page before ranking: lexical matches, related products, random others."""
    n_sess = len(lex)
    members, offsets, counts = _pools(cat, hour, rng)
    other_noun = (noun + 1 + rng.integers(0, N_NOUNS - 1, n_sess)) % N_NOUNS
    related_group = np.where(want != lex, want * N_NOUNS + noun, lex * N_NOUNS + other_noun)
    r0 = rng.integers(0, N_CATEGORIES - 1, n_sess)
    random_cols = []
    for j in range(RANDOM_SLOTS):
        rc = (lex + 1 + (r0 + j) % (N_CATEGORIES - 1)) % N_CATEGORIES
        rn = (noun + 1 + rng.integers(0, N_NOUNS - 1, n_sess)) % N_NOUNS
        random_cols.append(_pick(members, offsets, counts, rc * N_NOUNS + rn, 1, rng))
    return np.concatenate(
        [
            _pick(members, offsets, counts, lex * N_NOUNS + noun, LEXICAL_SLOTS, rng),
            _pick(members, offsets, counts, related_group, RELATED_SLOTS, rng),
            *random_cols,
        ],
        axis=1,
    )


def hour_rows(
    seed: int, hour: datetime, rate: int, cat: Catalogue, drift_at: datetime | None, intent: np.ndarray
) -> dict[str, np.ndarray]:
    rng = stream_rng(seed, hour_index(hour), 1)
    drifted = drift_at is not None and hour >= drift_at
    n_sess = math.ceil(rate / PAGE_SIZE)
    lex = rng.choice(N_CATEGORIES, size=n_sess, p=_category_weights(seed, hour, drifted, intent))
    noun = rng.integers(0, N_NOUNS, n_sess)
    want = intent[lex] if drifted else lex
    u = rng.random(n_sess)
    emerging = _emerging_share(seed, hour, lex, noun)
    syn = np.where(u < emerging, 2, np.where(u < emerging + SYNONYM_SHARE, 1, 0))
    q_attr = np.where(rng.random(n_sess) < QUERY_ATTRIBUTE_SHARE, rng.integers(0, N_ATTRIBUTES, n_sess), -1)
    query = QUERIES[((lex * N_NOUNS + noun) * 3 + syn) * (N_ATTRIBUTES + 1) + q_attr + 1]

    page = _page(cat, hour, rng, lex, noun, want)  # (sessions, PAGE_SIZE) product indices, unranked

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

    session_start = rng.integers(0, HOUR_US - PAGE_SIZE * 1000, n_sess)
    user = (N_USERS * rng.random(n_sess) ** 2).astype(np.int64)
    event_us = to_us(hour) + session_start[:, None] + (position - 1) * 1000

    n = rate
    sess_of_row = np.repeat(np.arange(n_sess), PAGE_SIZE)[:n]
    late = rng.random(n) < LATE_SHARE
    short_s = np.minimum(SHORT_DELAY_MIN_S + rng.exponential(SHORT_DELAY_MEAN_S, n), SHORT_DELAY_MAX_S)
    late_s = rng.uniform(LATE_DELAY_MIN_H * 3600, LATE_DELAY_MAX_H * 3600, n)
    delay_us = (np.where(late, late_s, short_s) * US).astype(np.int64)
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
