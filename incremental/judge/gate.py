"""The promotion gate: a pure function from metric dicts, thresholds and drift context to a decision.

The core is **relative**, in the style of TFX's change thresholds: the candidate against the
champion on the *same* fresh holdout, with a paired bootstrap interval over sessions (and
products, with `bootstrap_units: sessions_and_products`; `incremental.judge.compare`). A candidate is rejected when it is significantly worse than the
champion on fresh data; absolute values are only **sanity floors**: they judge the first model
alone and afterwards never block a candidate that is at least as good as the champion on the
same rows. **Forgetting limits** apply to the anchor slices that have *not* changed: a slice
whose champion prequential metric fell for K hours in a row (`incremental.judge.drift`) is reported,
not protected, since unlearning a contradicted pattern is correct. And a candidate trained on an
**anomalous hour** is held back in normal mode: one poisoned hour favours the candidate on its own
holdout, and only the following hours tell a bad hour from the start of a drift. Where the rule has no verdict (an
hour run after a later one, as a backfill's are, has no prequential record; after a first champion or an
episode there are too few earlier hours), its anomaly is the champion's holdout AUC against its anchor AUC.

Inputs are the benchmark's metric dicts, one per model::

    {"holdout": evaluate(fresh holdout), "anchor": evaluate(anchor set),
     "anchor_unchanged": evaluate(anchor rows of unchanged slices),        # optional
     "holdout_vs_champion": compare.paired_bootstrap(...),                  # candidate only
     "anchor_vs_champion": {**compare.paired_bootstrap(unchanged anchor rows),  # candidate only,
                            "per_category": {category: compare.paired_bootstrap(...)}}}  # optional

and ``context`` = ``{"mode": "normal"|"adapt"|"catch_up", "anomalous": [evidence lines],
"changed_slices": [categories]}``. The checks, in order:

| name | kind | passes when |
| --- | --- | --- |
| ``holdout_rows`` | value | holdout rows >= ``min_holdout_rows`` (an empty holdout rejects) |
| ``holdout_vs_lexical_floor`` | relative | no champion yet: the NDCG@10 interval of candidate minus a BM25 floor fitted on the same hours is not wholly below 0 |
| ``holdout_auc`` | value | AUC >= ``min_holdout_auc`` (chance), or (with a champion) >= the champion's or not significantly below it |
| ``holdout_logloss`` | value | log loss <= ``max_holdout_logloss``, or <= the champion's |
| ``holdout_ece`` | value | ECE <= ``max_holdout_ece``, or <= the champion's |
| ``holdout_ndcg_vs_champion`` | relative | upper end of the NDCG@10 interval >= -``max_holdout_ndcg_deficit`` |
| ``holdout_auc_vs_champion`` | relative | upper end of the AUC interval >= -``max_holdout_auc_deficit`` |
| ``anchor_auc_drop`` | change | champion anchor AUC - candidate's <= ``max_anchor_auc_drop`` (unchanged slices), or within noise |
| ``anchor_worst_category_auc_drop`` | change | no unchanged category fell more than ``max_worst_category_auc_drop`` beyond noise |
| ``anchor_cumulative_auc_drop`` | change | mean AUC over the protected categories, baseline's - candidate's <= ``max_cumulative_auc_drop``, or within noise |
| ``hour_not_anomalous`` | hold | mode is not normal, or the champion's prequential metric did not fall this hour (where the rule has no verdict, a late hour or too few earlier hours: its holdout AUC did not fall below its anchor AUC, `drift_rule.anchor_evidence`) |

Every check's detail, and the rules they share (the noise margin on forgetting, the cumulative
budget, fail-closed on a missing or non-finite metric): `incremental.judge.checks`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from incremental.config import GateSettings
from incremental.judge.checks import (
    RELATIVE,
    GateCheck,
    GateCheckRecord,
    budget_check,
    drop_check,
    floor_check,
    hold_check,
    relative_check,
    rows_check,
    value_check,
    worst_category_check,
)


class DecisionRecord(TypedDict):
    """A `Decision` in an evaluation (`evaluation.json`'s ``decision``)."""

    approved: bool
    decision: str  # "approved" | "rejected"
    checks: list[GateCheckRecord]
    reasons: list[str]


@dataclass(frozen=True)
class Decision:
    approved: bool
    checks: tuple[GateCheck, ...]
    reasons: tuple[str, ...]  # the failed checks in words, or one approval line

    @property
    def failed(self) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def to_dict(self) -> DecisionRecord:
        """Strict-JSON form (non-finite numbers become null; the detail says what they were)."""
        return {
            "approved": self.approved,
            "decision": "approved" if self.approved else "rejected",
            "checks": [c.to_dict() for c in self.checks],
            "reasons": list(self.reasons),
        }


def _forgetting_section(candidate: Mapping[str, Any], champion: Mapping[str, Any]) -> str:
    both = "anchor_unchanged" in candidate and "anchor_unchanged" in champion
    return "anchor_unchanged" if both else "anchor"


def decide(candidate: Mapping[str, Any], champion: Mapping[str, Any] | None, thresholds: GateSettings,
           context: Mapping[str, Any] | None = None) -> Decision:
    """Every check with its value, threshold and verdict; approved only when all pass."""
    t, context = thresholds, context or {}
    checks: list[GateCheck] = [
        rows_check(candidate, t.min_holdout_rows),
        value_check("holdout_auc", candidate, "holdout.auc", ">=", t.min_holdout_auc, champion,
                    interval="holdout_vs_champion.auc"),
        value_check("holdout_logloss", candidate, "holdout.logloss", "<=", t.max_holdout_logloss, champion),
        value_check("holdout_ece", candidate, "holdout.ece", "<=", t.max_holdout_ece, champion),
    ]
    if champion is None and "lexical_floor" in candidate:
        checks.insert(1, floor_check(candidate))
    if champion is not None:
        section = _forgetting_section(candidate, champion)
        changed = frozenset(context.get("changed_slices", []))
        where = "anchor AUC" + (" (unchanged slices)" if section != "anchor" else "")
        noise = candidate.get("anchor_vs_champion")
        noise = noise if isinstance(noise, Mapping) else {}
        checks += [
            relative_check("holdout_ndcg_vs_champion", candidate, "ndcg@10", t.max_holdout_ndcg_deficit),
            relative_check("holdout_auc_vs_champion", candidate, "auc", t.max_holdout_auc_deficit),
            drop_check("anchor_auc_drop", candidate, champion, f"{section}.auc", t.max_anchor_auc_drop, where,
                       noise.get("auc")),
            worst_category_check(candidate, champion, t, changed,
                                 {c: i.get("auc") for c, i in noise.get("per_category", {}).items()}),
            budget_check(candidate, t.max_cumulative_auc_drop),
        ]
        if t.hold_anomalous_hours:
            checks.append(hold_check(context))
    failed = [c for c in checks if not c.passed]
    if failed:
        reasons = tuple(f"{c.name}: {c.detail}" for c in failed)
    elif champion is None:
        reasons = (f"approved: all {len(checks)} value checks passed (no champion yet: relative checks do not apply)",)
    else:
        relative = [c.detail for c in checks if c.kind == RELATIVE]
        reasons = (f"approved: all {len(checks)} checks passed; " + "; ".join(relative),)
    return Decision(approved=not failed, checks=tuple(checks), reasons=reasons)
