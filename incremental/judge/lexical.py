"""A BM25 scorer of (query, title) pairs: the floor any learned ranker must beat.

No clicks and no training: the only thing fitted is the inverse document frequency of each word,
on a corpus of titles (for a fair floor, the titles of the hours a learned model could have been
trained on). Query and title go through the same tokenisation, :func:`tokenize`: lowercase, then
the runs of word characters (``\\w+``), so ``"Cordless Drill-Driver 20V"`` is
``["cordless", "drill", "driver", "20v"]``.

    scorer = LexicalScorer.fit(titles)             # each title one document
    scores = scorer.score(queries, titles)          # one float64 per (query, title) pair, >= 0

BM25 (Robertson & Zaragoza 2009, with Lucene's non-negative IDF), each distinct query word
counted once::

    score(q, d) = sum_{t in q} idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

N is the number of fitted titles, df(t) how many of them hold t, avgdl their mean length in
words. A word never seen in the fitted corpus has df = 0 (the largest IDF: rare words matter
most). A pair with no shared word scores 0. Scores are deterministic (no randomness, no
dependence on the order of the pairs) and vectorised: repeated strings are tokenised once and
the term matching is a sort and a search over integer keys, so 100k pairs take well under a
second.

The module imports nothing from the rest of the package: the benchmark's `lexical` arm and the
gate's floor for a first model can both use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["B", "K1", "LexicalScorer", "tokenize"]

K1 = 1.2
B = 0.75
_WORD = re.compile(r"\w+")


def tokenize(text: object) -> list[str]:
    """The lowercase words of `text` (runs of ``\\w``); a missing value (None, NaN) has none."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return []
    return _WORD.findall(str(text).lower())


@dataclass(frozen=True)
class LexicalScorer:
    """A fitted BM25 scorer; build it with :meth:`fit`."""

    documents: int  # N: titles fitted on
    average_length: float  # avgdl, in words
    document_frequency: dict[str, int] = field(repr=False)
    k1: float = K1
    b: float = B

    @classmethod
    def fit(cls, titles: Iterable[object], *, k1: float = K1, b: float = B) -> LexicalScorer:
        """Document frequencies of the words of `titles` (each title one document, duplicates
        included: pass distinct titles for a catalogue's IDF). An empty corpus is allowed: every
        word is then unseen and equally rare, and the scorer counts (saturated) matches."""
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        df: dict[str, int] = {}
        n = words = 0
        for title in titles:
            tokens = tokenize(title)
            n += 1
            words += len(tokens)
            for token in set(tokens):
                df[token] = df.get(token, 0) + 1
        return cls(documents=n, average_length=words / n if n else 0.0, document_frequency=df, k1=k1, b=b)

    def idf(self, word: str) -> float:
        df = self.document_frequency.get(word, 0)
        return math.log1p((self.documents - df + 0.5) / (df + 0.5))

    def score(self, queries: Sequence[object] | pd.Series | np.ndarray,
              titles: Sequence[object] | pd.Series | np.ndarray) -> np.ndarray:
        """BM25 of each (queries[i], titles[i]) pair: a float64 array, >= 0, one per pair."""
        q_codes, q_unique = pd.factorize(pd.Series(list(queries), dtype=object), use_na_sentinel=False)
        t_codes, t_unique = pd.factorize(pd.Series(list(titles), dtype=object), use_na_sentinel=False)
        n = len(q_codes)
        if len(t_codes) != n:
            raise ValueError(f"{n} queries for {len(t_codes)} titles")
        if n == 0:
            return np.zeros(0)
        vocabulary: dict[str, int] = {}

        def encode(texts: Iterable[object], distinct: bool) -> list[np.ndarray]:
            out = []
            for text in texts:
                tokens = tokenize(text)
                if distinct:
                    tokens = list(dict.fromkeys(tokens))
                out.append(np.array([vocabulary.setdefault(t, len(vocabulary)) for t in tokens], dtype=np.int64))
            return out

        q_terms = encode(q_unique, distinct=True)
        t_terms = encode(t_unique, distinct=False)
        v = max(len(vocabulary), 1)
        words = sorted(vocabulary, key=vocabulary.__getitem__)
        idf = np.array([self.idf(w) for w in words] or [0.0])

        # per distinct title: (title, term) -> tf, as sorted integer keys; and its length
        t_len = np.array([len(t) for t in t_terms], dtype=np.float64)
        t_owner = np.repeat(np.arange(len(t_terms)), t_len.astype(np.int64))
        t_flat = np.concatenate(t_terms) if t_terms else np.zeros(0, np.int64)
        keys, tf = np.unique(t_owner * v + t_flat, return_counts=True)

        # per pair: every distinct query term, looked up in its title
        q_len = np.array([len(t) for t in q_terms], dtype=np.int64)
        pair_q_len = q_len[q_codes]
        pair = np.repeat(np.arange(n), pair_q_len)
        q_start = np.concatenate([[0], np.cumsum(q_len)[:-1]])
        q_flat = np.concatenate(q_terms) if q_terms else np.zeros(0, np.int64)
        offset = np.arange(len(pair)) - np.repeat(np.cumsum(pair_q_len) - pair_q_len, pair_q_len)
        term = q_flat[q_start[q_codes][pair] + offset] if len(pair) else np.zeros(0, np.int64)
        title = t_codes[pair]
        wanted = title * v + term
        at = np.searchsorted(keys, wanted)
        hit = at < len(keys)
        hit[hit] = keys[at[hit]] == wanted[hit]
        freq = np.where(hit, tf[np.minimum(at, len(keys) - 1)] if len(keys) else 0, 0).astype(np.float64)

        avgdl = self.average_length if self.average_length > 0 else max(float(t_len.mean()), 1.0)
        norm = self.k1 * (1.0 - self.b + self.b * t_len[title] / avgdl)
        with np.errstate(invalid="ignore", divide="ignore"):
            part = np.where(freq > 0, idf[term] * freq * (self.k1 + 1.0) / (freq + norm), 0.0)
        return np.bincount(pair, weights=part, minlength=n)
