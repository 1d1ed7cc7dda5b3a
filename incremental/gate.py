"""The promotion gate: a pure function from metric dicts and thresholds to a decision.

In the style of TFX/TFMA (and MLflow's ``MetricThreshold``): *value* thresholds bound a
candidate's own metrics and always apply; *change* thresholds bound how much worse than the
champion it may be and apply only when there is a champion. Thresholds are data
(`GateSettings`, from the reviewed ``incremental.yaml``).

Inputs are the benchmark's metric dicts, one per model::

    {"holdout": evaluate(fresh holdout, scores), "anchor": evaluate(anchor set, scores)}

(see `incremental.metrics.evaluate`); the champion's dict holds *its* scores on the *same*
holdout and anchor rows. The checks, in order:

| name | kind | passes when |
| --- | --- | --- |
| ``holdout_rows`` | value | holdout rows >= ``min_holdout_rows`` (an empty holdout rejects) |
| ``holdout_auc`` | value | holdout AUC >= ``min_holdout_auc`` |
| ``holdout_logloss`` | value | holdout log loss <= ``max_holdout_logloss`` |
| ``anchor_auc_drop`` | change | champion anchor AUC - candidate's <= ``max_anchor_auc_drop`` |
| ``anchor_worst_category_auc_drop`` | change | largest category AUC drop <= ``max_worst_category_auc_drop`` |
| ``anchor_ndcg_drop`` | change | champion anchor NDCG@10 - candidate's <= ``max_anchor_ndcg_drop`` |
| ``holdout_auc_deficit`` | change | champion holdout AUC - candidate's <= ``max_holdout_auc_deficit`` |

Fail-closed rules: a missing, NaN or infinite metric fails its check with a detail that says
so (never a silent pass); so does a champion/candidate pair measured on different row counts
(not the same set) or, when both sections carry a ``sha256``, different set hashes. The
worst-category check looks at the categories where the champion has at least
``min_category_rows`` anchor rows and a defined AUC (a single-class category has none); when
no category qualifies it passes and says it was not applicable. A drop is champion minus
candidate: positive is worse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from incremental.config import GateSettings

VALUE = "value"
CHANGE = "change"


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

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["value"] = _json_float(self.value)
        out["threshold"] = _json_float(self.threshold)
        return out


@dataclass(frozen=True)
class Decision:
    approved: bool
    checks: tuple[GateCheck, ...]
    reasons: tuple[str, ...]  # the failed checks in words, or one approval line

    @property
    def failed(self) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON form (non-finite numbers become null; the detail says what they were)."""
        return {
            "approved": self.approved,
            "decision": "approved" if self.approved else "rejected",
            "checks": [c.to_dict() for c in self.checks],
            "reasons": list(self.reasons),
        }

    def tags(self) -> dict[str, str]:
        """Model-version tags: ``decision`` and ``decision_reasons`` (within MLflow's 5,000 characters)."""
        return {
            "decision": "approved" if self.approved else "rejected",
            "decision_reasons": "; ".join(self.reasons)[:5000],
        }


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


def _compare(value: float, comparison: str, threshold: float) -> bool:
    if not math.isfinite(value):
        return False
    return value >= threshold if comparison == ">=" else value <= threshold


def _value_check(name: str, metrics: Mapping[str, Any], path: str, comparison: str, threshold: float) -> GateCheck:
    value, problem = _lookup(metrics, path)
    passed = problem is None and _compare(value, comparison, threshold)
    if problem is not None:
        detail = f"candidate {problem}"
    else:
        verdict = "meets" if passed else "fails"
        detail = f"candidate {path} = {_fmt(value)} {verdict} the threshold {comparison} {_fmt(threshold)}"
    return GateCheck(name, VALUE, path, value, threshold, comparison, passed, detail)


def _rows_check(candidate: Mapping[str, Any], minimum: int) -> GateCheck:
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


def _drop_check(name: str, candidate: Mapping[str, Any], champion: Mapping[str, Any], path: str,
                threshold: float, what: str) -> GateCheck:
    cand, cand_problem = _lookup(candidate, path)
    champ, champ_problem = _lookup(champion, path)
    mismatch = _same_set(candidate, champion, path.split(".")[0])
    drop = champ - cand
    if cand_problem or champ_problem or mismatch:
        problems = [f"candidate {cand_problem}" if cand_problem else "",
                    f"champion {champ_problem}" if champ_problem else "", mismatch or ""]
        detail = "; ".join(p for p in problems if p)
        return GateCheck(name, CHANGE, path, drop if not mismatch else math.nan, threshold, "<=", False, detail)
    passed = _compare(drop, "<=", threshold)
    verdict = "within" if passed else "more than"
    detail = (f"{what} {'fell' if drop > 0 else 'changed'} by {drop:+.4f} "
              f"(champion {_fmt(champ)} -> candidate {_fmt(cand)}), {verdict} the allowed {_fmt(threshold)}")
    return GateCheck(name, CHANGE, path, drop, threshold, "<=", passed, detail)


def _worst_category_check(candidate: Mapping[str, Any], champion: Mapping[str, Any],
                          thresholds: GateSettings) -> GateCheck:
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
    worst = max(drops, key=lambda c: (drops[c], c))
    drop = drops[worst]
    passed = drop <= threshold
    metric = f"{path}.{worst}.auc"
    champ_auc, cand_auc = float(champ_cats[worst]["auc"]), float(cand_cats[worst]["auc"])
    detail = (f"worst category {worst!r}: anchor AUC {'fell' if drop > 0 else 'changed'} by {drop:+.4f} "
              f"(champion {_fmt(champ_auc)} -> candidate {_fmt(cand_auc)}), "
              f"{'within' if passed else 'more than'} the allowed {_fmt(threshold)}"
              f" ({len(drops)} categories compared, {skipped} too small or single-class)")
    return GateCheck(name, CHANGE, metric, drop, threshold, "<=", passed, detail)


def decide(candidate: Mapping[str, Any], champion: Mapping[str, Any] | None, thresholds: GateSettings) -> Decision:
    """Every check with its value, threshold and verdict; approved only when all pass."""
    t = thresholds
    checks: list[GateCheck] = [
        _rows_check(candidate, t.min_holdout_rows),
        _value_check("holdout_auc", candidate, "holdout.auc", ">=", t.min_holdout_auc),
        _value_check("holdout_logloss", candidate, "holdout.logloss", "<=", t.max_holdout_logloss),
    ]
    if champion is not None:
        checks += [
            _drop_check("anchor_auc_drop", candidate, champion, "anchor.auc", t.max_anchor_auc_drop, "anchor AUC"),
            _worst_category_check(candidate, champion, t),
            _drop_check("anchor_ndcg_drop", candidate, champion, "anchor.ndcg@10", t.max_anchor_ndcg_drop,
                        "anchor NDCG@10"),
            _drop_check("holdout_auc_deficit", candidate, champion, "holdout.auc", t.max_holdout_auc_deficit,
                        "fresh holdout AUC vs the champion"),
        ]
    failed = [c for c in checks if not c.passed]
    if failed:
        reasons = tuple(f"{c.name}: {c.detail}" for c in failed)
    elif champion is None:
        reasons = (f"approved: all {len(checks)} value checks passed (no champion yet: change checks do not apply)",)
    else:
        reasons = (f"approved: all {len(checks)} checks passed",)
    return Decision(approved=not failed, checks=tuple(checks), reasons=reasons)
