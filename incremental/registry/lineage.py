"""A version's lineage: the hours its weights were trained on, through every version they came from.

A version trained from another one (an hourly update: its `parent_version` tag, the champion or
a drift episode's shadow chain) inherits everything that one learnt; a version trained from the
base weights (a first bootstrap, a full retrain, a catch-up: a window of hours) starts a lineage.
So the *fresh* hours of a champion's lineage are its own hour or window and those of each
version up its chain of parents, back to the first one trained from the base weights.

What it is for (issue 20, item 7): an hour in the champion's lineage is never trained into it a
second time (`already_trained`: `pipeline.train_step` skips it, naming the version that trained it), and an hour
before the end of the lineage's latest hour (`trained_through`) is not scored as test-then-train
(`pipeline.monitor_step`): the lineage may have trained on it, by replay if not as a fresh hour.

Replay is not counted as training an hour: every update replays a sample of the hours before
it, by design, so an hour never trained as a fresh hour (one that reached the lake after a later
hour was trained) is still trained once, out of order, when it is run.

One registry read (every version of the model, with its tags) per call; the run of a window's
root version is read once more for the hours it really trained on (its `lineage.partitions`
tag: a quarantined hour inside the window was not), else its interval stands for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlflow.exceptions import MlflowException

from incremental.config import Settings
from incremental.hours import HOUR, hours, iso_hour, parse_hour
from incremental.registry import tracking

BASE = "base"  # registry.BASE: the parent "version" of a model trained from the base weights
ROOT_KINDS = ("full_retrain", "catch_up", "bootstrap")  # trained from the base weights on a window
RUN_TAG_LIMIT = 4000  # train.start_run cuts its lineage tags here: a value this long may be cut short
WINDOW_SHA_PREFIX = 12  # how much of each hour's sha256 that tag keeps


@dataclass(frozen=True)
class Trained:
    """One fresh hour of a lineage: the version that trained on it and the partition's identity
    it trained on (its sha256, or a prefix of it for a window's hour; "" when not recorded)."""

    version: str
    sha256: str = ""

    def same_data(self, sha256: str) -> bool:
        """The hour still holds the rows it was trained on (unknown counts as yes)."""
        if not self.sha256 or sha256 == self.sha256:
            return True
        return len(self.sha256) == WINDOW_SHA_PREFIX and sha256.startswith(self.sha256)


@dataclass(frozen=True)
class Lineage:
    version: str  # the version whose lineage this is (the champion)
    chain: tuple[str, ...] = ()  # the version, its parent, ... back to the root trained from the base weights
    hours: dict[datetime, Trained] = field(default_factory=dict)  # every fresh hour, by its start
    trained_through: datetime | None = None  # the latest interval end in the chain; None: unknown

    def trained(self, hour: datetime) -> Trained | None:
        """Which version of the lineage trained on `hour` as a fresh hour, if one did."""
        return self.hours.get(hour)


def _interval(tags: dict[str, str]) -> tuple[datetime, datetime] | None:
    try:
        start, end = tags.get("interval", "").split("/")
        return parse_hour(start), parse_hour(end)
    except (ValueError, TypeError):
        return None


def _is_root(tags: dict[str, str], interval: tuple[datetime, datetime] | None) -> bool:
    """Trained from the base weights: its `parent_version` tag names the champion it had to beat
    (full retrain, catch-up), not where its weights came from."""
    if tags.get("kind") in ROOT_KINDS or tags.get("parent_version", BASE) in ("", BASE, "none"):
        return True
    return interval is not None and interval[1] - interval[0] > HOUR  # a window: only a retrain has one


def _window_hours(client: Any, run_id: str | None, interval: tuple[datetime, datetime]) -> dict[datetime, str]:
    """The hours a window's version trained on (hour -> sha256 prefix), from its run's lineage tag;
    every hour of its interval when the tag is missing or may have been cut short."""
    every = {h: "" for h in hours(*interval)}
    if not run_id:
        return every
    try:
        tag = client.get_run(run_id).data.tags.get("lineage.partitions", "")
    except MlflowException:  # the run is gone: the interval stands for it
        return every
    if not tag or len(tag) >= RUN_TAG_LIMIT:
        return every
    out: dict[datetime, str] = {}
    for item in tag.split(","):
        hour, _, sha = item.rpartition(":")  # "<hour isoformat>:<sha256[:12]>"; the hour holds ':' too
        try:
            out[parse_hour(hour)] = sha
        except (ValueError, TypeError):
            return every
    return out


def _all_versions(client: Any, name: str) -> list[Any]:
    found, token = [], None
    while True:
        page = client.search_model_versions(f"name = {tracking.quote(name)}", page_token=token)
        found += list(page)
        token = getattr(page, "token", None)
        if not token:
            return found


def of(settings: Settings, version: str) -> Lineage:
    """The lineage of `version` (see the module docstring), read from the registry's tags."""
    client = tracking.configure(settings)
    versions = {str(v.version): v for v in _all_versions(client, settings.model_name)}
    chain: list[str] = []
    hours: dict[datetime, Trained] = {}
    through: datetime | None = None
    current: str | None = str(version)
    while current is not None and current in versions and current not in chain:
        mv = versions[current]
        chain.append(current)
        tags = dict(mv.tags or {})
        interval = _interval(tags)
        root = _is_root(tags, interval)
        if interval is not None:
            through = interval[1] if through is None else max(through, interval[1])
            if root and interval[1] - interval[0] > HOUR:
                trained = _window_hours(client, mv.run_id, interval)
            else:
                trained = {interval[0]: tags.get("partition_sha256", "")}
            for hour, sha in trained.items():
                hours.setdefault(hour, Trained(current, sha))  # the latest version that trained on it
        current = None if root else tags.get("parent_version")
    return Lineage(str(version), tuple(chain), hours, through)


@dataclass(frozen=True)
class AlreadyTrained:
    """Why an hour is not trained on: a lineage already trained on it as a fresh hour."""

    message: str  # what the skipped hour says, to a person
    champion: str | None  # the champion then
    trained_by: str  # the version of the lineage that trained on the hour
    trained_through: str  # the end of what that lineage trained on (ISO hour; "?" when unknown)


def already_trained(settings: Settings, start: datetime, champion: str | None, sha256: str, *,
                    start_version: str | None = None) -> AlreadyTrained | None:
    """Why the hour is not trained on, when the champion's lineage already trained on it as a fresh
    hour: a re-run or backfill of an hour the champion learnt, an hour of the window it was
    bootstrapped on, or (`start_version`, a drift episode's shadow chain) of the model the update
    would start from. Training overrides do not change that: an hour is never trained into the
    champion twice; a full retrain (`incremental bootstrap`) retrains old hours. Rows that reached
    the hour since (late or re-admitted rows: a new partition identity) are not trained as an update
    of their own either; they reach the champion through the replay of the hours after it and
    through a full retrain. None: no such lineage trained on the hour."""
    for version, whose in ((champion, "champion"), (start_version, "the drift episode's shadow chain at")):
        if version is None or (whose != "champion" and version == champion):
            continue
        found = of(settings, version)
        trained = found.trained(start)
        if trained is None:
            continue
        through = iso_hour(found.trained_through) if found.trained_through else "?"
        by = "" if trained.version == str(version) else f", by its ancestor v{trained.version}"
        changed = ("" if trained.same_data(sha256) else "; rows that reached the hour since (late or re-admitted) "
                   "are not trained as an update of their own: the replay of later hours and a full retrain use them")
        message = (f"hour {iso_hour(start)} is already in {whose} v{version}'s training data (trained through "
                   f"{through}{by}): not trained again{changed}; a full retrain (incremental bootstrap --start ... "
                   "--end ...) retrains old hours")
        return AlreadyTrained(message, champion, trained.version, through)
    return None


@dataclass(frozen=True)
class LiveVersions:
    """The registered versions whose training rows the lake keeps (`incremental maintain-lake`):
    the champion and its chain of parents, and the `recent` latest versions (a rollback's candidates)."""

    versions: tuple[str, ...]
    oldest_table_version: int | None  # the oldest lake table version their lineage records (None: none does)


def live_versions(settings: Settings, recent: int) -> LiveVersions:
    """The live versions and the oldest table version their hours were read at (their
    `lake_table_version` tag: the version their first fresh hour was read at, the oldest of theirs)."""
    client = tracking.configure(settings)
    found = {str(v.version): v for v in _all_versions(client, settings.model_name)}
    champion = tracking.champion_version(client, settings.model_name)
    live = set(of(settings, champion).chain) if champion is not None else set()
    live |= set(sorted(found, key=int)[-recent:] if recent > 0 else [])
    tagged = [(found[v].tags or {}).get("lake_table_version", "") for v in live if v in found]
    numbers = [int(t) for t in tagged if str(t).isdigit()]
    return LiveVersions(tuple(sorted(live, key=int)), min(numbers) if numbers else None)
