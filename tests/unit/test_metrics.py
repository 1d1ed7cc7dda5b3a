"""Metrics against values computed by hand (and cross-checked against scikit-learn)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from incremental.judge import metrics


def log2(x: float) -> float:
    return math.log2(x)


# ------------------------------------------------------------------ AUC


def test_auc_with_ties_by_hand() -> None:
    # positives score 0.9, 0.5, 0.2; negatives 0.9, 0.5, 0.1. Pairs (pos, neg), tie = 1/2:
    # 0.9: tie, win, win = 2.5; 0.5: loss, tie, win = 1.5; 0.2: loss, loss, win = 1 -> 5 / 9
    labels = [1, 0, 1, 0, 1, 0]
    scores = [0.9, 0.9, 0.5, 0.5, 0.2, 0.1]
    assert metrics.roc_auc(labels, scores) == pytest.approx(5 / 9)


def test_auc_constant_scorer_is_one_half_and_single_class_is_nan() -> None:
    assert metrics.roc_auc([1, 0, 0, 1], [0.3] * 4) == pytest.approx(0.5)
    assert math.isnan(metrics.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(metrics.roc_auc([], []))
    assert math.isnan(metrics.roc_auc([1, 0], [0.4, math.nan]))


def test_auc_matches_sklearn_on_random_data() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(2, 400))
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            continue
        s = np.round(rng.random(n), int(rng.integers(1, 4)))  # rounding makes plenty of ties
        assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


# ------------------------------------------------------------------ NDCG


def test_ndcg_with_ties_and_several_groups_by_hand() -> None:
    frame = pd.DataFrame(
        {
            "group": ["a", "a", "a", "b", "b", "c", "c"],
            "gain": [1, 0, 1, 2, 0, 0, 0],
            "score": [0.9, 0.9, 0.3, 0.1, 0.8, 0.5, 0.4],
        }
    )
    # a: the tie block {0.9, 0.9} takes ranks 0 and 1 with mean gain 1/2, then gain 1 at rank 2.
    dcg_a = 0.5 * (1 / log2(2) + 1 / log2(3)) + 1 / log2(4)
    idcg_a = 1 / log2(2) + 1 / log2(3)
    # b: the graded gain 2 is ranked second.
    dcg_b, idcg_b = 2 / log2(3), 2 / log2(2)
    # c: no click, no NDCG: left out of the mean.
    per_group = metrics.ndcg_per_group(frame.gain, frame.score, frame.group)
    assert per_group[:2] == pytest.approx([dcg_a / idcg_a, dcg_b / idcg_b])
    assert math.isnan(per_group[2])
    assert metrics.ndcg_at_k(frame.gain, frame.score, frame.group) == pytest.approx(
        (dcg_a / idcg_a + dcg_b / idcg_b) / 2
    )


def test_ndcg_tie_block_straddling_the_cutoff() -> None:
    # three tied rows, one clicked, k = 2: each of ranks 0 and 1 gets the mean gain 1/3.
    value = metrics.ndcg_at_k([1, 0, 0], [0.5, 0.5, 0.5], [0, 0, 0], k=2)
    assert value == pytest.approx((1 / 3) * (1 + 1 / log2(3)) / 1.0)


def test_ndcg_ties_equal_the_mean_over_all_orderings_and_ignore_input_order() -> None:
    gains = np.array([2, 0, 1, 0, 1, 3, 0])
    scores = np.array([0.4, 0.4, 0.4, 0.9, 0.2, 0.2, 0.1])

    def plain_ndcg(order: tuple[int, ...], k: int) -> float:
        dcg = sum(gains[i] / log2(r + 2) for r, i in enumerate(order[:k]))
        ideal = sorted(gains, reverse=True)
        return dcg / sum(g / log2(r + 2) for r, g in enumerate(ideal[:k]))

    for k in (1, 2, 3, 10):
        # every ordering consistent with the scores (descending), tied rows in any order
        blocks = [[i for i in range(7) if scores[i] == v] for v in sorted(set(scores), reverse=True)]
        orders = [sum(p, ()) for p in itertools.product(*(itertools.permutations(b) for b in blocks))]
        expected = np.mean([plain_ndcg(o, k) for o in orders])
        assert metrics.ndcg_at_k(gains, scores, np.zeros(7), k=k) == pytest.approx(expected)
        perm = np.random.default_rng(k).permutation(7)
        assert metrics.ndcg_at_k(gains[perm], scores[perm], np.zeros(7), k=k) == pytest.approx(expected)


def test_ndcg_matches_sklearn_tie_averaged_per_group() -> None:
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 25, 60)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    gains = rng.integers(0, 3, groups.size) * (rng.random(groups.size) < 0.4)
    scores = np.round(rng.random(groups.size), 1)
    ours = metrics.ndcg_per_group(gains, scores, groups)
    expected = []
    for g in range(len(sizes)):
        m = groups == g
        if gains[m].sum() == 0:
            expected.append(math.nan)
        elif m.sum() == 1:
            expected.append(1.0)
        else:
            expected.append(ndcg_score([gains[m]], [scores[m]], k=10, ignore_ties=False))
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


# ------------------------------------------------------------------ log loss and ECE


def test_log_loss_by_hand_and_clipped() -> None:
    assert metrics.log_loss([1, 0], [0.8, 0.3]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    assert metrics.log_loss([0], [1.0]) == pytest.approx(-math.log(1e-15), rel=1e-4)  # 1 - 1e-15 is inexact
    assert math.isnan(metrics.log_loss([1], [math.inf]))
    with pytest.raises(ValueError, match="probabilities"):
        metrics.log_loss([1, 0], [2.5, -1.0])


def test_log_loss_matches_sklearn() -> None:
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    p = rng.random(500)
    assert metrics.log_loss(y, p) == pytest.approx(log_loss(y, p), rel=1e-9)


def test_ece_by_hand() -> None:
    p = [0.05, 0.15, 0.15, 0.85, 0.95, 0.95]
    y = [0, 0, 1, 1, 1, 0]
    # bin 0: |0 - .05| x1; bin 1: |.5 - .15| x2; bin 8: |1 - .85| x1; bin 9: |.5 - .95| x2
    expected = (0.05 + 2 * 0.35 + 0.15 + 2 * 0.45) / 6
    assert metrics.expected_calibration_error(y, p) == pytest.approx(expected)
    # one bin: |mean y - mean p|
    assert metrics.expected_calibration_error(y, p, bins=1) == pytest.approx(abs(0.5 - np.mean(p)))
    # p = 1 lands in the last bin, a perfectly calibrated extreme has no error
    assert metrics.expected_calibration_error([1, 0], [1.0, 0.0]) == pytest.approx(0.0)


# ------------------------------------------------------------------ evaluate


def test_evaluate_overall_and_per_category() -> None:
    frame = pd.DataFrame(
        {
            "session_id": ["s1", "s1", "s1", "s2", "s2", "s3"],
            "query": ["q", "q", "q", "q", "q", "r"],
            "category": ["books", "books", "toys", "toys", "toys", "books"],
            "clicked": [1, 0, 0, 1, 0, 1],
        }
    )
    scores = np.array([0.9, 0.2, 0.4, 0.7, 0.8, 0.6])
    out = metrics.evaluate(frame, scores)
    assert out["rows"] == 6 and out["positives"] == 3
    assert out["auc"] == pytest.approx(metrics.roc_auc(frame.clicked, scores))
    # groups: (s1,q) ranks .9(1) .4(0) .2(0) -> 1; (s2,q) .8(0) .7(1) -> 1/log2(3); (s3,r) -> 1
    assert out["ndcg@10"] == pytest.approx((1 + 1 / log2(3) + 1) / 3)
    assert out["ndcg_groups"] == 3
    assert set(out["per_category"]) == {"books", "toys"}
    books = out["per_category"]["books"]
    assert books["rows"] == 3 and books["auc"] == pytest.approx(1.0)
    toys = out["per_category"]["toys"]
    assert toys["auc"] == pytest.approx(0.5)  # positive .7 vs negatives .4 (win) and .8 (loss)
    assert toys["ndcg@10"] == pytest.approx(1 / log2(3))  # (s1,q) has no toys click: left out


def test_evaluate_empty_and_nan_scores() -> None:
    empty = pd.DataFrame({"session_id": [], "query": [], "category": [], "clicked": []})
    out = metrics.evaluate(empty, np.array([]))
    assert out["rows"] == 0 and out["per_category"] == {}
    assert all(math.isnan(out[key]) for key in ("auc", "ndcg@10", "logloss", "ece"))
    frame = pd.DataFrame({"session_id": ["a", "a"], "query": ["q", "q"], "category": ["x", "x"], "clicked": [1, 0]})
    out = metrics.evaluate(frame, np.array([math.nan, 0.5]))
    assert all(math.isnan(out[key]) for key in ("auc", "ndcg@10", "logloss", "ece"))
    with pytest.raises(ValueError):
        metrics.evaluate(frame, np.array([0.5]))
