"""Hour statistics and hour-over-hour drift (volume, click-through rate, category mix), as GX expectations.

The reference is the latest `drift_window_hours` validated hours found within
`drift_lookback_hours` (a gap does not switch it off); with fewer than `drift_min_history` of them
drift is skipped and the summary says so, while the absolute click-through bounds (in the GX suite)
always apply.

Each rule is two expectations in the hour's GX suite, their bounds computed from the reference:
one at the warning limit with GX severity "warning", one at the critical limit with severity
"critical"; `meta.rule` names the rule. Their results come back as one `Check` per rule, graded by
the worst bound that failed (none: it passes), with the observed value, the reference and the limit.

| rule | GX expectation | passes when |
| --- | --- | --- |
| drift_row_count | expect_table_row_count_to_be_between | rows in [median / x, median * x], x = `volume_ratio_warning` / `_critical` |
| drift_ctr | expect_column_mean_to_be_between (clicked) | mean in median CTR -/+ `ctr_change_warning` / `_critical` |
| drift_category_mix | expect_column_kl_divergence_to_be_less_than (category) | KL(hour ‖ reference mix) <= `category_kl_warning` / `_critical` |

The category reference is a categorical `partition_object`: the pooled mix of the reference hours
(each weighted by its rows; a null counts as the category "<null>", as in `statistics_of`). A
category the reference never saw would make the divergence infinite. GX refuses
`internal_weight_holdout` for categorical partitions; its `tail_weight_holdout` is the documented
way: when the hour has unseen categories, they share `UNSEEN_CATEGORY_WEIGHT` (1%) of the expected
mass and the reference keeps the rest (an hour with only known categories is compared with the
reference as it is). A new category holding 1% of the hour then adds about nothing, one holding all
of it gives ln(100) = 4.6 (critical). A floor added to every reference category instead would need
the hour's own categories when the suite is written, and would shift every hour's figure.

GX sees **codes, not category names** (`category_code`): the KL result's chart is embedded in the
data docs as raw JSON inside a `<script>`, so a category `</script><script>...` would run there.
The names are in the checks' messages and `gx_result.json` (`category_codes`).
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import pandas as pd

from incremental.config import ValidationSettings
from incremental.validation.report import CRITICAL, DRIFT_RULES, WARNING, Check

UNSEEN_CATEGORY_WEIGHT = 0.01  # GX tail_weight_holdout: expected mass shared by categories the reference never saw
NULL_CATEGORY = "<null>"
_COLUMN = {"drift_row_count": None, "drift_ctr": "clicked", "drift_category_mix": "category"}


class HourStats(TypedDict):
    """An hour's statistics, kept in its validation record: the reference of later hours' drift checks."""

    rows: int
    clicks: int | None  # None: the click column is not typed as the schema says
    ctr: float | None
    category_mix: dict[str, float] | None  # category -> share of the rows


def statistics_of(frame: pd.DataFrame, typed_ok: set[str] | None = None) -> HourStats:
    """rows, clicks, ctr, category mix (shares) of a frame; what the schema allows."""
    typed_ok = set(frame.columns) if typed_ok is None else typed_ok
    rows = int(len(frame))
    stats: HourStats = {"rows": rows, "clicks": None, "ctr": None, "category_mix": None}
    if "clicked" in typed_ok and "clicked" in frame.columns:
        clicked = pd.to_numeric(frame["clicked"], errors="coerce")
        clicks = int(clicked.clip(0, 1).fillna(0).sum())
        stats["clicks"] = clicks
        stats["ctr"] = clicks / rows if rows else None
    if "category" in typed_ok and "category" in frame.columns and rows:
        shares = frame["category"].astype(object).fillna(NULL_CATEGORY).value_counts(normalize=True)
        stats["category_mix"] = {str(k): round(float(v), 6) for k, v in sorted(shares.items())}
    return stats


# ---------------------------------------------------------------------------------------------
# the reference, and the expectations built from it


@dataclass(frozen=True)
class DriftReference:
    """What the earlier validated hours say, and which rules cannot be evaluated (rule -> why)."""

    hours: int
    rows: float | None = None  # median rows per hour
    ctr: float | None = None  # median click-through rate
    mix: dict[str, float] | None = None  # pooled category mix (shares sum to 1)
    skipped: dict[str, str] = field(default_factory=dict)
    delta: bool = False  # a small delta part: no table statistics at all

    def coded(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
        return code_categories(frame, self)

    def expectations(self, gx: Any, settings: ValidationSettings) -> list[Any]:
        return drift_expectations(gx, self, settings)

    def checks(self, results: Sequence[Any], settings: ValidationSettings, names: dict[str, str]) -> list[Check]:
        return drift_checks(results, self, settings, names)


def drift_reference(history: Sequence[HourStats], settings: ValidationSettings, typed_ok: set[str],
                    rows: int, *, delta: bool = False) -> DriftReference:
    """The reference of a part of `rows` rows; `history`: earlier validated hours' statistics. A `delta`
    part too small for table statistics (fewer than `min_rows`) gets no drift checks."""
    history = [h for h in history if h and h.get("rows")]
    if delta:
        note = f"skipped: a delta of {rows} rows (fewer than min_rows {settings.min_rows}) has no hour statistics"
        return DriftReference(len(history), skipped={rule: note for rule in DRIFT_RULES}, delta=True)
    if len(history) < settings.drift_min_history:
        note = f"skipped: {len(history)} earlier validated hour(s), need {settings.drift_min_history}"
        return DriftReference(len(history), skipped={rule: note for rule in DRIFT_RULES})
    skipped: dict[str, str] = {}
    ctrs = [c for h in history if (c := h.get("ctr")) is not None]
    ctr = statistics.median(ctrs) if ctrs else None
    if ctr is None or "clicked" not in typed_ok or not rows:
        skipped["drift_ctr"] = "skipped: no click-through rate to compare"
    mixes = [(h["rows"], m) for h in history if (m := h.get("category_mix"))]
    mix = _pooled(mixes) if mixes else None
    if mix is None or "category" not in typed_ok or not rows:
        skipped["drift_category_mix"] = "skipped: no category mix to compare"
    return DriftReference(len(history), statistics.median(h["rows"] for h in history), ctr, mix, skipped)


def _pooled(mixes: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    total = sum(n for n, _ in mixes)
    pooled: dict[str, float] = {}
    for n, mix in mixes:
        for k, v in mix.items():
            pooled[k] = pooled.get(k, 0.0) + v * n / total
    norm = sum(pooled.values())  # the stored shares are rounded: GX wants weights that sum to 1
    return {k: v / norm for k, v in sorted(pooled.items()) if v > 0}


def category_code(name: str) -> str:
    """The opaque, stable name GX sees for a category (no data values in the data docs)."""
    return "category-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def code_categories(frame: pd.DataFrame, ref: DriftReference) -> tuple[pd.DataFrame, dict[str, str]]:
    """The frame GX sees (category names replaced by codes, null by the code of "<null>"), and code -> name."""
    if "drift_category_mix" in ref.skipped or ref.mix is None or "category" not in frame.columns:
        return frame, {}
    values = pd.Categorical(frame["category"].astype(object).where(frame["category"].notna(), NULL_CATEGORY))
    names = {str(v) for v in values.categories} | set(ref.mix)
    codes = {name: category_code(name) for name in names}
    out = frame.copy(deep=False)
    out["category"] = np.asarray(values.rename_categories([codes[str(v)] for v in values.categories]), dtype=object)
    return out, {code: name for name, code in codes.items()}


def drift_expectations(gx: Any, ref: DriftReference, settings: ValidationSettings) -> list[Any]:
    """Two expectations (warning, critical) per rule that can be evaluated (the category mix: a warning
    only), severity and rule in each."""
    E = gx.expectations
    out: list[tuple[str, str, Any]] = []
    if "drift_row_count" not in ref.skipped and ref.rows is not None:
        for grade, x in ((WARNING, settings.volume_ratio_warning), (CRITICAL, settings.volume_ratio_critical)):
            lo, hi = math.ceil(ref.rows / x), math.floor(ref.rows * x)  # rows are whole: the same bounds
            out.append(("drift_row_count", grade, E.ExpectTableRowCountToBeBetween(min_value=lo, max_value=hi)))
    if "drift_ctr" not in ref.skipped and ref.ctr is not None:
        for grade, d in ((WARNING, settings.ctr_change_warning), (CRITICAL, settings.ctr_change_critical)):
            out.append(("drift_ctr", grade, E.ExpectColumnMeanToBeBetween(
                column="clicked", min_value=round(ref.ctr - d, 6), max_value=round(ref.ctr + d, 6))))
    if "drift_category_mix" not in ref.skipped and ref.mix:
        partition = {"values": [category_code(k) for k in ref.mix], "weights": list(ref.mix.values())}
        # a warning only: a mix shift is drift for the drift response to judge, not broken logging
        out.append(("drift_category_mix", WARNING, E.ExpectColumnKLDivergenceToBeLessThan(
            column="category", partition_object=partition, threshold=settings.category_kl_warning,
            tail_weight_holdout=UNSEEN_CATEGORY_WEIGHT)))
    for rule, grade, exp in out:
        exp.severity = grade
        exp.meta = {"rule": rule, "severity": grade, "level": "table", "reference_hours": ref.hours}
    return [exp for _, _, exp in out]


# ---------------------------------------------------------------------------------------------
# the GX results, as one check per rule


class KlPartition(TypedDict, total=False):
    """A partition object of GX's KL-divergence result: the categories (codes) and their shares."""

    values: list[str]
    weights: list[float]


class KlDetails(TypedDict, total=False):
    """The ``details`` of GX's KL-divergence result: the hour's partition and the reference's."""

    observed_partition: KlPartition
    expected_partition: KlPartition


class DriftResult(TypedDict, total=False):
    """A drift expectation's GX ``result``, the keys the messages read: the observed value (the
    hour's rows, its mean click, the KL divergence: None when infinite) and, for KL, the details."""

    observed_value: float | None
    details: KlDetails


def is_drift(res: Any) -> bool:
    """Whether a GX expectation result belongs to a drift rule."""
    return (res.expectation_config.meta or {}).get("rule") in DRIFT_RULES


def drift_checks(results: Sequence[Any], ref: DriftReference, settings: ValidationSettings,
                 names: dict[str, str] | None = None) -> list[Check]:
    """One check per drift rule (in `DRIFT_RULES` order) from the GX results of its expectations.

    `names`: code -> category name (`code_categories`), for the message."""
    out = []
    for rule in DRIFT_RULES:
        column = _COLUMN[rule]
        name = f"{rule}({column})" if column else rule
        mine = [r for r in results if (r.expectation_config.meta or {}).get("rule") == rule]
        if rule in ref.skipped or not mine:
            short = ref.delta or ref.hours < settings.drift_min_history  # nothing to compare at all: no column
            note = ref.skipped.get(rule, "skipped: not evaluated")
            out.append(Check(rule, None if short else column, WARNING, True, None, f"{rule}: {note}"))
            continue
        broken = [r for r in mine if (r.exception_info or {}).get("raised_exception")]
        if broken:
            why = broken[0].exception_info.get("exception_message")
            out.append(Check(rule, column, CRITICAL, False, None, f"{name}: could not be evaluated: {why}"))
            continue
        failed = {str((r.expectation_config.meta or {}).get("severity") or CRITICAL) for r in mine if not r.success}
        grade = CRITICAL if CRITICAL in failed else WARNING if WARNING in failed else None
        gx_result = mine[0].result
        result: DriftResult = gx_result if gx_result else {}
        message = f"{name}: " + _MESSAGES[rule](result, ref, settings, grade, names or {})
        out.append(Check(rule, column, grade or WARNING, grade is None, None, message))
    return out


def _limit(grade: str | None, warning: float, critical: float) -> tuple[str, float]:
    """The limit a message names: the critical one when that failed, else the warning one."""
    return (f"{CRITICAL} limit", critical) if grade == CRITICAL else (f"{WARNING} limit", warning)


def _volume(result: DriftResult, ref: DriftReference, settings: ValidationSettings, grade: str | None,
            names: dict[str, str]) -> str:
    label, x = _limit(grade, settings.volume_ratio_warning, settings.volume_ratio_critical)
    rows, median = int(result.get("observed_value") or 0), float(ref.rows or 0)
    ratio = rows / median if median else math.inf
    return (f"{rows} rows vs reference median {median:g} over {ref.hours} hours (x{ratio:.2f}; {label} x{x:g}"
            f" either way: rows in [{math.ceil(median / x)}, {math.floor(median * x)}])")


def _ctr(result: DriftResult, ref: DriftReference, settings: ValidationSettings, grade: str | None,
         names: dict[str, str]) -> str:
    label, limit = _limit(grade, settings.ctr_change_warning, settings.ctr_change_critical)
    mean, median = result.get("observed_value"), float(ref.ctr or 0)
    if not isinstance(mean, int | float):
        return f"no click-through rate ({mean}) vs reference median {median:.4f} over {ref.hours} hours"
    return (f"ctr {mean:.4f} vs reference median {median:.4f} over {ref.hours} hours"
            f" (change {abs(mean - median):.4f}; {label} {limit:g})")


def _mix(result: DriftResult, ref: DriftReference, settings: ValidationSettings, grade: str | None,
         names: dict[str, str]) -> str:
    label, limit = f"{WARNING} limit", settings.category_kl_warning
    kl = result.get("observed_value")
    shown = f"{kl:.3f}" if isinstance(kl, int | float) else "infinite"  # GX reports an infinite one as None
    moves = _largest_moves(result.get("details") or {}, names, ref.mix or {}) if grade else ""
    return (f"KL divergence {shown} from the reference mix of {ref.hours} hours ({label} {limit:g})"
            + (f"; most of it: {moves}" if moves else ""))


def _largest_moves(details: KlDetails, names: dict[str, str], mix: dict[str, float], top: int = 3) -> str:
    """The categories that add most to the divergence: name, share of the hour, share of the reference."""
    observed, expected = details.get("observed_partition") or {}, details.get("expected_partition") or {}
    terms = []
    for code, p, q in zip(observed.get("values", []), observed.get("weights", []), expected.get("weights", []),
                          strict=False):
        if p and p > 0:
            terms.append((p * math.log(p / q) if q and q > 0 else math.inf, names.get(code, code), p))
    terms.sort(key=lambda t: t[0], reverse=True)
    big = [t for t in terms[:top] if terms and t[0] > 0 and t[0] >= terms[0][0] / 10]
    return ", ".join(f"{name!r} {p:.1%} (reference " + (f"{mix[name]:.1%})" if name in mix else "none: a new category)")
                     for _, name, p in big)


_MESSAGES = {"drift_row_count": _volume, "drift_ctr": _ctr, "drift_category_mix": _mix}
