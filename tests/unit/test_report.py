"""The review's R-matrix: which model first learned each anchor source hour."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from incremental.hours import HOUR, Hour, iso_hour
from incremental.registry import review as report

H9, H10 = Hour(2026, 1, 1, 9, tzinfo=UTC), Hour(2026, 1, 1, 10, tzinfo=UTC)


def evaluation(trained_on: datetime, auc: dict[datetime, float]) -> dict:
    """An hourly candidate's evaluation as `evaluate` writes it: the interval end is exclusive."""
    return {"interval_start": iso_hour(trained_on), "interval_end": iso_hour(trained_on + HOUR),
            "candidate": {"anchor_by_hour": {iso_hour(h): v for h, v in auc.items()}}}


def test_trained_through_is_the_last_hour_trained_on() -> None:
    assert report.trained_through(evaluation(H9, {})) == H9
    # a bootstrap over [09:00, 11:00) last trained on 10:00
    assert report.trained_through({"interval_end": "2026-01-01T11:00:00+00:00"}) == H10


def test_r_matrix_counts_an_hour_as_learned_by_the_model_trained_on_it() -> None:
    """v1 trained on 09:00, v2 on 10:00; the anchor holds both hours.

    Only 09:00 was learned before the last model, so backward transfer is v2 - v1 on 09:00 alone.
    Taking the exclusive interval end as the last hour trained on would credit v1 with 10:00 too,
    and BWT would average in 10:00 ((0.70 - 0.80) + (0.90 - 0.60)) / 2 = 0.10.
    """
    r = report.rows_of({"v1": evaluation(H9, {H9: 0.80, H10: 0.60}),
                        "v2": evaluation(H10, {H9: 0.70, H10: 0.90})})
    labels, hours, values, summary = report.r_matrix(r)
    assert labels == ["v1", "v2"] and hours == [H9, H10]
    assert values.tolist() == [[0.80, 0.60], [0.70, 0.90]]
    assert summary["backward_transfer"] == pytest.approx(-0.10)
    assert summary["average_forgetting"] == pytest.approx(0.10)
    assert summary["forgetting"] == {H9: pytest.approx(0.10)}


def test_r_matrix_compares_hours_as_datetimes_whatever_their_text() -> None:
    """Rows written with other ISO spellings of the same hours line up in the same columns."""
    r = {"rows": {"v1": {"2026-01-01T09:00:00+00:00": 0.8}, "v2": {"2026-01-01T09:00Z": 0.75}},
         "trained_through": {"v1": H9, "v2": H10}}
    _, hours, values, summary = report.r_matrix(r)
    assert hours == [H9] and values.tolist() == [[0.8], [0.75]]
    assert summary["backward_transfer"] == pytest.approx(-0.05)


def test_one_model_has_no_forgetting() -> None:
    labels, _, _, summary = report.r_matrix(report.rows_of({"candidate": evaluation(H9, {H9: 0.8})}))
    assert labels == ["candidate"] and summary == {}
