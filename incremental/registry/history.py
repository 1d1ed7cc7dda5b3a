"""The registry's versions as a person reads them: `incremental history`'s table.

Every version, oldest first, with its decision, interval, parent, key metrics (as tagged) and the
periods it was the champion: what the champion workflow (`incremental.registry.champion`) recorded
on each version, read back.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from incremental.config import Settings
from incremental.registry import tracking
from incremental.registry.champion import TAG_NAMES, champion_periods

_q = tracking.quote  # every value in a search filter goes through it

# One version in `history`: what `incremental history` shows of it (the key metrics as tagged: text).
HistoryRow = TypedDict("HistoryRow", {
    "version": str, "champion": bool, "decision": str, "override": str, "interval": str, "parent": str, "mode": str,
    "changed_slices": str, "holdout_auc": str, "holdout_logloss": str, "anchor_auc": str, "anchor_ndcg@10": str,
    "worst_category_auc": str, "holdout_ndcg_diff": str, "holdout_auc_diff": str,
    "lake_table_version": str,  # the version of the lake's table its fresh hours were read at
    "champion_periods": list[list[str | None]],  # [start, end or None] pairs
    "reasons": list[str],
})


def history(settings: Settings) -> list[HistoryRow]:
    """Every version, oldest first, with its decision, interval, key metrics and champion periods."""
    client = tracking.configure(settings)
    name = settings.model_name
    try:
        versions = client.search_model_versions(f"name = {_q(name)}")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
    current = tracking.champion_version(client, name)
    return [_history_row(v, current) for v in sorted(versions, key=lambda v: int(v.version))]


def _history_row(v: ModelVersion, current: str | None) -> HistoryRow:
    tags = v.tags
    mode, kind = tags.get("mode", "normal"), tags.get("kind")

    def metric(key: str) -> str:  # as tagged: text
        return tags.get(TAG_NAMES[key], "")

    return {
        "version": str(v.version),
        "champion": str(v.version) == current,
        "decision": tags.get("decision", ""),
        "override": tags.get("override", "") or ("rollback" if tags.get("rollback_reason") else ""),
        "interval": tags.get("interval", ""),
        "parent": tags.get("parent_version", ""),
        "mode": mode + (f" ({kind})" if kind not in (None, "hourly", mode) else ""),
        "changed_slices": tags.get("changed_slices", ""),
        "holdout_auc": metric("holdout_auc"), "holdout_logloss": metric("holdout_logloss"),
        "anchor_auc": metric("anchor_auc"), "anchor_ndcg@10": metric("anchor_ndcg@10"),
        "worst_category_auc": metric("worst_category_auc"), "holdout_ndcg_diff": metric("holdout_ndcg_diff"),
        "holdout_auc_diff": metric("holdout_auc_diff"),
        "lake_table_version": tags.get("lake_table_version", ""),
        "champion_periods": champion_periods(v),
        "reasons": json.loads(tags.get("reasons", "[]")),
    }


def deciding_first(decision: str, reasons: list[str]) -> list[str]:
    """A version's reasons with the one that decided first: for a version not approved, a stale
    rejection (added after the gate approved it, whose approval line stays) before the gate's
    failed checks, and those before any approval line."""
    if decision == "approved":
        return list(reasons)
    rank = lambda r: 0 if r.startswith("stale:") else 2 if r.startswith("approved") else 1  # noqa: E731
    return sorted(reasons, key=rank)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_history(rows: list[HistoryRow]) -> str:
    from tabulate import tabulate

    def periods(p: list[list[Any]]) -> str:  # [start, end or None] pairs
        return "; ".join(f"{a[5:16]}..{(b or 'now')[5:16]}" for a, b in p)

    table = [
        [
            ("* " if r["champion"] else "  ") + str(r["version"]),
            r["decision"] + (f" ({r['override']})" if r["override"] else ""),
            r["interval"],
            r["parent"],
            r["lake_table_version"],
            r["mode"],
            r["holdout_auc"],
            r["holdout_ndcg_diff"],
            r["anchor_auc"],
            r["worst_category_auc"],
            periods(r["champion_periods"]),
            _cut(" | ".join(deciding_first(r["decision"], r["reasons"])), 110),
        ]
        for r in rows
    ]
    headers = ["version", "decision", "interval", "parent", "lake v", "mode", "holdout AUC", "NDCG vs champ", "anchor AUC", "worst cat AUC",
               "champion (UTC)", "reasons"]
    return tabulate(table, headers=headers, tablefmt="simple") if rows else "no model versions registered yet"
