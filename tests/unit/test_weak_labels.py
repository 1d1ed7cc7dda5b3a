"""BM25 on the click scale: the one-feature logistic regression behind `training.bm25_label_weight`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from incremental.model.weak_labels import LABEL_COLUMN, fit_calibration, with_bm25_labels


def test_the_calibration_recovers_a_known_logistic_curve() -> None:
    rng = np.random.default_rng(0)
    bm25 = rng.uniform(0, 6, 40_000)
    clicked = rng.random(bm25.size) < 1 / (1 + np.exp(-(0.8 * bm25 - 3.0)))
    fitted = fit_calibration(bm25, clicked)
    assert abs(fitted.slope - 0.8) < 0.05 and abs(fitted.intercept + 3.0) < 0.15


def test_rows_without_a_click_or_without_a_shared_word_give_a_flat_finite_curve() -> None:
    for bm25, clicked in [(np.linspace(0, 5, 100), np.zeros(100)), (np.zeros(100), np.arange(100) % 4 == 0)]:
        fitted = fit_calibration(bm25, clicked)
        assert np.isfinite([fitted.slope, fitted.intercept]).all()
        assert abs(fitted.slope) < 1.0
    flat = fit_calibration(np.zeros(100), np.arange(100) % 4 == 0)
    assert abs(1 / (1 + np.exp(-flat.intercept)) - 0.25) < 1e-3  # the click rate


def test_the_label_mixes_the_click_with_bm25_in_the_given_share() -> None:
    rows = pd.DataFrame({"query": ["red shoes"] * 4 + ["oak table"] * 4,
                         "title": ["red shoes", "blue shoes", "red hat", "green lamp",
                                   "oak table", "pine table", "oak chair", "red shoes"],
                         "clicked": [1, 0, 1, 0, 1, 1, 0, 0]})
    labelled, fit = with_bm25_labels(rows, 0.25)
    assert fit["bm25_label_weight"] == 0.25 and fit["slope"] > 0
    bm25_part = (labelled[LABEL_COLUMN] - 0.75 * rows["clicked"]) / 0.25
    assert bm25_part.between(0, 1).all()
    assert bm25_part.iloc[0] > bm25_part.iloc[1] > bm25_part.iloc[3]  # full match > one word > none
    assert labelled[LABEL_COLUMN].dtype == np.float32 and list(rows.columns) == ["query", "title", "clicked"]
    only_bm25, _ = with_bm25_labels(rows, 1.0)
    assert only_bm25[LABEL_COLUMN].iloc[0] > only_bm25[LABEL_COLUMN].iloc[2]  # clicks ignored, BM25 orders


def test_a_category_whose_clicks_no_longer_follow_bm25_gets_its_own_curve() -> None:
    """After a drift a category's words mean something else: BM25 predicts its clicks no more, and
    its label must not teach the old meaning (a category too small to fit keeps the overall curve)."""
    rng = np.random.default_rng(1)
    n = 600
    words = rng.integers(0, 3, n)  # 0, 1 or 2 of the query's two words in the title
    titles = np.array(["oak table", "oak chair", "pine shelf"])[2 - words]
    category = np.array(["kept"] * 300 + ["drifted"] * 300)
    p = np.where(category == "kept", 0.1 + 0.35 * words, 0.8 - 0.35 * words)  # drifted: clicks against the words
    rows = pd.DataFrame({"query": "oak table", "title": titles, "category": category,
                         "clicked": (rng.random(n) < p).astype(int)})
    rows = pd.concat([rows, pd.DataFrame({"query": "oak table", "title": ["oak table", "pine shelf"] * 10,
                                          "category": "small", "clicked": [0, 1] * 10})], ignore_index=True)
    labelled, fit = with_bm25_labels(rows, 1.0)
    assert fit["categories"]["kept"]["slope"] > 0 > fit["categories"]["drifted"]["slope"]
    assert "small" not in fit["categories"]  # 20 rows: the overall curve
    label = labelled.groupby(["category", "title"])[LABEL_COLUMN].first()
    assert label["kept", "oak table"] > label["kept", "pine shelf"]
    assert label["drifted", "oak table"] < label["drifted", "pine shelf"]
