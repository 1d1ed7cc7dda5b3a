"""The gate-rules benchmark's two judgments: a truth difference with its interval, and which rule
decided a rejection alone."""

import numpy as np
import pandas as pd

from benchmarks.gate_rules_bench import rule_table, truth_diff, verdict


def _sessions(n: int, per: int = 5) -> pd.DataFrame:
    return pd.DataFrame({"session_id": np.repeat([f"s{i}" for i in range(n)], per),
                         "query": np.repeat([f"q{i}" for i in range(n)], per)})


def test_a_candidate_that_ranks_by_the_truth_is_better_and_its_interval_says_so():
    rng = np.random.default_rng(0)
    frame = _sessions(200)
    gains = rng.choice([0.02, 0.15, 0.7, 0.9], size=len(frame))
    perfect, noise = gains.copy(), rng.random(len(frame))
    better = truth_diff(frame, perfect, noise, gains, samples=300)
    assert better["lo"] > 0 and better["diff"] > 0.1 and better["groups"] == 200
    same = truth_diff(frame, noise, noise, gains, samples=300)
    assert same["diff"] == same["lo"] == same["hi"] == 0.0
    assert verdict(better) == "better" and verdict(same) == "level"
    worse = truth_diff(frame, noise, perfect, gains, samples=300)
    assert verdict(better, worse) == "worse"  # worse anywhere (e.g. on what still holds) is worse


def test_rows_the_truth_does_not_know_are_left_out():
    frame = _sessions(40)
    gains = np.where(np.arange(len(frame)) % 2 == 0, np.nan, 1.0 + np.arange(len(frame)) % 3)
    scores = np.nan_to_num(gains, nan=-5.0)
    out = truth_diff(frame, scores, -scores, gains, samples=100)
    assert out["groups"] == 40 and out["lo"] > 0


def test_a_rule_is_decisive_only_where_it_failed_alone():
    decisions = [
        {"failed": ["anchor_auc_drop"], "truth": "worse"},
        {"failed": ["anchor_auc_drop", "hour_not_anomalous"], "truth": "better"},
        {"failed": ["hour_not_anomalous"], "truth": "better"},
        {"failed": ["holdout_auc"], "truth": "level"},
        {"failed": [], "truth": "better", "checked": ["holdout_ece", "anchor_auc_drop"]},
    ]
    rules = rule_table(decisions)
    assert rules["anchor_auc_drop"]["failed"] == 2 and rules["anchor_auc_drop"]["decisive"] == 1
    assert rules["anchor_auc_drop"]["reading"].startswith("earned its place")
    assert rules["hour_not_anomalous"]["reading"].startswith("cost quality")
    assert rules["holdout_auc"]["reading"].startswith("no evidence")
    assert rules["holdout_ece"]["reading"] == "never failed"
