"""The anchor's stratified sample: how many rows each (source hour, category) stratum gets, and which.

Pure functions on counts and Arrow tables; `incremental.judge.anchor` freezes what they pick.

Strata are (source hour, category). The ``size`` rows are allocated proportionally to stratum
sizes by the largest-remainder (Hamilton) method, with at least one row for every non-empty
stratum; when there are more strata than ``size``, the ``size`` largest strata get one row each
(ties by hour, then category). Within a stratum the rows with the smallest
``sha256(f"{seed}:{event_id}")`` are taken, so the sample depends only on the rows, the window,
``size`` and ``seed``: not on read order, and a stratum's picks only grow or shrink at the
edge when its allocation changes. The sample is sorted by (source_hour, category, event_id), so
the same inputs give the same rows in the same order.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

SOURCE_HOUR = "source_hour"  # the column that says which validated hour an anchor row came from
NULL_CATEGORY = "<null>"  # the stratum of rows with no category


def allocate(counts: Mapping[Any, int], size: int) -> dict[Any, int]:
    """Rows per stratum: proportional (largest remainder), >= 1 per non-empty stratum where possible.

    The result sums to ``min(size, total)`` and never exceeds a stratum's count. Ties are broken
    by stratum key order, so the result is deterministic.
    """
    keys = sorted(k for k, n in counts.items() if n > 0)
    total = sum(counts[k] for k in keys)
    if size < 0:
        raise ValueError("size must be non-negative")
    if size >= total:
        return {k: counts[k] for k in keys}
    if size < len(keys):  # not even one row each: the largest strata get one
        chosen = sorted(keys, key=lambda k: -counts[k])[:size]  # stable: ties keep key order
        return {k: (1 if k in chosen else 0) for k in keys}
    quota = [size * counts[k] / total for k in keys]
    alloc = [max(1, min(counts[k], math.floor(q))) for k, q in zip(keys, quota, strict=True)]
    surplus = sum(alloc) - size
    if surplus > 0:  # the minimum of one pushed some strata up: take from those furthest above quota
        heap = [(quota[i] - alloc[i], i) for i in range(len(keys)) if alloc[i] > 1]
        heapq.heapify(heap)
        for _ in range(surplus):
            _, i = heapq.heappop(heap)
            alloc[i] -= 1
            if alloc[i] > 1:
                heapq.heappush(heap, (quota[i] - alloc[i], i))
    elif surplus < 0:  # give the rest to the largest remainders that still have rows
        heap = [(alloc[i] - quota[i], i) for i in range(len(keys)) if alloc[i] < counts[keys[i]]]
        heapq.heapify(heap)
        for _ in range(-surplus):
            _, i = heapq.heappop(heap)
            alloc[i] += 1
            if alloc[i] < counts[keys[i]]:
                heapq.heappush(heap, (alloc[i] - quota[i], i))
    return dict(zip(keys, alloc, strict=True))


def _sample_key(seed: int, event_ids: pd.Series) -> np.ndarray:
    prefix = f"{seed}:".encode()
    return np.array(
        [int.from_bytes(hashlib.sha256(prefix + str(e).encode()).digest()[:8], "big") for e in event_ids],
        dtype=np.uint64,
    )


def sample(table: pa.Table, size: int, seed: int) -> pa.Table:
    """The stratified sample of `table` (with a source_hour column), sorted deterministically."""
    frame = pd.DataFrame(
        {
            "hour": table.column(SOURCE_HOUR).to_numpy(),
            "category": table.column("category").to_pandas().fillna(NULL_CATEGORY).astype(str),
            "event_id": table.column("event_id").to_pandas().astype(str),
        }
    )
    frame["key"] = _sample_key(seed, frame["event_id"])
    strata = frame.groupby(["hour", "category"], sort=True).indices
    alloc = allocate({k: len(v) for k, v in strata.items()}, size)
    picked: list[np.ndarray] = []
    for k, idx in strata.items():
        n = alloc.get(k, 0)
        if n:
            order = np.lexsort((frame["event_id"].to_numpy()[idx], frame["key"].to_numpy()[idx]))
            picked.append(idx[order[:n]])
    chosen = np.concatenate(picked) if picked else np.empty(0, dtype=np.int64)
    sub = frame.iloc[chosen]
    final = chosen[np.lexsort((sub["event_id"].to_numpy(), sub["category"].to_numpy(), sub["hour"].to_numpy()))]
    return table.take(pa.array(final, type=pa.int64()))
