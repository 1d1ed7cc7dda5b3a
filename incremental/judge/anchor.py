"""The frozen anchor benchmark (the forgetting test set): freezing it, reading it, its record.

The anchor is a content-hashed, stratified sample of earlier *validated* hours. It stays fixed
so that every model is measured on the same rows; refreshing it is a deliberate act
(`incremental benchmark freeze --refresh --reason ...`) and leaves the previous anchor and its record behind.

Layout (under the lake root)::

    anchor_set/                       the rows (SEARCH_LOG_SCHEMA + source_hour), a Delta table of one file:
                                      a commit per freeze or refresh, replaced ones by time travel
    anchor/anchor.json                AnchorInfo: sha256 of the rows' file, the table version holding
                                      it, source hours and their partition sha256s, counts, ...
    anchor/history.jsonl              one line per replaced anchor (its anchor.json + when/why replaced)
    anchor/anchor.parquet, anchor-<sha12>.parquet   an anchor frozen before the table (and kept)
    anchor/scores/<sha12>/v<version>.npy   cached scores of a model version on that anchor
                                      (`incremental.judge.score_cache`)

The rows are a stratified sample by (source hour, category), chosen by `incremental.judge.strata`
from the rows alone (not their read order). The file is written in the sample's order
(source_hour, category, event_id) with deterministic Parquet settings, so the same inputs give
the same bytes and the same sha256 (for a given pyarrow version).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from incremental.data import files, storage
from incremental.data import lake as lk
from incremental.data.storage import LakePath
from incremental.errors import DamagedStateError, IncrementalError, InputError
from incremental.hours import Hour, hours, iso_hour, parse_hour
from incremental.judge import anchor_table
from incremental.judge.strata import NULL_CATEGORY, SOURCE_HOUR, sample

ANCHOR_DIR = "anchor"
ANCHOR_FILE = "anchor.parquet"
INFO_FILE = "anchor.json"
HISTORY_FILE = "history.jsonl"
ANCHOR_SCHEMA = lk.SEARCH_LOG_SCHEMA.append(pa.field(SOURCE_HOUR, pa.timestamp("us", tz="UTC")))


class AnchorError(IncrementalError, RuntimeError):
    """The anchor is missing, altered, or cannot be built from the window asked for."""


class AnchorExistsError(AnchorError):
    """An anchor is already frozen: refreshing it must be asked for (refresh=True)."""


@dataclass(frozen=True)
class AnchorInfo:
    """What anchor.json records about a frozen anchor."""

    sha256: str  # of the rows' Parquet file
    rows: int
    start: str  # the window [start, end) it was sampled from, ISO UTC
    end: str
    size: int  # rows asked for
    seed: int
    source_hours: dict[str, str]  # ISO hour -> sha256 of that partition's file
    per_hour: dict[str, int]  # ISO hour -> anchor rows
    per_category: dict[str, int]
    available_per_hour: dict[str, int]  # ISO hour -> validated rows it was sampled from
    skipped_hours: dict[str, str]  # ISO hour in the window -> status, for hours not validated
    created_at: str
    reason: str
    file: str = ANCHOR_FILE  # an anchor frozen before the table: its file in the anchor folder
    table_version: int | None = None  # the version of `anchor_set` that holds it (None: `file`)
    schema_version: int = lk.SCHEMA_VERSION
    previous_sha256: str | None = None
    # the forgetting budget: the champion when the anchor was frozen, and the categories it is held
    # to on them (None: every category); see `incremental.judge.gate`, ``anchor_cumulative_auc_drop``
    baseline_version: str | None = None
    protected_categories: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sha12(self) -> str:
        return self.sha256[:12]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> AnchorInfo:
        known = {f for f in cls.__dataclass_fields__}
        extra = {k: v for k, v in payload.items() if k not in known}
        args = {k: v for k, v in payload.items() if k in known}
        if extra:
            args["extra"] = {**args.get("extra", {}), **extra}
        return cls(**args)


def anchor_dir(lake: LakePath | str) -> LakePath:
    return storage.root(lake) / ANCHOR_DIR


def current(lake: LakePath) -> AnchorInfo | None:
    """The frozen anchor's record (not verified against the file), or None when there is none."""
    path = anchor_dir(lake) / INFO_FILE
    if not storage.is_file(path):
        return None
    payload = files.read_json(path)
    problem = _check_info(payload)
    if problem:
        raise DamagedStateError(f"{path} is damaged: {problem}")
    return AnchorInfo.from_dict(payload)


_INFO_TYPES: dict[str, tuple[type, ...]] = {
    "sha256": (str,), "rows": (int,), "start": (str,), "end": (str,), "size": (int,), "seed": (int,),
    "source_hours": (dict,), "per_hour": (dict,), "per_category": (dict,), "available_per_hour": (dict,),
    "skipped_hours": (dict,), "created_at": (str,), "reason": (str,),
}
_INFO_OPTIONAL: dict[str, tuple[type, ...]] = {
    "file": (str,), "table_version": (int, type(None)), "schema_version": (int,), "previous_sha256": (str, type(None)),
    "baseline_version": (str, type(None)), "protected_categories": (list, type(None)), "extra": (dict,),
}


def _check_info(payload: dict[str, Any]) -> str | None:
    """What is wrong with an anchor.json (None: nothing); unknown keys are kept (`extra`)."""
    missing = [k for k in _INFO_TYPES if k not in payload]
    if missing:
        return f"missing {', '.join(map(repr, missing))}"
    for key, types in {**_INFO_TYPES, **_INFO_OPTIONAL}.items():
        if key in payload and (not isinstance(payload[key], types) or isinstance(payload[key], bool)):
            return f"'{key}' has the wrong type: {payload[key]!r:.80}"
    if len(payload["sha256"]) != 64:
        return f"'sha256' must be a sha256 (64 hex digits), found {payload['sha256']!r:.80}"
    if "file" in payload and ("/" in payload["file"] or payload["file"].startswith(".")):
        return f"'file' must be a file name in the anchor folder, found {payload['file']!r:.80}"
    return None


# --------------------------------------------------------------------------- freeze


def freeze(
    lake: LakePath | str,
    start: datetime,
    end: datetime,
    size: int,
    seed: int = 0,
    reason: str = "",
    *,
    refresh: bool = False,
    now: datetime | None = None,
    holdout_fraction: float | None = None,
    carry: pa.Table | None = None,
    baseline_version: str | None = None,
    protected_categories: list[str] | None = None,
) -> AnchorInfo:
    """Sample the validated hours in [start, end) into a new frozen anchor.

    `carry`: rows kept in the new one besides the sample (at most `size`, sampled the same way): a
    drift episode keeps the stable slices' rows (the previous anchor's and earlier holdout sessions'),
    so what still holds is measured on what it was.

    `baseline_version` (the champion at the time) and `protected_categories` (None: all) set the
    cumulative forgetting budget: every later candidate is held, on those categories' anchor
    rows, to the baseline and not only to the champion it would replace.

    With `holdout_fraction` (the training setting), only rows of holdout sessions are sampled:
    the same session hash that keeps them out of every update and every replay sample, so no
    model is ever trained on an anchor row and forgetting is measured on unseen data.

    Raises `AnchorExistsError` when an anchor exists and `refresh` is false. With `refresh`,
    the previous anchor's file is kept as ``anchor-<sha12>.parquet`` and its record appended to
    ``history.jsonl`` (with ``replaced_at`` and the new anchor's reason) before the new one
    replaces it. Hours in the window that are not validated are skipped and listed.
    """
    lake = storage.root(lake)
    start, end = parse_hour(start), parse_hour(end)
    if end <= start:
        raise InputError("the anchor window [start, end) is empty")
    if size < 1:
        raise InputError("size must be at least 1")
    folder = anchor_dir(lake)
    previous = current(lake)
    if previous is not None and not refresh:
        raise AnchorExistsError(
            f"an anchor is already frozen ({previous.sha12}, {previous.rows} rows, {previous.created_at}):"
            " refreshing it changes every model's forgetting baseline; to do so deliberately run"
            " `incremental benchmark freeze --refresh --reason TEXT` (or the benchmark DAG with refresh on)"
        )
    chosen, table, parts, skipped = _choose_rows(lake, start, end, size, seed, holdout_fraction, carry)

    storage.mkdir(folder)
    data = files.parquet_bytes(chosen)  # deterministic: their sha256 names the anchor
    sha = hashlib.sha256(data).hexdigest()
    created = (now or datetime.now(UTC)).astimezone(UTC)
    version = anchor_table.commit(lake, data, chosen.num_rows, chosen.schema, {
        "event": "refresh" if previous is not None else "freeze", "sha256": sha, "reason": reason})

    info = AnchorInfo(
        sha256=sha,
        rows=chosen.num_rows,
        start=iso_hour(start),
        end=iso_hour(end),
        size=size,
        seed=seed,
        **_counts(chosen, table, parts),
        skipped_hours=skipped,
        created_at=created.isoformat().replace("+00:00", "Z"),
        reason=reason,
        table_version=version,
        previous_sha256=previous.sha256 if previous is not None else None,
        baseline_version=baseline_version,
        protected_categories=sorted(protected_categories) if protected_categories is not None else None,
    )

    if previous is not None:
        _archive(folder, previous, replaced_at=info.created_at, replaced_by=info)
    files.atomic_write_json(folder / INFO_FILE, info.to_dict())
    return info


def _choose_rows(lake: LakePath, start: Hour, end: Hour, size: int, seed: int,
                 holdout_fraction: float | None, carry: pa.Table | None
                 ) -> tuple[pa.Table, pa.Table, list[lk.Partition], dict[str, str]]:
    """The rows to freeze (the carried rows' sample, then the window's) and what they were chosen
    from: the window's rows, its validated partitions, and the hours it skipped."""
    table, parts, skipped = _read_window(lake, start, end)
    if holdout_fraction is not None:
        table = _holdout_rows(table, holdout_fraction, start, end)
    chosen = sample(table, size, seed)
    if carry is not None and carry.num_rows:
        kept = sample(carry.select(chosen.schema.names).cast(chosen.schema), size, seed)
        chosen = pa.concat_tables([kept, chosen])
    return chosen, table, parts, skipped


def _read_window(lake: LakePath, start: Hour, end: Hour) -> tuple[pa.Table, list[lk.Partition], dict[str, str]]:
    """The validated hours' rows with their source_hour, those hours' partitions, and the status of
    each hour skipped."""
    tables: list[pa.Table] = []
    used: list[lk.Partition] = []
    skipped: dict[str, str] = {}
    for hour in hours(start, end):
        part = lk.partition(lake, hour)
        if part.status != "validated":
            skipped[iso_hour(hour)] = part.status
            continue
        table = lk.read_partition(part).select(lk.SEARCH_LOG_SCHEMA.names).cast(lk.SEARCH_LOG_SCHEMA)
        source = pa.array(np.full(table.num_rows, np.datetime64(hour.replace(tzinfo=None), "us")),
                          type=pa.timestamp("us", tz="UTC"))
        tables.append(table.append_column(ANCHOR_SCHEMA.field(SOURCE_HOUR), source))
        used.append(part)
    if not used:
        raise AnchorError(f"no validated hour in [{iso_hour(start)}, {iso_hour(end)}): nothing to freeze")
    return pa.concat_tables(tables), used, skipped


class _Counts(TypedDict):
    source_hours: dict[str, str]
    per_hour: dict[str, int]
    per_category: dict[str, int]
    available_per_hour: dict[str, int]


def _counts(chosen: pa.Table, table: pa.Table, parts: list[lk.Partition]) -> _Counts:
    """What anchor.json counts: the source partitions' hashes, the rows per hour and per category
    chosen, and the rows per hour they were chosen from."""
    hours_col = pd.Series(chosen.column(SOURCE_HOUR).to_pandas())
    cats = chosen.column("category").to_pandas().fillna(NULL_CATEGORY).astype(str)
    available = pd.Series(table.column(SOURCE_HOUR).to_pandas()).value_counts()
    return {
        "source_hours": {iso_hour(p.start): p.manifest["sha256"] if p.manifest else "" for p in parts},
        "per_hour": {iso_hour(h.to_pydatetime()): int(n) for h, n in sorted(hours_col.value_counts().items())},
        "per_category": {str(c): int(n) for c, n in sorted(cats.value_counts().items())},
        "available_per_hour": {iso_hour(h.to_pydatetime()): int(n) for h, n in sorted(available.items())},
    }


def _holdout_rows(table: pa.Table, fraction: float, start: datetime, end: datetime) -> pa.Table:
    """The rows of holdout sessions: no model is ever trained on them (`replay.holdout_mask`)."""
    from incremental.model.replay import holdout_mask

    table = table.filter(pa.array(holdout_mask(table.column("session_id").to_pandas(), fraction)))
    if table.num_rows == 0:
        raise AnchorError(f"no holdout-session rows in [{iso_hour(start)}, {iso_hour(end)}): nothing to freeze")
    return table


def holdout_window(lake: LakePath | str, start: datetime, end: datetime, fraction: float,
                   categories: list[str]) -> pa.Table | None:
    """The holdout-session rows of `categories` in the validated hours of [start, end), with their
    source_hour (rows no model trained on), or None when there are none."""
    lake, start, end = storage.root(lake), parse_hour(start), parse_hour(end)
    if end <= start:
        return None
    try:
        table = _holdout_rows(_read_window(lake, start, end)[0], fraction, start, end)
    except AnchorError:
        return None
    keep = table.column("category").to_pandas().astype(str).isin(categories).to_numpy()
    table = table.filter(pa.array(keep))
    return table if table.num_rows else None


def _archive(folder: LakePath, previous: AnchorInfo, *, replaced_at: str, replaced_by: AnchorInfo) -> None:
    """Append the previous anchor's record to the history (one frozen before the table: its file kept under its hash)."""
    old_file = folder / ANCHOR_FILE
    actual = files.sha256_file(old_file) if previous.table_version is None and storage.is_file(old_file) else None
    kept = folder / f"anchor-{(actual or previous.sha256)[:12]}.parquet"  # named by what it holds
    if actual is not None and not storage.exists(kept):
        files.atomic_write_bytes(kept, storage.read_bytes(old_file))
    record = {
        **previous.to_dict(),
        "archived_file": kept.name if storage.exists(kept) else None,
        "archived_sha256": actual,
        "replaced_at": replaced_at,
        "replaced_by_sha256": replaced_by.sha256,
        "replaced_because": replaced_by.reason,
    }
    files.append_jsonl(folder / HISTORY_FILE, record)


# --------------------------------------------------------------------------- read and show


def history(lake: LakePath) -> list[dict[str, Any]]:
    """The records of replaced anchors, oldest first."""
    path = anchor_dir(lake) / HISTORY_FILE
    if not storage.is_file(path):
        return []
    return files.read_jsonl(path)


def load(lake: LakePath) -> tuple[pd.DataFrame, AnchorInfo]:
    """The anchor's rows and record, after checking the file's sha256 against the record."""
    info = current(lake)
    if info is None:
        raise AnchorError(f"no anchor is frozen under {anchor_dir(lake)}: `incremental bootstrap` freezes one with the first "
                          "model, or `incremental benchmark freeze --start ISO --end ISO --size N`")
    path, data = anchor_table.stored(lake, info.table_version, anchor_dir(lake) / info.file)
    if data is None:
        raise AnchorError(f"{path} is missing although {INFO_FILE} records anchor {info.sha12}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != info.sha256:
        raise AnchorError(f"{path} has sha256 {actual[:12]} but {INFO_FILE} records {info.sha12}: the anchor "
                          "changed after it was frozen (or a refresh was interrupted); refresh it deliberately")
    return pq.read_table(pa.BufferReader(data)).to_pandas(), info


def show(lake: LakePath) -> str:
    """A human-readable account of the anchor: hash, rows, per hour, per category, history."""
    info = current(lake)
    if info is None:
        return f"no anchor frozen under {anchor_dir(lake)}"
    lines = [
        f"anchor {info.sha256}",
        f"  rows {info.rows} (asked {info.size}, seed {info.seed}) from [{info.start}, {info.end})",
        f"  created {info.created_at}" + (f": {info.reason}" if info.reason else ""),
        f"  table {anchor_table.uri(lake)} version {info.table_version}" if info.table_version is not None
        else f"  file {anchor_dir(lake) / info.file}",
        f"  {budget_line(info)}",
        f"  per source hour ({len(info.per_hour)}):",
    ]
    for hour, n in info.per_hour.items():
        lines.append(f"    {hour}  {n:>6} of {info.available_per_hour.get(hour, 0):>7}"
                     f"  partition {info.source_hours.get(hour, '')[:12]}")
    if info.skipped_hours:
        lines.append(f"  skipped hours ({len(info.skipped_hours)}): "
                     + ", ".join(f"{h} {s}" for h, s in info.skipped_hours.items()))
    lines.append(f"  per category ({len(info.per_category)}):")
    width = max((len(c) for c in info.per_category), default=0)
    lines += [f"    {c:<{width}}  {n:>6}" for c, n in info.per_category.items()]
    past = history(lake)
    lines.append(f"  history ({len(past)} replaced):")
    for rec in past:
        lines.append(f"    {str(rec.get('sha256', ''))[:12]}  {rec.get('rows')} rows  created {rec.get('created_at')}"
                     f"  replaced {rec.get('replaced_at')} ({rec.get('replaced_because') or 'no reason given'})"
                     f"  kept as {rec.get('archived_file') or 'table version ' + str(rec.get('table_version'))}")
    return "\n".join(lines)


def budget_line(info: AnchorInfo) -> str:
    """The anchor's cumulative forgetting budget in words (`incremental.judge.gate`)."""
    if not info.baseline_version:
        return "forgetting budget: none (no champion when the anchor was frozen)"
    if info.protected_categories == []:
        return f"forgetting budget: none (no category was measured stable when version {info.baseline_version} served)"
    where = "every category" if info.protected_categories is None else ", ".join(info.protected_categories)
    return f"forgetting budget: candidates held to version {info.baseline_version} on {where}"
