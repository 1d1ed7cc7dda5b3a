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
