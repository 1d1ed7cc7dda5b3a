"""Replay: a sample of earlier validated hours mixed into each update, against forgetting.

The sample is drawn uniformly over the rows of the validated hours in
[start - replay_hours, start), after removing each hour's holdout sessions (so no hour's holdout
is ever trained on, by this update or a later one). Its size is the `replay_fraction` share of
the training set: with F fresh rows and fraction r, R = round(F * r / (1 - r)), or every
available row when there are fewer. The draw is a pure function of (seed, start hour, the
partitions' bytes): re-running an hour replays the same rows.

From a drift episode on (`Stale`), the rows of the slices judged changed are not replayed from
the hours before the drift, during the episode or after it: they teach what the traffic now
contradicts. Everything else still holds
and is replayed, which is what keeps an adapting update from forgetting the unchanged slices
(the new traffic may hold few of their rows).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import NotRequired, TypedDict

import numpy as np
import pandas as pd

from incremental.data import lake as lk
from incremental.data.storage import LakePath
from incremental.hours import Hour, iso_hour, parse_hour


class ReplayedPartition(TypedDict):
    hour: str  # ISO time of the hour's start
    sha256: str | None  # the partition's identity
    rows: int  # its rows after removing its holdout sessions
    sampled: int  # how many of them were replayed


class ReplayLineage(TypedDict):
    """What an update replayed, from where (its MLflow run's `lineage.json`, under `replay`)."""

    rows: int
    fraction: float
    seed: int
    window_hours: int
    stale: list[StaleRule] | None
    stale_rows_left_out: int
    partitions: list[ReplayedPartition]
    table_version: NotRequired[int | None]  # the version of the lake's table the replayed hours were read at


class StaleRule(TypedDict, total=False):
    """`Stale` as JSON (the drift state's rules, the drift context): one of `categories`/`all_but`."""

    categories: list[str]
    all_but: list[str]
    before: str  # ISO hour


@dataclass(frozen=True)
class Stale:
    """Rows of `categories` from hours before `before` are stale: not replayed. With `all_but`,
    the rows of every category *except* these are (a drift of the whole traffic, where only the
    categories measured stable are known to still hold)."""

    categories: frozenset[str]
    before: datetime
    all_but: bool = False

    def to_dict(self) -> StaleRule:
        rule: StaleRule = {"before": self.before.isoformat()}
        rule["all_but" if self.all_but else "categories"] = sorted(self.categories)
        return rule

    @classmethod
    def from_dict(cls, rule: StaleRule) -> Stale:
        all_but = "all_but" in rule
        return cls(frozenset(rule["all_but" if all_but else "categories"]), parse_hour(rule["before"]), all_but)

    def describe(self) -> str:
        listed = ", ".join(sorted(self.categories)) or "none"
        which = (f"every category but {listed}" if self.categories else "every category") if self.all_but else listed
        return f"{which}: rows from before {iso_hour(self.before)}"

    def drops(self, hour: datetime, categories: pd.Series) -> np.ndarray:
        """True for the rows of an hour's `categories` that are stale."""
        if hour >= self.before:
            return np.zeros(len(categories), dtype=bool)
        listed = categories.isin(self.categories).to_numpy()
        return ~listed if self.all_but else listed


def stale_mask(stale: tuple[Stale, ...], hour: datetime, categories: pd.Series) -> np.ndarray:
    """True for the rows of an hour (their `categories`) that any of the `stale` rules leaves out."""
    drop = np.zeros(len(categories), dtype=bool)
    for rule in stale:
        drop |= rule.drops(hour, categories)
    return drop


def holdout_mask(session_ids: pd.Series | list[str], fraction: float, salt: str = "") -> np.ndarray:
    """True for rows whose session falls in the holdout: a hash of session_id, so a session is
    always on one side (in every hour, for every stage), and the split needs no state. Another
    `salt` draws another split, independent of the first (the early-stopping sessions)."""
    if fraction <= 0:
        return np.zeros(len(session_ids), dtype=bool)
    cut = int(fraction * 2**32)
    return np.fromiter(
        (int.from_bytes(hashlib.sha256((salt + str(s)).encode()).digest()[:4], "big") < cut for s in session_ids),
        dtype=bool,
        count=len(session_ids),
    )


def replay_size(fresh_rows: int, fraction: float) -> int:
    """Rows to replay so that they are `fraction` of fresh + replayed."""
    if fraction <= 0 or fresh_rows <= 0:
        return 0
    if fraction >= 1:
        raise ValueError("replay_fraction must be below 1: an update needs some fresh data")
    return round(fresh_rows * fraction / (1 - fraction))


def sample(
    lake: LakePath,
    start: Hour,
    *,
    fresh_rows: int,
    fraction: float,
    replay_hours: int,
    holdout_fraction: float,
    seed: int,
    stale: tuple[Stale, ...] = (),
) -> tuple[pd.DataFrame, ReplayLineage]:
    """The replay rows for the update of hour `start`, and their lineage (`ReplayLineage`)."""
    wanted = replay_size(fresh_rows, fraction)
    lineage: ReplayLineage = {"rows": 0, "fraction": fraction, "seed": seed, "window_hours": replay_hours,
                              "stale": [rule.to_dict() for rule in stale] or None, "stale_rows_left_out": 0,
                              "partitions": []}
    if wanted == 0:
        return pd.DataFrame(columns=lk.SEARCH_LOG_SCHEMA.names), lineage

    frames: list[pd.DataFrame] = []
    parts: list[lk.Partition] = []
    for part in lk.validated_partitions(lake, start, replay_hours):
        frame = lk.read_partition(part).to_pandas()
        frame = frame[~holdout_mask(frame["session_id"], holdout_fraction)]
        if stale:
            drop = stale_mask(stale, part.start, frame["category"])
            lineage["stale_rows_left_out"] += int(drop.sum())
            frame = frame[~drop]
        frames.append(frame.assign(_hour=len(parts)))
        parts.append(part)
    if not frames:
        return pd.DataFrame(columns=lk.SEARCH_LOG_SCHEMA.names), lineage
    pool = pd.concat(frames, ignore_index=True)

    # Seeded by the hour too: each update replays a different draw, the same one when re-run.
    rng = np.random.default_rng([seed, int(start.timestamp()) // 3600])
    chosen = np.sort(rng.choice(len(pool), size=min(wanted, len(pool)), replace=False))
    picked = pool.iloc[chosen]
    counts = picked["_hour"].value_counts()
    lineage["rows"] = len(picked)
    lineage["table_version"] = parts[0].version
    lineage["partitions"] = [
        {
            "hour": part.start.isoformat(),
            "sha256": part.manifest["sha256"] if part.manifest else None,
            "rows": int((pool["_hour"] == k).sum()),  # after removing its holdout
            "sampled": int(counts.get(k, 0)),
        }
        for k, part in enumerate(parts)
    ]
    return picked.drop(columns="_hour").reset_index(drop=True), lineage
