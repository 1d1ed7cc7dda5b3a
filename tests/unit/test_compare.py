"""Paired bootstrap intervals over sessions: better, within noise, worse."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from incremental.judge.compare import category_mean_bootstrap, paired_bootstrap


def holdout(sessions: int = 60, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(sessions):
        relevant = rng.integers(0, 10)
        for p in range(10):
            rows.append({"session_id": f"s{s}", "query": f"q{s}", "clicked": int(p == relevant), "position": p + 1})
    frame = pd.DataFrame(rows)
    truth = frame["clicked"].to_numpy(dtype=float)
    return frame, truth


def test_a_better_ranker_is_significantly_better() -> None:
    frame, truth = holdout()
    rng = np.random.default_rng(1)
    good = np.clip(0.6 * truth + 0.4 * rng.random(len(truth)), 0, 1)
    poor = rng.random(len(truth))
    out = paired_bootstrap(frame, good, poor, samples=300, seed=3)
    assert out["sessions"] == 60 and out["rows"] == 600
    for metric in ("ndcg@10", "auc"):
        assert out[metric]["lo"] > 0 and out[metric]["verdict"] == "better"
    reverse = paired_bootstrap(frame, poor, good, samples=300, seed=3)
    assert reverse["ndcg@10"]["hi"] < 0 and reverse["ndcg@10"]["verdict"] == "worse"
    assert math.isclose(reverse["ndcg@10"]["diff"], -out["ndcg@10"]["diff"])


def test_the_same_model_is_within_noise_and_the_interval_is_deterministic() -> None:
    frame, truth = holdout()
    scores = np.random.default_rng(2).random(len(truth))
    noisy = np.clip(scores + np.random.default_rng(5).normal(0, 0.01, len(truth)), 0, 1)
    a = paired_bootstrap(frame, noisy, scores, samples=300, seed=7)
    assert a["ndcg@10"]["verdict"] == "within noise" and a["auc"]["verdict"] == "within noise"
    assert a["ndcg@10"]["lo"] <= a["ndcg@10"]["diff"] <= a["ndcg@10"]["hi"]
    assert a == paired_bootstrap(frame, noisy, scores, samples=300, seed=7)


def test_no_rows_or_no_clicks_is_undefined() -> None:
    frame, truth = holdout(sessions=5)
    empty = paired_bootstrap(frame.iloc[:0], truth[:0], truth[:0])
    assert empty["ndcg@10"]["verdict"] == "undefined" and math.isnan(empty["auc"]["lo"])
    frame["clicked"] = 0
    out = paired_bootstrap(frame, truth, truth, samples=100)
    assert out["ndcg@10"]["verdict"] == "undefined" and out["auc"]["verdict"] == "undefined"


def categorized(sessions: int = 120) -> tuple[pd.DataFrame, np.ndarray]:
    frame, truth = holdout(sessions)
    frame["category"] = np.where(frame["session_id"].str[1:].astype(int) % 3 == 0, "garden", "tools")
    frame.loc[frame["session_id"].str[1:].astype(int) % 3 == 1, "category"] = "paint"
    return frame, truth


def test_category_mean_counts_each_category_once_and_sees_a_loss_in_one() -> None:
    frame, truth = categorized()
    rng = np.random.default_rng(4)
    good = np.clip(0.6 * truth + 0.4 * rng.random(len(truth)), 0, 1)
    worse = good.copy()
    garden = (frame["category"] == "garden").to_numpy()
    worse[garden] = rng.random(garden.sum())  # forgot garden, kept the rest
    out = category_mean_bootstrap(frame, worse, good, ["garden", "tools"], samples=300, seed=2)
    per = out["categories"]
    assert set(per) == {"garden", "tools"} and per["tools"]["diff"] == 0.0  # paint is not protected: left out
    assert per["garden"]["rows"] == garden.sum() and per["garden"]["diff"] < -0.3
    assert math.isclose(out["diff"], per["garden"]["diff"] / 2)  # a mean of categories, not a pooled AUC
    assert out["hi"] < 0 and out["verdict"] == "worse"
    same = category_mean_bootstrap(frame, good, good, ["garden", "tools"], samples=300, seed=2)
    assert same["diff"] == 0.0 and same["lo"] == same["hi"] == 0.0


def test_category_mean_leaves_out_a_one_class_category_and_is_undefined_with_none() -> None:
    frame, truth = categorized()
    scores = np.random.default_rng(5).random(len(truth))
    frame.loc[frame["category"] == "paint", "clicked"] = 0
    out = category_mean_bootstrap(frame, scores, scores * 0.5, ["paint", "tools"], samples=100)
    assert math.isnan(out["categories"]["paint"]["diff"]) and math.isfinite(out["diff"])
    none = category_mean_bootstrap(frame, scores, scores, ["paint"], samples=100)
    assert none["verdict"] == "undefined" and math.isnan(none["hi"])


def test_weighted_auc_with_unit_weights_is_the_auc_and_weights_count_rows() -> None:
    from incremental.judge import metrics
    from incremental.judge.compare import weighted_auc

    rng = np.random.default_rng(4)
    labels, scores = (rng.random(300) < 0.3).astype(float), np.round(rng.random(300), 1)  # ties included
    assert math.isclose(weighted_auc(labels, scores, np.ones((1, 300)))[0], metrics.roc_auc(labels, scores))
    twice = np.r_[np.arange(300), np.arange(50)]  # rows 0..49 drawn twice
    weights = np.ones((1, 300))
    weights[0, :50] = 2
    assert math.isclose(weighted_auc(labels, scores, weights)[0], metrics.roc_auc(labels[twice], scores[twice]))


def test_session_weights_are_draw_counts_and_products_multiply_them() -> None:
    from incremental.judge.compare import replicate_weights

    frame, _ = holdout(sessions=20)
    frame["product_id"] = [f"p{i % 7}" for i in range(len(frame))]
    alone = replicate_weights(frame, 50, seed=1, by_product=False)
    assert alone.shape == (50, 200)
    per_session = alone.reshape(50, 20, 10)
    assert (per_session == per_session[:, :, :1]).all() and (per_session[:, :, 0].sum(axis=1) == 20).all()
    both = replicate_weights(frame, 50, seed=1, by_product=True)
    assert not np.array_equal(alone, both) and both.mean() > 0


def test_a_difference_by_product_widens_the_two_way_interval() -> None:
    """Candidate and champion differ product by product (what an update does): resampling
    products as well as sessions must see that spread; sessions alone treat it as fixed."""
    rng = np.random.default_rng(8)
    frame, truth = holdout(sessions=200, seed=3)
    frame["product_id"] = rng.integers(0, 30, len(frame)).astype(str)
    base = np.clip(0.3 * truth + rng.random(len(truth)), 0, None)
    factor = np.exp(rng.normal(0, 0.5, 30))[frame["product_id"].astype(int)]
    sessions = paired_bootstrap(frame, base * factor, base, samples=400, seed=2, by_product=False)
    both = paired_bootstrap(frame, base * factor, base, samples=400, seed=2, by_product=True)
    assert both["units"] == "sessions x products" and sessions["units"] == "sessions"
    for metric in ("ndcg@10", "auc"):
        assert both[metric]["diff"] == sessions[metric]["diff"]
        assert both[metric]["hi"] - both[metric]["lo"] > 1.2 * (sessions[metric]["hi"] - sessions[metric]["lo"])
