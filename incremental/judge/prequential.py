"""The champion's prequential record: how it scored each validated hour before anything trained on it.

Test, then train: before anything trains on a validated hour, the champion scores all of its
rows. One line per (hour, champion version) in ``<lake>/_drift/prequential.jsonl`` (in the lake,
so every worker shares it): AUC, NDCG@10 and log loss, overall and per category. The drift rule
(`incremental.judge.drift_rule`) reads these alone; `incremental.judge.drift` explains why and
runs the episode on its verdicts.

The record lives beside the episode's state and the alert log in ``<lake>/_drift/``, and is
appended to like them (`drift.append_line`, under the lake's ``drift`` lock).
"""

from __future__ import annotations

import math
from typing import Any, cast

from incremental.config import Settings
from incremental.data import files, lake_lock
from incremental.hours import Hour, parse_hour
from incremental.judge.drift import append_line, drift_dir
from incremental.judge.drift_rule import PrequentialRecord, SliceMetrics

RECORD_FILE = "prequential.jsonl"
PREQUENTIAL = "prequential"  # a record's source: scored when the hour arrived, before any training on it
_METRICS = ("rows", "positives", "auc", "ndcg@10", "logloss")


def check_record(r: dict[str, Any]) -> str | None:
    """What is wrong with a prequential record (None: nothing)."""
    hour = r.get("hour")
    try:
        parse_hour(hour) if isinstance(hour, str) else None
    except (ValueError, OverflowError):
        hour = None
    if not isinstance(hour, str):
        return f"'hour' must be an ISO hour, found {r.get('hour')!r:.80}"
    if not isinstance(r.get("champion_version"), str):
        return f"'champion_version' must be a string, found {r.get('champion_version')!r:.80}"
    if not isinstance(r.get("source", PREQUENTIAL), str):
        return f"'source' must be a string, found {r.get('source')!r:.80}"
    per_category = r.get("per_category", {})
    if not isinstance(per_category, dict) or not all(isinstance(m, dict) for m in per_category.values()):
        return "'per_category' must map categories to metrics"
    for where, m in [("", r), *((f"per_category.{c}.", m) for c, m in per_category.items())]:
        for key in _METRICS:
            value = m.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                return f"'{where}{key}' must be a number or null, found {value!r:.80}"
    return None


def records(settings: Settings) -> list[PrequentialRecord]:
    """Every record, oldest hour first and, within an hour, in the order first written (the last
    line for an (hour, version, source) wins). Each line is checked (`check_record`): a damaged
    one is named (file and line), never skipped."""
    found: dict[tuple[str, str, str], PrequentialRecord] = {}
    for r in files.read_jsonl(drift_dir(settings) / RECORD_FILE, check_record):
        found[(r["hour"], r["champion_version"], r.get("source", PREQUENTIAL))] = cast(PrequentialRecord, r)
    # not sorted by version: "10" < "9", and the first written is the champion served on arrival
    return sorted(found.values(), key=lambda r: r["hour"])


def usable(recs: list[PrequentialRecord], since: str | None) -> list[PrequentialRecord]:
    """The series the rule reads: prequential records from `since` on, whichever champion was
    served then (one per hour: the first written, by the champion served when the hour arrived;
    a later line for the hour, from an older home or a race, is by a champion that may have
    trained on it)."""
    by_hour: dict[str, PrequentialRecord] = {}
    for r in recs:
        if r.get("source", PREQUENTIAL) == PREQUENTIAL and (since is None or r["hour"] >= since):
            by_hour.setdefault(r["hour"], r)
    return [by_hour[h] for h in sorted(by_hour)]


def append_record(settings: Settings, record: PrequentialRecord) -> None:
    append_line(settings, RECORD_FILE, record, check_record)


def record_once(settings: Settings, record: PrequentialRecord) -> bool:
    """Append a prequential record unless its hour has one already, checked under the drift lock
    (two runs of one hour score it at once: the first to write keeps it). True when written."""
    with lake_lock.lock(settings.lake, "drift"):
        if any(r["hour"] == record["hour"] and r.get("source", PREQUENTIAL) == PREQUENTIAL for r in records(settings)):
            return False
        append_record(settings, record)
        return True


def make_record(hour: Hour, version: str, evaluated: dict[str, Any], source: str = PREQUENTIAL) -> PrequentialRecord:
    """The line for one hour from `metrics.evaluate` of the champion's scores on all its rows,
    before anything trains on them."""

    def small(m: dict[str, Any]) -> SliceMetrics:
        return {"rows": _finite(m.get("rows")), "positives": _finite(m.get("positives")), "auc": _finite(m.get("auc")),
                "ndcg@10": _finite(m.get("ndcg@10")), "logloss": _finite(m.get("logloss"))}

    return {"hour": f"{hour}", "champion_version": str(version), "source": source, **small(evaluated),
            "per_category": {c: small(m) for c, m in evaluated.get("per_category", {}).items()}}


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None
