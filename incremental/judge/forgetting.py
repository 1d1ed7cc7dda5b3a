"""Forgetting: the accuracy matrix of a run's models and the measures read from it.

Pure functions on numpy arrays and mappings; the metric in each entry comes from
`incremental.judge.metrics` (usually its AUC). The review report (`incremental.registry.review`)
charts them for a run.

The accuracy matrix
-------------------
``R[i, j]`` is the metric (usually AUC) of model i on the anchor rows from source hour j. Rows
are the successive models in the order they were trained (oldest first, the model being judged
last, row T); columns are anchor source hours (oldest first); unknown entries are ``nan``.

In continual learning (one task per model) the diagonal ``R[i, i]`` is "task i just after it
was learned". Here one model may have seen many hours at once (the bootstrap), hours come
from replay, and the anchor's hours need not coincide with update hours, so **the entry that
plays the diagonal for column j is R[d(j), j] where d(j) is the first model that had seen
hour j**: the first row whose ``trained_through`` (the last source hour the model was trained
on) is at or after hour j. For a plain square array (no ``trained_through``) d(j) = j, the
textbook diagonal.

Backward transfer (Lopez-Paz & Ranzato 2017, GEM)
    ``BWT = 1/(T-1) sum_{i<T} (R[T, i] - R[i, i])``. Adapted: the mean of
    ``R[T, j] - R[d(j), j]`` over the columns j learned *before* the last model
    (``d(j) < T``) where both entries are known. Negative BWT is forgetting; positive is
    backward transfer. When every column is known this is exactly the formula above.

Average forgetting (Chaudhry et al. 2018, RWalk)
    ``f_j = max_{l<T} R[l, j] - R[T, j]``, averaged over ``j < T``. Adapted: the max runs over
    the models that had already seen hour j and came before the last one,
    ``d(j) <= l < T`` (a model that never saw hour j cannot have forgotten it; in our setting
    hours resemble each other, so an earlier model can score well on a later hour without
    having learned it, and counting that as "knowledge lost" would be wrong). Averaged over
    the columns with ``d(j) < T`` and ``R[T, j]`` known. ``f_j`` may be negative (the last
    model is the best yet on hour j); it is not clipped.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "AccuracyMatrix",
    "accuracy_matrix",
    "average_forgetting",
    "backward_transfer",
    "forgetting_per_column",
    "forgetting_report",
]


@dataclass(frozen=True)
class AccuracyMatrix:
    """R with its labels: rows are models (oldest first), columns source hours (oldest first).

    ``diagonal_row[j]`` is d(j), the first row that had seen column j (-1: none has), the entry
    that plays the diagonal (see the module docstring).
    """

    values: np.ndarray
    rows: tuple[Hashable, ...]
    columns: tuple[Hashable, ...]
    diagonal_row: np.ndarray

    @property
    def last(self) -> int:
        return len(self.rows) - 1

    def eligible(self) -> np.ndarray:
        """Columns learned before the last model: ``0 <= d(j) < T``."""
        d = self.diagonal_row
        return (d >= 0) & (d < self.last)


def _first_row_at_or_after(trained_through: Sequence[Any], columns: Sequence[Any]) -> np.ndarray:
    out = np.full(len(columns), -1, dtype=np.int64)
    for j, col in enumerate(columns):
        for i, through in enumerate(trained_through):
            if through is not None and through >= col:
                out[j] = i
                break
    return out


def _through(trained_through: Mapping[Hashable, Any] | Sequence[Any] | None, rows: Sequence[Any]) -> list[Any]:
    """Per row, the last source hour the model had seen (default: the row keys themselves)."""
    if trained_through is None:
        through = list(rows)
    elif isinstance(trained_through, Mapping):
        through = [trained_through.get(r) for r in rows]
    else:
        through = list(trained_through)
    if len(through) != len(rows):
        raise ValueError(f"trained_through has {len(through)} entries for {len(rows)} models")
    return through


def accuracy_matrix(
    R: Mapping[Any, Mapping[Any, float]] | np.ndarray | Sequence[Sequence[float]],  # keys: sortable
    trained_through: Mapping[Hashable, Any] | Sequence[Any] | None = None,
) -> AccuracyMatrix:
    """Normalise R (a mapping ``model -> {source_hour: metric}`` or a 2-D array, nan unknown).

    Mapping rows are ordered by their keys (model index, or the hour a model was trained
    through) and columns by source hour. `trained_through` gives, per row (a mapping keyed like
    R or a sequence in row order), the last source hour that model had seen; by default the row
    keys themselves are used, which works when models are keyed by the hour they were trained
    through (or, for arrays, row i has seen columns 0..i: the textbook diagonal).
    """
    if isinstance(R, Mapping):
        rows = tuple(sorted(R))
        columns = tuple(sorted({col for row in R.values() for col in row}))
        values = np.array([[float(R[r].get(c, math.nan)) for c in columns] for r in rows], dtype=np.float64)
        values = values.reshape(len(rows), len(columns))
        through = _through(trained_through, rows)
        try:
            diagonal = _first_row_at_or_after(through, columns)
        except TypeError:
            raise ValueError(
                "cannot tell which model first saw each source hour: pass trained_through"
                " (per model, the last source hour it was trained on)"
            ) from None
    else:
        values = np.asarray(R, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError("R must be two-dimensional (models x source hours)")
        rows = tuple(range(values.shape[0]))
        columns = tuple(range(values.shape[1]))
        diagonal = _first_row_at_or_after(_through(trained_through, rows), columns)
    return AccuracyMatrix(values=values, rows=rows, columns=columns, diagonal_row=diagonal)


def _as_matrix(R: Any, trained_through: Any) -> AccuracyMatrix:
    return R if isinstance(R, AccuracyMatrix) else accuracy_matrix(R, trained_through)


def backward_transfer(R: Any, trained_through: Any = None) -> float:
    """BWT (Lopez-Paz & Ranzato 2017): mean of ``R[T, j] - R[d(j), j]`` over columns learned before T.

    Negative means the last model forgot; nan when no column qualifies (e.g. a single model).
    """
    m = _as_matrix(R, trained_through)
    diffs = [
        m.values[m.last, j] - m.values[m.diagonal_row[j], j]
        for j in np.flatnonzero(m.eligible())
    ]
    diffs = [x for x in diffs if np.isfinite(x)]
    return float(np.mean(diffs)) if diffs else math.nan


def forgetting_per_column(R: Any, trained_through: Any = None) -> dict[Hashable, float]:
    """Chaudhry et al. (2018) ``f_j = max_{d(j) <= l < T} R[l, j] - R[T, j]`` per eligible column."""
    m = _as_matrix(R, trained_through)
    out: dict[Hashable, float] = {}
    for j in np.flatnonzero(m.eligible()):
        final = m.values[m.last, j]
        earlier = m.values[m.diagonal_row[j]: m.last, j]
        earlier = earlier[np.isfinite(earlier)]
        if np.isfinite(final) and earlier.size:
            out[m.columns[j]] = float(earlier.max() - final)
    return out


def average_forgetting(R: Any, trained_through: Any = None) -> float:
    """Average forgetting (Chaudhry et al. 2018): the mean of `forgetting_per_column`; nan if empty."""
    per_column = forgetting_per_column(R, trained_through)
    return float(np.mean(list(per_column.values()))) if per_column else math.nan


def forgetting_report(R: Any, trained_through: Any = None) -> dict[str, Any]:
    """BWT, average forgetting, the worst column and per-column forgetting, for a run's report."""
    m = _as_matrix(R, trained_through)
    per_column = forgetting_per_column(m)
    worst = max(per_column, key=lambda c: per_column[c]) if per_column else None
    return {
        "backward_transfer": backward_transfer(m),
        "average_forgetting": average_forgetting(m),
        "max_forgetting": per_column[worst] if worst is not None else math.nan,
        "max_forgetting_column": worst,
        "forgetting": per_column,
        "models": len(m.rows),
        "columns": len(m.columns),
    }
