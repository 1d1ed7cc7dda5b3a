"""Import a real relevance-judgment CSV as catalogue rows and timestamped, clicked impressions.

Any CSV of (query, product title, graded relevance) works, e.g. the Home Depot Product Search
Relevance set (``--query-col search_term --title-col product_title --grade-col relevance
--encoding latin-1``). A ``.zip`` holding one CSV is read directly (pandas infers it).

* Products: ``product_id`` is ``J`` + 16 hex digits of the title's SHA-1 (stable across runs and
  seeds; duplicate titles are one product), ``brand`` is the title's first word, ``category``
  is, with ``slice_by="brand"``, the brand for the :data:`TOP_BRANDS` most frequent brands (by
  judged pairs) and ``"other"`` for the rest; with ``slice_by="hash"`` a bucket
  ``bucket-NN`` of :data:`HASH_BUCKETS` from the product id. ``price`` is unknown (NULL) and
  ``created_at`` is ``start``.
* Impressions: one per judged pair. The pairs of one query form one session's page (pages of
  at most :data:`PAGE_SIZE`; positions 1..n in a random order). Pages are laid out in time from
  ``start``: row ``i`` has ``event_ts = start + i / rate`` hours, so every hour holds ``rate``
  impressions; ``ingested_at`` adds the simulator's short delay (1 s to 5 min, no late arrivals).
  ``clicked ~ Bernoulli(normalised grade * position bias)``, the grade min-max normalised to
  [0, 1] over the file and the position bias the simulator's (``position ** -0.7``).
* Order: with ``slice_by="brand"`` pages are sorted by the brand group of their products (the
  most common one on the page; groups by size, ``other`` last), so the topic drifts from hour to
  hour; with ``"hash"`` pages are shuffled, so every hour looks alike.

Everything random (page order within a group, positions, clicks, users, delays) comes from
``seed``. Errors are :class:`JudgmentsError` with a message naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import logging
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa

from incremental.data.warehouse import Warehouse
from incremental.errors import IncrementalError
from incremental.hours import iso_hour, parse_hour
from incremental.sim.traffic import (
    SHORT_DELAY_MAX_S,
    SHORT_DELAY_MEAN_S,
    SHORT_DELAY_MIN_S,
    position_bias,
)

SLICES = ("brand", "hash")
TOP_BRANDS = 20
HASH_BUCKETS = 20
PAGE_SIZE = 10
GRADE_OUTLIER_SPREADS = 1000  # a grade further than this many IQRs (or units) from the median is a typo
N_USERS = 20_000

log = logging.getLogger(__name__)
_US = 1_000_000
_HOUR_US = 3600 * _US


class JudgmentsError(IncrementalError, ValueError):
    """The judgment file or the import arguments are wrong; the message says what and where."""


def _read(path: Path, encoding: str, columns: dict[str, str]) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise JudgmentsError(f"{path}: " + ("a directory: name the CSV (or .zip) in it" if path.is_dir() else "no such file"))
    try:
        "".encode(encoding)
    except LookupError:
        raise JudgmentsError(f"unknown encoding {encoding!r} (try utf-8 or latin-1)") from None
    try:
        frame = pd.read_csv(path, encoding=encoding, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise JudgmentsError(f"{path} is empty: expected a CSV with a header row") from None
    except UnicodeDecodeError as exc:
        raise JudgmentsError(
            f"{path} is not valid {encoding} (a byte {exc.object[exc.start:exc.start + 1]!r} it cannot decode): "
            f"pass the file's encoding, e.g. --encoding latin-1"
        ) from None
    except pd.errors.ParserError as exc:  # a ValueError too: first
        raise JudgmentsError(f"{path} is not a well-formed CSV: {str(exc).strip()}") from None
    except (zipfile.BadZipFile, ValueError) as exc:  # e.g. a zip holding several files
        raise JudgmentsError(f"{path} could not be read as one CSV: {str(exc).strip()}") from None
    missing = [f"{name!r} ({flag})" for flag, name in columns.items() if name not in frame.columns]
    if missing:
        raise JudgmentsError(
            f"{path}: column {', '.join(missing)} not found; the columns are: {', '.join(map(str, frame.columns))}"
        )
    if frame.empty:
        raise JudgmentsError(f"{path} has a header but no rows")
    return frame


def _product_id(title: str) -> str:
    return "J" + hashlib.sha1(title.encode("utf-8")).hexdigest()[:16]


def load_pairs(
    path: Path, *, query_col: str, title_col: str, grade_col: str, encoding: str = "utf-8"
) -> tuple[pd.DataFrame, int]:
    """The judged pairs as a frame (query, title, grade); and how many rows were skipped (no query/title).

    A grade far from the others (more than `GRADE_OUTLIER_SPREADS` interquartile ranges from the
    median) is refused, naming its lines; a row repeating an earlier one exactly is imported once,
    with a warning (`attrs["duplicates"]` counts the rows left out as repeats)."""
    flags = {"--query-col": query_col, "--title-col": title_col, "--grade-col": grade_col}
    raw = _read(Path(path), encoding, flags)
    grade_text = raw[grade_col]
    grade = pd.to_numeric(grade_text.str.strip(), errors="coerce")
    bad = grade.isna() | ~np.isfinite(grade.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        examples = ", ".join(
            f"line {i + 2}: {v!r}" for i, v in list(zip(raw.index[bad], grade_text[bad].fillna(""), strict=True))[:5]
        )
        raise JudgmentsError(
            f"{path}: {int(bad.sum())} non-numeric or missing grade(s) in column {grade_col!r} ({examples})"
        )
    pairs = pd.DataFrame(
        {
            "query": raw[query_col].fillna("").str.strip(),
            "title": raw[title_col].fillna("").str.strip(),
            "grade": grade.astype(float),
        }
    )
    keep = (pairs["query"] != "") & (pairs["title"] != "")
    pairs = pairs[keep]
    if pairs.empty:
        raise JudgmentsError(f"{path}: no row has both a query ({query_col!r}) and a title ({title_col!r})")
    # grades are min-max normalised: one far from the others (a typo: 1e300) squashes the rest to one value
    grades = pairs["grade"]
    spread = grades.quantile(0.75) - grades.quantile(0.25)
    far = (grades - grades.median()).abs() > GRADE_OUTLIER_SPREADS * (spread if spread > 0 else 1.0)
    if far.any():
        examples = ", ".join(f"line {i + 2}: {g!r}" for i, g in list(grades[far].items())[:5])
        raise JudgmentsError(
            f"{path}: {int(far.sum())} grade(s) in column {grade_col!r} far from the others ({examples}; median "
            f"{grades.median():g}): every other grade would be squashed to one value; fix or remove them"
        )
    # a row repeated exactly (every column of the file) is one judgment recorded twice: imported
    # once, else one product fills a page at every position (rows that differ elsewhere, e.g.
    # two products with one title, stay two pairs)
    repeated = raw.loc[pairs.index].duplicated()
    duplicates = int(repeated.sum())
    if duplicates:
        lines = ", ".join(str(i + 2) for i in pairs.index[repeated.to_numpy()][:5])
        log.warning("%s: %d row(s) repeat an earlier row exactly (lines %s%s): each is imported once", path,
                    duplicates, lines, ", ..." if duplicates > 5 else "")
        pairs = pairs[~repeated.to_numpy()]
    pairs = pairs.reset_index(drop=True)
    pairs.attrs["duplicates"] = duplicates
    return pairs, int((~keep).sum())


def _categorise(pairs: pd.DataFrame, slice_by: str) -> pd.DataFrame:
    """Add each pair's product_id, brand and category (the slice); the products, one row each."""
    pairs["product_id"] = [_product_id(t) for t in pairs["title"]]
    pairs["brand"] = pairs["title"].str.split(n=1).str[0]
    if slice_by == "brand":
        sizes = pairs["brand"].value_counts()
        sizes = sizes.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
        top = set(sizes.index[:TOP_BRANDS])
        pairs["category"] = pairs["brand"].where(pairs["brand"].isin(top), "other")
    else:
        pairs["category"] = [f"bucket-{int(p[1:], 16) % HASH_BUCKETS:02d}" for p in pairs["product_id"]]
    return pairs.drop_duplicates("product_id")[["product_id", "title", "brand", "category"]]


def _lay_out_pages(pairs: pd.DataFrame, slice_by: str, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.Series]:
    """The pairs as pages in time order, each with its positions; and the slices' sizes, largest first."""
    pairs["page"] = pairs.groupby("query", sort=True).ngroup()
    pairs["slot"] = pairs.groupby("page").cumcount()
    pairs["page"] = pairs["page"] * (1 + pairs["slot"].max() // PAGE_SIZE) + pairs["slot"] // PAGE_SIZE
    pages = pairs.groupby("page")["category"].agg(lambda c: c.value_counts().sort_index().idxmax())
    group_size = pairs["category"].value_counts()
    group_rank = {g: (g == "other", -n, g) for g, n in group_size.items()}
    page_key = pd.DataFrame({"page": pages.index, "shuffle": rng.random(len(pages))})
    if slice_by == "brand":
        page_key["group"] = [group_rank[g] for g in pages.to_numpy()]
        page_key = page_key.sort_values(["group", "shuffle"], kind="stable")
    else:
        page_key = page_key.sort_values("shuffle", kind="stable")
    page_order = pd.Series(np.arange(len(page_key)), index=page_key["page"].to_numpy())
    pairs["page_order"] = page_order.reindex(pairs["page"]).to_numpy()
    pairs["tiebreak"] = rng.random(len(pairs))  # positions: a random order within the page
    pairs = pairs.sort_values(["page_order", "tiebreak"], kind="stable").reset_index(drop=True)
    pairs["position"] = pairs.groupby("page_order").cumcount() + 1
    return pairs, group_size


def _impressions(pairs: pd.DataFrame, start: datetime, start_us: int, rate: int, seed: int,
                 rng: np.random.Generator, digest: str) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """One impression per laid-out pair: its times, session, user and click; with the clicks and
    the ingestion times (microseconds) for the summary. Ids carry the import's `digest`."""
    n = len(pairs)
    lo, hi = pairs["grade"].min(), pairs["grade"].max()
    norm = (pairs["grade"] - lo) / (hi - lo) if hi > lo else pd.Series(1.0, index=pairs.index)
    p_click = norm.to_numpy() * position_bias(pairs["position"].to_numpy())
    clicked = (rng.random(n) < p_click).astype(np.int32)
    event_us = start_us + (np.arange(n, dtype=np.int64) * _HOUR_US) // rate
    delay_s = np.minimum(SHORT_DELAY_MIN_S + rng.exponential(SHORT_DELAY_MEAN_S, n), SHORT_DELAY_MAX_S)
    ingested_us = event_us + (delay_s * _US).astype(np.int64)
    n_pages = int(pairs["page_order"].max()) + 1
    users = (N_USERS * rng.random(n_pages) ** 2).astype(np.int64)
    tag = f"{seed}-{start:%Y%m%d%H}-{digest}"
    page_idx = pairs["page_order"].to_numpy()
    ts = pa.timestamp("us", tz="UTC")
    impressions = pa.table(
        {
            "event_id": pa.array([f"j{tag}-{i:07d}" for i in range(n)], pa.string()),
            "event_ts": pa.array(event_us, ts),
            "ingested_at": pa.array(ingested_us, ts),
            "session_id": pa.array(np.array([f"js{tag}-{p:06d}" for p in range(n_pages)], dtype=object)[page_idx]),
            "user_id": pa.array(np.array([f"ju{seed}-{u:05d}" for u in users], dtype=object)[page_idx]),
            "query": pa.array(pairs["query"].to_numpy(dtype=object), pa.string()),
            "product_id": pa.array(pairs["product_id"].to_numpy(dtype=object), pa.string()),
            "position": pa.array(pairs["position"].to_numpy(), pa.int32()),
            "clicked": pa.array(clicked, pa.int32()),
        }
    )
    return impressions, clicked, ingested_us


def import_digest(pairs: pd.DataFrame, *, slice_by: str, rate: int) -> str:
    """12 hex digits naming what an import loads, with its seed and start (which the ids carry
    as they are): the judged pairs and the options that lay them out. The same import again has
    the same ids (it is recognised and changes nothing); another file, or the same file laid out
    otherwise, has ids of its own."""
    h = hashlib.sha256(f"{slice_by}|{rate}|".encode())
    for column in ("query", "title"):
        h.update("\x1f".join(pairs[column]).encode("utf-8", "surrogatepass") + b"\x1e")
    h.update(pairs["grade"].to_numpy(dtype=np.float64).tobytes())
    return h.hexdigest()[:12]


def _product_table(products: pd.DataFrame, start_us: int) -> pa.Table:
    ts = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "product_id": pa.array(products["product_id"].to_numpy(dtype=object), pa.string()),
            "title": pa.array(products["title"].to_numpy(dtype=object), pa.string()),
            "brand": pa.array(products["brand"].to_numpy(dtype=object), pa.string()),
            "category": pa.array(products["category"].to_numpy(dtype=object), pa.string()),
            "price": pa.nulls(len(products), pa.float64()),
            "created_at": pa.array(np.full(len(products), start_us, dtype=np.int64), ts),
        }
    )


class ImportSummary(TypedDict):
    """What `import_judgments` loaded (see its docstring)."""

    path: str
    pairs: int
    skipped: int  # rows without query or title
    duplicates: int  # rows repeating an earlier row exactly: imported once
    products: int
    impressions: int
    clicks: int
    hours: int  # event hours filled: ceil(pairs / rate)
    start: str  # ISO, of the event hours
    end: str
    slice_by: str
    categories: list[str]  # the slices, largest first
    per_hour: dict[str, int]  # rows by ingested hour
    import_id: str  # the prefix of its event ids
    already_imported: bool  # the same import was loaded before: nothing written
    seconds: float


def import_judgments(
    warehouse: Warehouse,
    path: Path,
    *,
    query_col: str,
    title_col: str,
    grade_col: str,
    encoding: str = "utf-8",
    slice_by: str = "brand",
    start: datetime,
    rate: int,
    seed: int = 0,
) -> ImportSummary:
    """Load a judgment CSV into the warehouse as products and impressions; returns a summary.

    Summary: pairs (read and used), skipped (rows without query or title), duplicates (rows
    repeating an earlier row exactly, imported once), products, hours
    (event hours filled, ceil(pairs / rate)), impressions, clicks, start/end (of the event hours), categories
    (the slices, largest first), per_hour (rows by ingested hour), import_id (the prefix of its
    event ids), already_imported (the same import was loaded before: nothing written), seconds.

    Idempotent: the event ids name the import (seed, start, `import_digest`), so importing the
    same file with the same options again writes nothing, and two different imports never share
    an id. A partial earlier load of the same rows is refused with the way to remove it.
    """
    began = time.perf_counter()
    if slice_by not in SLICES:
        raise JudgmentsError(f"unknown slice_by {slice_by!r}; choose one of {', '.join(SLICES)}")
    if not isinstance(rate, int) or rate < 1:
        raise JudgmentsError(f"rate must be a positive number of impressions per hour, got {rate!r}")
    start = parse_hour(start)
    pairs, skipped = load_pairs(
        Path(path), query_col=query_col, title_col=title_col, grade_col=grade_col, encoding=encoding
    )
    duplicates = int(pairs.attrs.get("duplicates", 0))
    digest = import_digest(pairs, slice_by=slice_by, rate=rate)
    rng = np.random.default_rng([seed, 0x7D6])
    products = _categorise(pairs, slice_by)
    start_us = int(start.timestamp()) * _US
    pairs, group_size = _lay_out_pages(pairs, slice_by, rng)
    impressions, clicked, ingested_us = _impressions(pairs, start, start_us, rate, seed, rng, digest)

    n = len(pairs)
    warehouse.init_schema()
    prefix = f"j{seed}-{start:%Y%m%d%H}-{digest}-"
    loaded = int(warehouse.scalar("count_import", {"prefix": f"{prefix}%"}) or 0)
    if loaded not in (0, n):
        raise JudgmentsError(f"{path}: {loaded} of its {n} impressions (event ids {prefix}*) are in the warehouse "
                             "already, from an earlier import of the same rows that did not finish; remove them "
                             "first (DELETE FROM search_impressions WHERE event_id LIKE '" + prefix + "%')")
    if loaded == 0:  # the same import again changes nothing
        warehouse.insert("products", _product_table(products, start_us))
        warehouse.insert("search_impressions", impressions)
    hour_of = ingested_us // _HOUR_US
    keys, counts = np.unique(hour_of, return_counts=True)
    return {
        "path": str(path),
        "pairs": n,
        "skipped": skipped,
        "duplicates": duplicates,  # rows repeating an earlier row exactly: imported once
        "products": len(products),
        "impressions": n,
        "clicks": int(clicked.sum()),
        "hours": -(-n // rate),
        "start": iso_hour(start),
        "end": iso_hour(start + timedelta(hours=-(-n // rate))),
        "slice_by": slice_by,
        "categories": group_size.index.tolist(),
        "per_hour": {
            iso_hour(datetime.fromtimestamp(int(k) * 3600, UTC)): int(c) for k, c in zip(keys, counts, strict=True)
        },
        "import_id": prefix.rstrip("-"),
        "already_imported": loaded == n,  # nothing was written
        "seconds": round(time.perf_counter() - began, 3),
    }
