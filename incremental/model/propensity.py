"""How likely a result at each position is to be looked at, estimated from the click logs.

Clicks are position-biased: a user clicks what they examine and find relevant, and examination
falls with the position on the page. A model trained on raw clicks learns examination x relevance,
so it learns to copy the production ranker's order. `estimate` fits the position-based click
model (PBM: P(click) = examination[position] x relevance[query, product]; Chuklin et al., "Click
Models for Web Search", 2015) by expectation-maximisation on the logged rows themselves: what
identifies the examination curve is the same (query, product) pair shown at different positions
in different sessions. No constant of the simulator is used.

`train.run_update` multiplies the model's relevance probability by the estimated examination of
the row's position in the training loss only (as in PAL, Guo et al. 2019, with the position term
estimated beforehand instead of learned), and scoring ignores positions: the ranker scores
relevance, not the old ranker's order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)
MAX_POSITION = 10  # positions past this share its examination (a page holds 10 results)


@dataclass(frozen=True)
class Examination:
    """P(examined | position) for positions 1..len(probability), position 1 = 1.0 (the scale)."""

    probability: tuple[float, ...]
    rows: int  # rows the estimate was fitted on
    informative_rows: int  # rows of (query, product) pairs shown at more than one position
    note: str = ""  # why the curve is flat when it is (too little to estimate from)

    def of(self, positions: np.ndarray) -> np.ndarray:
        """The examination probability of each row's (1-based) position."""
        index = np.clip(np.asarray(positions, dtype=np.int64), 1, len(self.probability)) - 1
        return np.asarray(self.probability, dtype=np.float64)[index]

    def to_dict(self) -> dict[str, object]:
        return {"probability": [round(p, 6) for p in self.probability], "rows": self.rows,
                "informative_rows": self.informative_rows, **({"note": self.note} if self.note else {})}


MIN_INFORMATIVE_ROWS = 2000  # below this the EM's curve is mostly noise: no correction (a warning, in the lineage)


def estimate(frame: pd.DataFrame, *, iterations: int = 200, floor: float = 0.02,
             min_informative_rows: int = MIN_INFORMATIVE_ROWS) -> Examination:
    """Fit the PBM by EM on rows with `query`, `product_id`, `position` and `clicked`.

    E-step, for an unclicked row: P(examined | no click) = e (1 - r) / (1 - e r) and
    P(relevant | no click) = r (1 - e) / (1 - e r); a clicked row was both. M-step: e per position
    and r per pair are the means of those posteriors. The curve is scaled to 1 at position 1 and
    kept non-increasing and at least `floor` (a weight of 1/floor at most: rows at rarely examined
    positions stay bounded). With fewer than `min_informative_rows` rows of pairs shown at two or
    more positions the curve is not estimated: no correction, and the `note` says why. Even above
    it the estimate is biased toward 1 near the top when pairs have few rows each (2-4; a review
    measured positions 2-4 at about 1.0 against 0.7-0.35), and on the simulator it put position 2 at
    1.0 against 0.62: one reason `training.position_bias` defaults to `none`.
    """
    position = np.clip(frame["position"].to_numpy(dtype=np.int64), 1, MAX_POSITION) - 1
    clicked = frame["clicked"].to_numpy(dtype=np.float64)
    pair, _ = pd.factorize(pd.MultiIndex.from_arrays([frame["query"].astype(str), frame["product_id"].astype(str)]))
    # only pairs shown at two or more positions say anything about examination: a pair seen once
    # is explained as well by any curve (its own relevance absorbs it), and would pull it to flat
    spread = pd.Series(position).groupby(pair).transform("nunique").to_numpy() if len(pair) else np.zeros(0)
    keep = spread > 1
    position, clicked = position[keep], clicked[keep]
    pair = pd.factorize(pair[keep])[0]
    n_pairs = int(pair.max()) + 1 if len(pair) else 0
    pair_rows = np.bincount(pair, minlength=n_pairs)
    seen = np.bincount(position, minlength=MAX_POSITION) > 0
    pos_rows = np.maximum(np.bincount(position, minlength=MAX_POSITION), 1)
    prior = max(float(clicked.mean()), 1e-3) if len(clicked) else 0.5
    exam = np.full(MAX_POSITION, 0.5)
    rel = np.full(n_pairs, min(2 * prior, 0.5))
    for _ in range(iterations if n_pairs else 0):
        e, r = exam[position], rel[pair]
        denom = np.maximum(1.0 - e * r, 1e-12)
        p_exam = np.where(clicked > 0, 1.0, e * (1.0 - r) / denom)
        p_rel = np.where(clicked > 0, 1.0, r * (1.0 - e) / denom)
        exam = np.clip(np.bincount(position, weights=p_exam, minlength=MAX_POSITION) / pos_rows, 1e-6, 1.0)
        rel = np.clip(np.bincount(pair, weights=p_rel, minlength=n_pairs) / pair_rows, 1e-6, 1 - 1e-6)
    for k in range(1, MAX_POSITION):  # a position no informative row was shown at: as the one above it
        if not seen[k]:
            exam[k] = exam[k - 1]
    curve = exam / exam[0] if seen[0] else np.ones(MAX_POSITION)
    curve = np.clip(np.minimum.accumulate(curve), floor, 1.0)  # examination does not rise down the page
    informative = int(keep.sum())
    if informative < min_informative_rows:
        note = (f"not estimated: {informative} rows of pairs shown at two or more positions, fewer than "
                f"{min_informative_rows}; trained without a position correction")
        log.warning("examination curve %s", note)
        return Examination(tuple([1.0] * MAX_POSITION), len(frame), informative, note)
    return Examination(tuple(float(x) for x in curve), len(frame), informative)


def unbiased(rows: int) -> Examination:
    """No position correction: every position examined (plain BCE on clicks)."""
    return Examination(tuple([1.0] * MAX_POSITION), rows, 0)
