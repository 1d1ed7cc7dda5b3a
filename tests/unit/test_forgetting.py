"""The forgetting measures (backward transfer, average forgetting) on accuracy matrices made by hand."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from incremental.judge import forgetting

NAN = math.nan
# rows: models 0..2 (model i trained on hour i); columns: hours 0..2; nan = never measured
R_3x3 = [
    [0.80, NAN, NAN],
    [0.82, 0.85, NAN],
    [0.60, 0.75, 0.90],
]


def test_bwt_and_forgetting_on_a_3x3_matrix_by_hand() -> None:
    # BWT = 1/(T-1) sum_{i<T} (R[T,i] - R[i,i]) = ((0.60 - 0.80) + (0.75 - 0.85)) / 2
    assert forgetting.backward_transfer(R_3x3) == pytest.approx(-0.15)
    # f_0 = max(0.80, 0.82) - 0.60 = 0.22; f_1 = 0.85 - 0.75 = 0.10
    assert forgetting.forgetting_per_column(R_3x3) == pytest.approx({0: 0.22, 1: 0.10})
    assert forgetting.average_forgetting(R_3x3) == pytest.approx(0.16)
    report = forgetting.forgetting_report(R_3x3)
    assert report["max_forgetting_column"] == 0 and report["max_forgetting"] == pytest.approx(0.22)


def test_mapping_keyed_by_hours_and_the_adapted_diagonal() -> None:
    h = [datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=i) for i in range(4)]
    # model keyed by the last hour it was trained on; the bootstrap saw hours 0 and 1 at once,
    # so it plays the diagonal for both; the anchor has no row for hour 2.
    R = {
        h[1]: {h[0]: 0.70, h[1]: 0.72},
        h[2]: {h[0]: 0.69, h[1]: 0.74},
        h[3]: {h[0]: 0.66, h[1]: 0.70, h[3]: 0.80},
    }
    m = forgetting.accuracy_matrix(R)
    assert list(m.diagonal_row) == [0, 0, 2]  # hour 3 is first seen by the last model itself
    assert forgetting.backward_transfer(R) == pytest.approx(((0.66 - 0.70) + (0.70 - 0.72)) / 2)
    assert forgetting.average_forgetting(R) == pytest.approx(((0.70 - 0.66) + (0.74 - 0.70)) / 2)
    # the same with integer model indices and an explicit trained_through
    by_index = {i: row for i, row in enumerate(R.values())}
    assert forgetting.backward_transfer(by_index, trained_through=[h[1], h[2], h[3]]) == pytest.approx(-0.03)
    with pytest.raises(ValueError, match="trained_through"):
        forgetting.backward_transfer(by_index)


def test_forgetting_needs_an_earlier_model() -> None:
    assert math.isnan(forgetting.backward_transfer([[0.8]]))
    assert math.isnan(forgetting.average_forgetting([[0.8]]))
