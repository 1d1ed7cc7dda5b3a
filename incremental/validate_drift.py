"""Hour statistics and hour-over-hour drift: volume, click-through rate and category mix.

Drift compares with the latest `drift_window_hours` validated hours found within
`drift_lookback_hours` (a gap does not switch it off); with no history at all it is skipped and the
summary says so, while the absolute click-through bounds (in the GX suite) always apply.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from incremental import lake as lk
from incremental.config import ValidationSettings
from incremental.lakefs import LakePath
from incremental.validate_report import CRITICAL, DRIFT_RULES, WARNING, Check


def statistics_of(frame: pd.DataFrame, typed_ok: set[str] | None = None) -> dict[str, Any]:
    """rows, clicks, ctr, category mix (shares) of a frame; what the schema allows."""
    typed_ok = set(frame.columns) if typed_ok is None else typed_ok
    rows = int(len(frame))
    stats: dict[str, Any] = {"rows": rows, "clicks": None, "ctr": None, "category_mix": None}
    if "clicked" in typed_ok and "clicked" in frame.columns:
        clicked = pd.to_numeric(frame["clicked"], errors="coerce")
        clicks = int(clicked.clip(0, 1).fillna(0).sum())
        stats["clicks"] = clicks
        stats["ctr"] = clicks / rows if rows else None
    if "category" in typed_ok and "category" in frame.columns and rows:
        shares = frame["category"].astype(object).fillna("<null>").value_counts(normalize=True)
        stats["category_mix"] = {str(k): round(float(v), 6) for k, v in sorted(shares.items())}
    return stats


def _tvd(p: dict[str, float], q: dict[str, float]) -> float:
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys)


def _grade(value: float, warning: float, critical: float) -> str | None:
    if value > critical:
        return CRITICAL
    if value > warning:
        return WARNING
    return None


def drift_checks(stats: dict[str, Any], history: Sequence[dict[str, Any]], settings: ValidationSettings) -> list[Check]:
    """Volume, CTR and category mix against earlier validated hours' statistics."""
    history = [h for h in history if h and h.get("rows")]
    if len(history) < settings.drift_min_history:
        note = f"skipped: {len(history)} earlier validated hour(s), need {settings.drift_min_history}"
        return [Check(rule, None, WARNING, True, None, f"{rule}: {note}") for rule in DRIFT_RULES]
    return [_volume_check(stats, history, settings), _ctr_check(stats, history, settings),
            _mix_check(stats, history, settings)]


def _graded(rule: str, column: str | None, grade: str | None, message: str) -> Check:
    """A drift check: passes when ungraded, else fails with its grade (warning or critical)."""
    return Check(rule, column, grade or WARNING, grade is None, None, message)


def _volume_check(stats: dict[str, Any], history: list[dict[str, Any]], settings: ValidationSettings) -> Check:
    """Volume: ratio to the reference median, symmetric (x or 1/x)."""
    ref_rows = statistics.median(h["rows"] for h in history)
    rows = stats["rows"]
    ratio = (rows / ref_rows) if rows else math.inf
    factor = max(ratio, 1 / ratio) if ratio not in (0, math.inf) else math.inf
    grade = _grade(factor, settings.volume_ratio_warning, settings.volume_ratio_critical)
    limit = settings.volume_ratio_critical if grade == CRITICAL else settings.volume_ratio_warning
    return _graded("drift_row_count", None, grade,
                   f"drift_row_count: {rows} rows vs reference median {ref_rows:g} over {len(history)} hours"
                   f" (x{ratio:.2f}; {grade + ' limit' if grade else 'warning limit'} x{limit:g} either way)")


def _ctr_check(stats: dict[str, Any], history: list[dict[str, Any]], settings: ValidationSettings) -> Check:
    """Click-through rate: absolute change vs the reference median."""
    ctrs = [h["ctr"] for h in history if h.get("ctr") is not None]
    if stats.get("ctr") is None or not ctrs:
        return Check("drift_ctr", "clicked", WARNING, True, None, "drift_ctr: skipped: no click-through rate to compare")
    ref_ctr = statistics.median(ctrs)
    change = abs(stats["ctr"] - ref_ctr)
    grade = _grade(change, settings.ctr_change_warning, settings.ctr_change_critical)
    limit = settings.ctr_change_critical if grade == CRITICAL else settings.ctr_change_warning
    return _graded("drift_ctr", "clicked", grade,
                   f"drift_ctr(clicked): ctr {stats['ctr']:.4f} vs reference median {ref_ctr:.4f}"
                   f" (change {change:.4f}; {grade or 'warning'} limit {limit:g})")


def _mix_check(stats: dict[str, Any], history: list[dict[str, Any]], settings: ValidationSettings) -> Check:
    """Category mix: total variation distance to the pooled reference mix."""
    mixes = [(h["rows"], h["category_mix"]) for h in history if h.get("category_mix")]
    if not stats.get("category_mix") or not mixes:
        return Check("drift_category_mix", "category", WARNING, True, None,
                     "drift_category_mix: skipped: no category mix to compare")
    total = sum(n for n, _ in mixes)
    ref: dict[str, float] = {}
    for n, mix in mixes:
        for k, v in mix.items():
            ref[k] = ref.get(k, 0.0) + v * n / total
    tvd = _tvd(stats["category_mix"], ref)
    grade = _grade(tvd, settings.category_shift_warning, settings.category_shift_critical)
    limit = settings.category_shift_critical if grade == CRITICAL else settings.category_shift_warning
    return _graded("drift_category_mix", "category", grade,
                   f"drift_category_mix(category): total variation distance {tvd:.3f} from the reference mix"
                   f" ({grade or 'warning'} limit {limit:g})")


def validated_history(lake: LakePath, start: datetime, settings: ValidationSettings) -> list[dict[str, Any]]:
    """Statistics of the latest `drift_window_hours` validated hours within `drift_lookback_hours`, oldest first."""
    out = []
    for k in range(1, settings.drift_lookback_hours + 1):
        if len(out) >= settings.drift_window_hours:
            break
        part = lk.partition(lake, start - lk.HOUR * k)
        if part.status != "validated":
            continue
        try:
            record = lk.read_json(part.path / lk.VALIDATION_FILE)  # type: ignore[operator]
        except (OSError, ValueError):
            continue
        if record.get("statistics"):
            out.append(record["statistics"])
    return out[::-1]
