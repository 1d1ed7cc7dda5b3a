"""The promotion gate's checks: one function per row of the table in `incremental.judge.gate`.

Each takes the metric dicts (and thresholds) and returns a `GateCheck`: the value, the
threshold, the verdict and a detail in words; `gate.decide` runs them in order.

**Cumulative budget.** The per-update limits compare the candidate with the champion it would
replace, so losses within them add up over promoted updates: a ratchet (on the medium drift
benchmark, 0.040 mean AUC lost on the unchanged categories, each promoted update within its
limits). The anchor records its *baseline* (the champion when it was frozen or rolled at a drift
declaration) and the categories held to it (a rolled anchor: the stable ones; otherwise all).
``anchor_vs_baseline`` is the mean over those categories of candidate minus baseline AUC, with a
paired bootstrap interval (`compare.category_mean_bootstrap`); an anchor frozen before any
champion has no baseline and the check says it does not apply.

**Noise margin on forgetting.** With ``anchor_vs_champion`` (the paired interval of candidate
minus champion over anchor sessions), a drop above its limit fails only when it is also
significant: the interval's upper end is below 0. Tried without it: on the demo's 700-row anchor a
category of 100 rows moves 0.05 AUC between two models that differ by noise, and after a drift
the worst of ten such categories rejected every candidate. Without an interval (older
evaluations) a drop above its limit fails.

**Fail-closed.** A missing, NaN or infinite metric fails its check with a detail that says
so (never a silent pass); so does a champion/candidate pair measured on different row counts
(not the same set) or, when both sections carry a ``sha256``, different set hashes. The
worst-category check looks at the categories where the champion has at least
``min_category_rows`` anchor rows and a defined AUC (a single-class category has none); when
no category qualifies it passes and says it was not applicable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from incremental.config import GateSettings

VALUE = "value"
CHANGE = "change"
RELATIVE = "relative"
HOLD = "hold"


@dataclass(frozen=True)
class GateCheck:
    name: str
    kind: str  # "value" | "change"
    metric: str  # where the value comes from, e.g. "anchor.per_category.books.auc"
    value: float  # the metric (value checks) or the drop champion - candidate (change checks)
    threshold: float
    comparison: str  # ">=" | "<=": passes when `value comparison threshold`
    passed: bool
    detail: str

    def to_dict(self) -> GateCheckRecord:
        return {"name": self.name, "kind": self.kind, "metric": self.metric, "value": _json_float(self.value),
                "threshold": _json_float(self.threshold), "comparison": self.comparison, "passed": self.passed,
                "detail": self.detail}


class GateCheckRecord(TypedDict):
    """A `GateCheck` in an evaluation's decision: strict JSON (a non-finite value or threshold is null)."""

    name: str
    kind: str
    metric: str
    value: float | None
    threshold: float | None
    comparison: str
    passed: bool
    detail: str


def _json_float(x: float) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _fmt(x: float) -> str:
    return f"{x:.4f}" if math.isfinite(x) else str(x)


def _lookup(metrics: Mapping[str, Any] | None, path: str) -> tuple[float, str | None]:
    """The number at a dotted path such as ``holdout.auc``, or nan and what is wrong with it."""
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return math.nan, f"{path} is missing"
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return math.nan, f"{path} is not a number ({node!r})"
    value = float(node)
    if not math.isfinite(value):
        return value, f"{path} is {value}: a metric that cannot be computed never passes"
    return value, None


def _figures(interval: Mapping[str, Any], *keys: str) -> tuple[Any, ...]:
    """The entries at `keys` (None where missing), for the caller to check are finite numbers."""
    return tuple(interval.get(k) for k in keys)


def _compare(value: float, comparison: str, threshold: float) -> bool:
    if not math.isfinite(value):
        return False
    return value >= threshold if comparison == ">=" else value <= threshold


def value_check(name: str, metrics: Mapping[str, Any], path: str, comparison: str, threshold: float,
                 champion: Mapping[str, Any] | None = None, interval: str | None = None) -> GateCheck:
    """A sanity floor, for a first model. With a champion it also passes when the candidate is at
    least as good as the champion on the same rows, or, where `interval` names the candidate's
    interval of this metric against the champion (``holdout_vs_champion.auc``), not significantly
    worse: the relative check judges it then, and a floor never rejects on a point difference that
    is noise (medium drift run, seed 1: the AUC floor alone rejected a candidate 0.042 truth NDCG@10
    better than the champion, its AUC interval within noise: `benchmarks/gate_rules_bench.py`)."""
    value, problem = _lookup(metrics, path)
    passed = problem is None and _compare(value, comparison, threshold)
    if problem is not None:
        detail = f"candidate {problem}"
    elif passed:
        detail = f"candidate {path} = {_fmt(value)} meets the floor {comparison} {_fmt(threshold)}"
    else:
        detail = f"candidate {path} = {_fmt(value)} fails the floor {comparison} {_fmt(threshold)}"
        champ, champ_problem = _lookup(champion, path) if champion is not None else (math.nan, "none")
        if champion is not None and champ_problem is None and not _same_set(metrics, champion, "holdout"):
            lo, hi = (_lookup(metrics, f"{interval}.{end}")[0] for end in ("lo", "hi")) if interval \
                else (math.nan, math.nan)
            if _compare(value, comparison, champ):
                passed = True
                detail += (f", but the champion scores {_fmt(champ)} on the same rows: a floor never blocks "
                           "a candidate that is at least as good as the champion")
            elif math.isfinite(lo) and math.isfinite(hi) and hi >= 0:
                passed = True
                detail += (f"; the champion's {_fmt(champ)} on the same rows is within noise of it (interval "
                           f"[{lo:+.4f}, {hi:+.4f}]): the relative check judges it, not the floor")
            else:
                detail += f" and is worse than the champion's {_fmt(champ)}"
    return GateCheck(name, VALUE, path, value, threshold, comparison, passed, detail)


def relative_check(name: str, candidate: Mapping[str, Any], metric: str, deficit: float) -> GateCheck:
    """Candidate minus champion on the same fresh holdout: fails when significantly worse."""
    path = f"holdout_vs_champion.{metric}"
    section = candidate.get("holdout_vs_champion")
    interval = section.get(metric) if isinstance(section, Mapping) else None
    if not isinstance(interval, Mapping):
        return GateCheck(name, RELATIVE, path, math.nan, -deficit, ">=", False, f"candidate {path} is missing")
    diff, lo, hi = _figures(interval, "diff", "lo", "hi")
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in (diff, lo, hi)):
        return GateCheck(name, RELATIVE, path, math.nan, -deficit, ">=", False,
                         f"the {metric} interval cannot be computed on this holdout (diff {diff}, [{lo}, {hi}])")
    assert isinstance(section, Mapping)  # it held the interval
    passed = hi >= -deficit
    level = f"{section.get('confidence', 0.9):.0%}"
    verdict = "better than" if lo > 0 else "worse than" if hi < 0 else "within noise of"
    units = section.get("units", "sessions")
    detail = (f"fresh holdout {metric}: candidate {verdict} the champion, {diff:+.4f} "
              f"({level} interval [{lo:+.4f}, {hi:+.4f}] over {section.get('sessions', '?')} sessions"
              + (", resampling products too)" if units != "sessions" else ")")
              + ("" if passed else f": significantly worse, beyond the allowed {deficit:.4f}")
              # an honest interval on a small holdout is wide: say what it cannot see instead of deciding on noise
              + (f"; this holdout cannot tell a change smaller than {(hi - lo) / 2:.3f}" if lo <= 0 <= hi else ""))
    return GateCheck(name, RELATIVE, path + ".hi", float(hi), -deficit, ">=", passed, detail)


def floor_check(candidate: Mapping[str, Any]) -> GateCheck:
    """A first model against the lexical floor fitted on its own hours, on the same holdout rows:
    rejected when significantly worse (a ranker that loses to word overlap is not worth serving)."""
    path = "lexical_floor.candidate_vs_floor.ndcg@10"
    floor = candidate.get("lexical_floor")
    interval = floor.get("candidate_vs_floor", {}).get("ndcg@10") if isinstance(floor, Mapping) else None
    if not isinstance(interval, Mapping):
        return GateCheck("holdout_vs_lexical_floor", RELATIVE, path, math.nan, 0.0, ">=", False,
                         "no lexical floor was measured for this first model")
    diff, lo, hi = _figures(interval, "diff", "lo", "hi")
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in (diff, lo, hi)):
        return GateCheck("holdout_vs_lexical_floor", RELATIVE, path, math.nan, 0.0, ">=", False,
                         f"the interval against the lexical floor cannot be computed (diff {diff}, [{lo}, {hi}])")
    assert isinstance(floor, Mapping)
    verdict = "better than" if lo > 0 else "worse than" if hi < 0 else "within noise of"
    own = candidate.get("holdout", {})
    detail = (f"fresh holdout NDCG@10 {_fmt(own.get('ndcg@10', math.nan))} (AUC {_fmt(own.get('auc', math.nan))}) "
              f"against the lexical floor's {_fmt(floor.get('ndcg@10', math.nan))} (AUC {_fmt(floor.get('auc', math.nan))}),"
              f" BM25 fitted on the same hours: {verdict} the floor, {diff:+.4f} "
              f"({floor['candidate_vs_floor'].get('confidence', 0.9):.0%} interval [{lo:+.4f}, {hi:+.4f}])")
    return GateCheck("holdout_vs_lexical_floor", RELATIVE, path + ".hi", float(hi), 0.0, ">=", hi >= 0, detail)


def hold_check(context: Mapping[str, Any]) -> GateCheck:
    mode = context.get("mode", "normal")
    anomalous = list(context.get("anomalous", []))
    if mode != "normal" or not anomalous:
        detail = (f"mode {mode}: candidates of a drift episode are judged by the relative gate" if mode != "normal"
                  else "the champion's prequential metrics on this hour are in line with its reference")
        return GateCheck("hour_not_anomalous", HOLD, "drift.anomalous", 0.0, 0.0, "<=", True, detail)
    detail = ("held back: the champion's own metric fell on this hour ("
              + "; ".join(anomalous) + "); one bad hour and the first hour of a drift look alike, "
              "the next hours tell them apart (a sustained change starts the adapt mode)")
    return GateCheck("hour_not_anomalous", HOLD, "drift.anomalous", float(len(anomalous)), 0.0, "<=", False, detail)


def rows_check(candidate: Mapping[str, Any], minimum: int) -> GateCheck:
    rows, problem = _lookup(candidate, "holdout.rows")
    passed = problem is None and rows >= minimum
    if problem is not None:
        detail = f"candidate {problem}: no fresh holdout to judge the candidate on"
    elif rows == 0:
        detail = "the fresh holdout is empty (0 rows): there is nothing to judge the candidate on"
    else:
        detail = f"the fresh holdout has {int(rows)} rows, {'at least' if passed else 'fewer than'} {minimum}"
    return GateCheck("holdout_rows", VALUE, "holdout.rows", rows, float(minimum), ">=", passed, detail)


def _same_set(candidate: Mapping[str, Any], champion: Mapping[str, Any], section: str) -> str | None:
    """Why the two models were not measured on the same rows, or None."""
    cand, champ = candidate.get(section), champion.get(section)
    if not isinstance(cand, Mapping) or not isinstance(champ, Mapping):
        return None  # the metric lookups report the missing section
    if "sha256" in cand and "sha256" in champ and cand["sha256"] != champ["sha256"]:
        return f"{section} sets differ (sha256 {str(champ['sha256'])[:12]} vs {str(cand['sha256'])[:12]})"
    if "rows" in cand and "rows" in champ and cand["rows"] != champ["rows"]:
        return f"not the same {section} set: champion scored {champ['rows']} rows, candidate {cand['rows']}"
    return None


def _significant(interval: Any) -> tuple[bool, str]:
    """Is candidate minus champion significantly below 0? (no usable interval: assume so), and the figures."""
    if not isinstance(interval, Mapping):
        return True, ""
    lo, hi = _figures(interval, "lo", "hi")
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in (lo, hi)):
        return True, " (no interval could be computed)"
    return hi < 0, f" (candidate - champion interval [{lo:+.4f}, {hi:+.4f}])"


def drop_check(name: str, candidate: Mapping[str, Any], champion: Mapping[str, Any], path: str,
                threshold: float, what: str, interval: Any = None) -> GateCheck:
    cand, cand_problem = _lookup(candidate, path)
    champ, champ_problem = _lookup(champion, path)
    mismatch = _same_set(candidate, champion, path.split(".")[0])
    drop = champ - cand
    if cand_problem or champ_problem or mismatch:
        problems = [f"candidate {cand_problem}" if cand_problem else "",
                    f"champion {champ_problem}" if champ_problem else "", mismatch or ""]
        detail = "; ".join(p for p in problems if p)
        return GateCheck(name, CHANGE, path, drop if not mismatch else math.nan, threshold, "<=", False, detail)
    within = _compare(drop, "<=", threshold)
    significant, figures = _significant(interval)
    passed = within or not significant
    verdict = "within" if within else "more than" if significant else "more than, but within noise of,"
    detail = (f"{what} {'fell' if drop > 0 else 'changed'} by {drop:+.4f} "
              f"(champion {_fmt(champ)} -> candidate {_fmt(cand)}), {verdict} the allowed {_fmt(threshold)}"
              + (figures if not within else ""))
    return GateCheck(name, CHANGE, path, drop, threshold, "<=", passed, detail)


def worst_category_check(candidate: Mapping[str, Any], champion: Mapping[str, Any],
                          thresholds: GateSettings, changed: frozenset[str] = frozenset(),
                          intervals: Any = None) -> GateCheck:
    name, threshold = "anchor_worst_category_auc_drop", thresholds.max_worst_category_auc_drop
    path = "anchor.per_category"

    def fail(detail: str, metric: str = path + ".*.auc") -> GateCheck:
        return GateCheck(name, CHANGE, metric, math.nan, threshold, "<=", False, detail)

    def categories(metrics: Mapping[str, Any]) -> Any:
        anchor = metrics.get("anchor")
        return anchor.get("per_category") if isinstance(anchor, Mapping) else None

    cand_cats, champ_cats = categories(candidate), categories(champion)
    if not isinstance(cand_cats, Mapping):
        return fail(f"candidate {path} is missing")
    if not isinstance(champ_cats, Mapping):
        return fail(f"champion {path} is missing")
    mismatch = _same_set(candidate, champion, "anchor")
    if mismatch:
        return fail(mismatch)
    drops: dict[str, float] = {}
    problems: list[str] = []
    skipped = 0
    for cat in sorted(champ_cats):
        if cat in changed:
            continue
        champ_row = champ_cats[cat] if isinstance(champ_cats[cat], Mapping) else {}
        champ_auc = champ_row.get("auc")
        rows = champ_row.get("rows", 0)
        if (not isinstance(champ_auc, (int, float)) or not math.isfinite(champ_auc)
                or not isinstance(rows, (int, float)) or rows < thresholds.min_category_rows):
            skipped += 1
            continue
        cand_row = cand_cats.get(cat)
        if not isinstance(cand_row, Mapping) or "auc" not in cand_row:
            problems.append(f"candidate has no anchor AUC for category {cat!r}")
            continue
        cand_auc = cand_row["auc"]
        if isinstance(cand_auc, bool) or not isinstance(cand_auc, (int, float)) or not math.isfinite(cand_auc):
            problems.append(f"candidate anchor AUC for category {cat!r} is {cand_auc}: it cannot pass")
            continue
        drops[cat] = float(champ_auc) - float(cand_auc)
    if problems:
        return fail("; ".join(problems))
    if not drops:
        return GateCheck(name, CHANGE, path + ".*.auc", 0.0, threshold, "<=", True,
                         f"not applicable: no anchor category has {thresholds.min_category_rows}+ rows and a "
                         f"defined champion AUC ({skipped} skipped)")
    intervals = intervals if isinstance(intervals, Mapping) else {}
    noisy = {c for c in drops if drops[c] > threshold and not _significant(intervals.get(c))[0]}
    counted = {c: d for c, d in drops.items() if c not in noisy} or drops
    worst = max(counted, key=lambda c: (counted[c], c))
    drop = counted[worst]
    passed = drop <= threshold or worst in noisy
    metric = f"{path}.{worst}.auc"
    champ_auc, cand_auc = float(champ_cats[worst]["auc"]), float(cand_cats[worst]["auc"])
    detail = (f"worst category {worst!r}: anchor AUC {'fell' if drop > 0 else 'changed'} by {drop:+.4f} "
              f"(champion {_fmt(champ_auc)} -> candidate {_fmt(cand_auc)}), "
              f"{'within' if drop <= threshold else 'more than'} the allowed {_fmt(threshold)}"
              + ("" if drop <= threshold else _significant(intervals.get(worst))[1])
              + f" ({len(drops)} categories compared, {skipped} too small or single-class"
              + (f"; beyond the limit but within noise: {', '.join(sorted(noisy))}" if noisy else "")
              + (f"; changed and not protected: {', '.join(sorted(changed))}" if changed else "") + ")")
    return GateCheck(name, CHANGE, metric, drop, threshold, "<=", passed, detail)


def budget_check(candidate: Mapping[str, Any], budget: float) -> GateCheck:
    """The cumulative forgetting budget: against the anchor's baseline, not only the champion."""
    name, path = "anchor_cumulative_auc_drop", "anchor_vs_baseline.diff"
    section = candidate.get("anchor_vs_baseline")
    if not isinstance(section, Mapping):
        return GateCheck(name, CHANGE, path, 0.0, budget, "<=", True,
                         "not applicable: this evaluation has no anchor_vs_baseline section")
    if not section.get("applicable"):
        return GateCheck(name, CHANGE, path, 0.0, budget, "<=", True, f"not applicable: {section.get('why')}")
    diff, lo, hi = _figures(section, "diff", "lo", "hi")
    baseline = section.get("baseline_version")
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in (diff, lo, hi)):
        return GateCheck(name, CHANGE, path, math.nan, budget, "<=", False,
                         f"the mean category AUC against version {baseline} cannot be computed "
                         f"(diff {diff}, [{lo}, {hi}]): it cannot pass")
    drop = -float(diff)
    within, significant = drop <= budget, hi < 0
    per = section.get("categories") or {}
    figures = ", ".join(f"{c} {-m['diff']:+.3f}" for c, m in sorted(per.items())
                        if isinstance(m.get("diff"), (int, float)) and math.isfinite(m["diff"]))
    verdict = "within" if within else "more than" if significant else "more than, but within noise of,"
    detail = (f"mean anchor AUC over {len(per)} protected categories {'fell' if drop > 0 else 'changed'} by "
              f"{drop:+.4f} since version {baseline} (the champion when the anchor was frozen), {verdict} the "
              f"budget {_fmt(budget)} (candidate - baseline interval [{lo:+.4f}, {hi:+.4f}]); drop per category: "
              + figures)
    return GateCheck(name, CHANGE, path, drop, budget, "<=", within or not significant, detail)
