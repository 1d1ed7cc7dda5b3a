"""The BM25 floor (`incremental.judge.lexical`): same words for query and title, exact matches first,
deterministic, equal to the textbook formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from incremental.judge.lexical import K1, B, LexicalScorer, tokenize

CATALOGUE = ["Voltrex Brushless Cordless Drill", "Ampwerk Cordless Compact Drill", "Greenfield Garden Hose 50ft",
             "Ampwerk Orbital Sander", "Hexforge Corded Drill", "Lumina LED Ceiling Light"]


def test_query_and_title_are_the_same_lowercase_words() -> None:
    assert tokenize("Cordless Drill-Driver 20V") == ["cordless", "drill", "driver", "20v"]
    assert tokenize(None) == [] and tokenize(float("nan")) == [] and tokenize("") == []
    scorer = LexicalScorer.fit(CATALOGUE)
    assert scorer.score(["CORDLESS drill"], ["cordless DRILL"])[0] == pytest.approx(
        scorer.score(["cordless drill"], ["Cordless Drill"])[0])


def test_an_exact_title_match_ranks_above_an_unrelated_title() -> None:
    scorer = LexicalScorer.fit(CATALOGUE)
    query = "voltrex brushless cordless drill"
    exact, partial, unrelated = scorer.score([query] * 3, [CATALOGUE[0], CATALOGUE[4], CATALOGUE[2]])
    assert exact > partial > unrelated == 0.0


def test_scores_are_deterministic_and_do_not_depend_on_the_order_of_the_pairs() -> None:
    rng = np.random.default_rng(0)
    queries = rng.choice(["cordless drill", "garden hose", "ceiling light", "sander", "drill"], 500)
    titles = rng.choice(CATALOGUE, 500)
    scorer = LexicalScorer.fit(CATALOGUE)
    first = scorer.score(queries, titles)
    assert np.array_equal(first, scorer.score(list(queries), list(titles)))
    assert np.array_equal(first, LexicalScorer.fit(reversed(CATALOGUE)).score(queries, titles))
    order = rng.permutation(500)
    assert np.array_equal(first[order], scorer.score(queries[order], titles[order]))
    assert first.dtype == np.float64 and first.shape == (500,) and (first >= 0).all()


def test_it_is_the_bm25_formula() -> None:
    corpus = ["red drill", "blue drill drill", "red hose"]
    scorer = LexicalScorer.fit(corpus)
    assert (scorer.documents, scorer.average_length) == (3, 7 / 3)
    idf = {w: math.log1p((3 - df + 0.5) / (df + 0.5)) for w, df in (("red", 2), ("drill", 2), ("unseen", 0))}
    # "drill drill red": each distinct query word once; "drill" twice in the title
    tf_part = lambda tf, length: tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / (7 / 3)))  # noqa: E731
    got = scorer.score(["drill drill red", "unseen"], ["blue drill drill", "unseen hose unseen"])
    assert got[0] == pytest.approx(idf["drill"] * tf_part(2, 3))
    assert got[1] == pytest.approx(idf["unseen"] * tf_part(2, 3))
    both = idf["drill"] * tf_part(1, 3) + idf["unseen"] * tf_part(1, 3)  # the words' parts add up
    assert scorer.score(["drill unseen"], ["drill unseen blue"])[0] == pytest.approx(both)
    assert idf["unseen"] > idf["red"]  # a word the corpus never had is the rarest


def test_edge_cases() -> None:
    scorer = LexicalScorer.fit([])
    assert scorer.documents == 0 and scorer.score(["a b"], ["a a c"])[0] > 0
    assert scorer.score([], []).shape == (0,)
    assert LexicalScorer.fit(CATALOGUE).score(["drill", None], [None, "drill"]).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="2 queries for 1 titles"):
        scorer.score(["a", "b"], ["a"])
    with pytest.raises(ValueError):
        LexicalScorer.fit(CATALOGUE, b=2.0)
