"""Validate one hour's rows, the pure core: every check on a frame, put together.

`validate_frame(frame, start, end, settings, history)` -> (checks, statistics); `check_frame`
returns all it found (which rows failed which rules, the GX run) for the lake side
(`incremental.validation.validate`), which decides from it what is validated and what goes to
quarantine.

Every check has a rule name (the GX expectation type where GX evaluates it), a column, a severity
("critical" quarantines the hour, "rows" quarantines the failing rows, "warning" is recorded
only), and how many rows failed.

The parts: `report.py` (severities, `Check`, `ValidationReport`), `rows.py` (pandas checks and row
masks), `gx_suite.py` (the GX suite, run through a Checkpoint whose action builds the data docs),
`hour_drift.py` (hour statistics; drift as GX expectations, a warning and a critical one per rule,
read back as one check with the worst grade). This module runs them together.

| rule | level | where |
| --- | --- | --- |
| expect_table_columns_to_match_set | table | GX |
| expect_column_values_to_be_of_type (per column) | table | Arrow schema (partition) or pandas dtypes (frame) |
| expect_table_row_count_to_be_between (min_rows) | table | GX |
| expect_column_values_to_be_unique (event_id; also across the hour's parts) | table | GX (+ `rows.py`) |
| expect_compound_columns_to_be_unique (event_ts, session_id, product_id, position): replayed rows | table | GX (+ `rows.py`) |
| expect_column_mean_to_be_between (clicked in [min_ctr, max_ctr]): zero-click, all-clicked hours | table | GX |
| expect_session_share_to_be_at_most (session_id): one session flooding the hour | table | `rows.py` |
| drift_row_count: expect_table_row_count_to_be_between (reference median / x, * x) | table (warning or critical) | GX, bounds from history (`hour_drift.py`) |
| drift_ctr: expect_column_mean_to_be_between (clicked, reference median -/+ limit) | table (warning or critical) | GX, bounds from history |
| drift_category_mix: expect_column_kl_divergence_to_be_less_than (category, reference mix) | table (warning or critical) | GX, bounds from history |
| expect_bad_row_fraction_to_be_at_most (max_bad_row_fraction) | table | here |
| expect_column_values_to_not_be_null (9 columns) | row | GX, `mostly` |
| expect_column_values_to_be_in_set (clicked in {0, 1}) | row | GX, `mostly` |
| expect_column_values_to_be_between (position; event_ts; ingested_at) | row | GX, `mostly` |
| expect_column_pair_values_a_to_be_greater_than_b (ingested_at >= event_ts) | row | GX, `mostly` |
| expect_column_value_lengths_to_be_between (query [1, max]; title [0, max]) | row | GX, `mostly` |
| expect_column_values_to_not_match_regex (query: whitespace only) | row | GX, `mostly` |
| expect_column_values_to_be_valid_text (query, title; any non-Arrow text column) | row | `rows.py` |

Row-level rules use GX's `mostly` = 1 - `max_bad_row_fraction`; which rows failed is computed in
`rows.py` with the same definitions (vectorised), and the counts are cross-checked against GX's: a
disagreement quarantines the hour (`validation_consistency`), never a silent drop. Table-level
statistics checks (row count, click-through bounds, session share, drift) apply to a first
extraction, and to a delta only when it has at least `min_rows` rows. Columns that are missing or
of the wrong type get their schema failure and no value checks (GX would raise on them); the hour
is quarantined cleanly with a message naming the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from incremental.config import ValidationSettings
from incremental.validation.gx_suite import GxRun, build_suite, for_gx, gx_check, run_gx
from incremental.validation.hour_drift import HourStats, drift_reference, is_drift, statistics_of
from incremental.validation.report import CRITICAL, ROWS, Check
from incremental.validation.rows import (
    cross_part_checks,
    row_masks,
    schema_checks_frame,
    session_share_check,
    text_checks,
    value_samples,
)


@dataclass
class Outcome:
    """All that validating a frame found: what `validate.validate_hour` records and acts on."""

    checks: list[Check]
    stats: HourStats
    gx: GxRun | None
    bad: np.ndarray  # per row: failed at least one row-level rule
    reasons: np.ndarray  # per row: the rules it failed, ";"-separated ("" when none)
    codes: dict[str, str]  # the category codes GX saw -> the names (`hour_drift.code_categories`)


def check_frame(
    frame: pd.DataFrame,
    start: datetime,
    end: datetime,
    settings: ValidationSettings,
    history: Sequence[HourStats],
    type_checks: list[Check] | None = None,
    docs_dir: Path | None = None,
    *,
    table_stats: bool = True,
    earlier: pd.DataFrame | None = None,
) -> Outcome:
    """Every check on `frame`, the hour [start, end): the checks in report order, the statistics,
    the GX run, and which rows failed which row-level rules. `type_checks`: the schema checks of
    the Arrow partition (default: of the pandas dtypes); `docs_dir`: where the checkpoint builds the
    data docs; `table_stats` False for a small delta part (no table statistics, no drift bounds);
    `earlier`: the hour's validated rows, for the checks across parts."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    n = len(frame)
    types = schema_checks_frame(frame) if type_checks is None else type_checks
    typed_ok = {c.column for c in types if c.success and c.column is not None and c.column in frame.columns}
    masks = row_masks(frame, start, end, settings, typed_ok)
    text, gx_frame = text_checks(frame, typed_ok, masks)
    gx_frame = for_gx(gx_frame, typed_ok)
    samples = value_samples(frame, masks)
    ref = drift_reference(history, settings, typed_ok, n, delta=not table_stats)
    gx_frame, codes = ref.coded(gx_frame)  # GX sees category codes, never names (see hour_drift)
    run = run_gx(gx_frame, lambda gx: build_suite(gx, start, end, settings, typed_ok, table_stats,
                                                  ref.expectations(gx, settings)), docs_dir)
    gx_checks = [gx_check(r, n, samples) for r in run.result.results if not is_drift(r)]
    extra = _consistency_checks(gx_checks, masks)
    if table_stats:
        extra.append(session_share_check(frame, typed_ok, settings))
    if earlier is not None and len(earlier):
        extra += cross_part_checks(frame, earlier, typed_ok)
    stats = statistics_of(frame, typed_ok)
    drift = ref.checks(run.result.results, settings, codes)
    bad, reasons = _bad_rows(masks, n)
    fraction = _fraction_check(int(bad.sum()), n + (len(earlier) if earlier is not None else 0), settings)
    checks = gx_checks[:1] + types + gx_checks[1:] + text + extra + [fraction] + drift
    if not fraction.success:  # too many bad rows: the row rules that failed quarantine the hour
        checks = [replace(c, severity=CRITICAL) if c.severity == ROWS and not c.success else c for c in checks]
    return Outcome(checks, stats, run, bad, reasons, codes)


def _consistency_checks(gx_checks: list[Check], masks: dict[tuple[str, str], np.ndarray]) -> list[Check]:
    """GX and the row masks must agree on every row-level rule."""
    out: list[Check] = []
    for c in gx_checks:
        key = (c.rule, c.column)
        if c.severity == ROWS and key in masks and c.unexpected is not None and c.unexpected != int(masks[key].sum()):
            out.append(Check("validation_consistency", c.column, CRITICAL, False, None,
                             f"validation_consistency: {c.name}: GX counts {c.unexpected} failing rows, the row "
                             f"mask {int(masks[key].sum())}: the hour is quarantined rather than guess"))
    return out


def _bad_rows(masks: dict[tuple[str, str], np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: whether it failed a row-level rule, and the rules it failed (";"-separated)."""
    bad = np.zeros(n, dtype=bool)
    reasons = np.full(n, "", dtype=object)
    for (rule, column), mask in masks.items():
        if mask.any():
            bad |= mask
            name = f"{rule}({column})"
            reasons[mask] = np.where(reasons[mask] == "", name, reasons[mask] + ";" + name)
    return bad, reasons


def _fraction_check(n_bad: int, of: int, settings: ValidationSettings) -> Check:
    """Too many bad rows to quarantine row by row. `of`: a delta is judged with the hour's validated
    rows (a few late rows, one of them bad, are not "10% bad")."""
    limit = settings.max_bad_row_fraction
    over = n_bad > limit * of
    return Check(
        "expect_bad_row_fraction_to_be_at_most", None, CRITICAL, not over, n_bad,
        f"expect_bad_row_fraction_to_be_at_most: {n_bad} of {of} rows ({(n_bad / of if of else 0):.2%}) failed "
        f"row-level rules (limit {limit:.2%})" + (": too many to quarantine row by row, the hour is quarantined"
                                                 if over else ""),
    )


def validate_frame(frame: pd.DataFrame, start: datetime, end: datetime, settings: ValidationSettings,
                   history: Sequence[HourStats] = ()) -> tuple[list[Check], HourStats]:
    """Run every check on one hour's rows; returns (checks, statistics). `history`: earlier hours' statistics."""
    out = check_frame(frame, start, end, settings, history)
    return out.checks, out.stats
