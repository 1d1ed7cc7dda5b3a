"""The Delta table's log as this project checks and reads it, beside what `deltalake` does with it.

delta-rs reads a commit file that was emptied (truncated, or overwritten with nothing) as a commit
of nothing: replaying the log skips it without a word, so the rows that commit added vanish from
every later version and the rows it removed come back, and `DeltaTable.history()` numbers the
commits after it wrongly (it counts them). A damaged *latest* commit shows as an empty
``history(1)``; one further back shows nowhere. `check` lists ``_delta_log/`` (one listing) and
refuses a version whose replay would pass over a commit file that is gone or holds no action,
so every hour's state, and every older version a lineage travels back to, is read whole or not at
all. The check is made once per table version and process (a version never changes).
"""

from __future__ import annotations

import json
import re
from typing import Any, Required, TypedDict, cast

import pyarrow.fs as pafs
from deltalake import DeltaTable

from incremental.data import storage
from incremental.data.storage import LakePath
from incremental.errors import DamagedStateError

LOG_DIR = "_delta_log"
_COMMIT = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(\.\d+\.\d+)?\.parquet$")


class Commit(TypedDict, total=False):
    """A commit as `history` reads it: its ``commitInfo`` and its ``version``. Of the ``commitInfo``,
    the keys this project reads: delta-rs's ``timestamp`` (ms) and ``operation``, and the custom
    metadata its commits carry (`incremental.data.table`: every value a string; a non-string one
    is JSON). Other keys delta-rs writes pass through, unread."""

    version: Required[int]
    timestamp: int  # ms since the epoch
    operation: str
    event: str  # what the commit did: the ``event`` of `table.append` / `overwrite_hour` ("readmit", ...)
    hour: str  # the hour's partition value
    status: str
    reason: str
    sources: str  # a re-admission: the quarantine folders it took rows from (a JSON list)
    report: str  # `lake.REPORT_KEY`
    staged_sha256: str  # `lake.STAGED_KEY`
    validation_record: str  # `lake.RECORD_KEY`


_CHECKED: set[tuple[str, int]] = set()  # (table, version) whose log was found whole
_HISTORY: dict[str, dict[int, Commit]] = {}  # table -> version -> its commit: a version never changes
_LISTED: dict[tuple[str, int], list[Commit]] = {}  # (table, version) -> `history`


def _holds_nothing(log: LakePath, name: str, size: int) -> bool:
    """A commit file with no action in it: empty, or (a small one) only white space."""
    if size == 0:
        return True
    return size < 64 and not storage.read_bytes(log / name).strip()


def _listing(table: LakePath) -> tuple[dict[int, tuple[str, int]], set[int]]:
    """The log's commit files (version -> name, size) and checkpoint versions: one listing."""
    fs, where = storage.locate(table / LOG_DIR)
    commits: dict[int, tuple[str, int]] = {}
    checkpoints: set[int] = set()
    for info in fs.get_file_info(pafs.FileSelector(where, allow_not_found=True)):
        if found := _COMMIT.match(info.base_name):
            commits[int(found.group(1))] = (info.base_name, int(info.size or 0))
        elif found := _CHECKPOINT.match(info.base_name):
            checkpoints.add(int(found.group(1)))
    return commits, checkpoints


def check(table: LakePath, dt: DeltaTable) -> None:
    """`DamagedStateError` naming the first commit file `dt`'s version replays over that is gone or
    empty (from the newest checkpoint at or before it; the older commits are kept for time travel,
    and checked as far back as the log still holds them)."""
    key = (dt.table_uri, dt.version())
    if key in _CHECKED:
        return
    log = table / LOG_DIR
    commits, checkpoints = _listing(table)
    version = dt.version()
    held = [v for v in commits if v <= version]
    first = min(held, default=version)
    for v in range(first, version + 1):
        if v in commits and not _holds_nothing(log, *commits[v]):
            continue
        if v not in commits and any(c >= v for c in checkpoints if c <= version):
            continue  # cleaned up behind a checkpoint that holds its state
        what = "is gone" if v not in commits else "records nothing (emptied?)"
        raise DamagedStateError(f"{table} is damaged: its commit {v} (_delta_log/{v:020d}.json) {what}; "
                                f"version {version} and every later one would be read without it: restore it "
                                "from a backup")
    _CHECKED.add(key)


def history(table: LakePath, dt: DeltaTable) -> list[Commit]:
    """The commits of the table up to `dt`'s version that the log still holds, oldest first: each
    commit's ``commitInfo`` (timestamp, operation, the custom metadata: event, hour, ...) and its
    ``version``. Read from the commit files, not `DeltaTable.history()`, which numbers the commits
    by counting back from the version it was opened at: wrong for an older version."""
    key = (dt.table_uri, dt.version())
    if key in _LISTED:
        return _LISTED[key]
    commits, _ = _listing(table)
    cached = _HISTORY.setdefault(dt.table_uri, {})
    out = []
    for v in sorted(c for c in commits if c <= dt.version()):
        if v not in cached:
            info: dict[str, Any] = {}
            for line in storage.read_bytes(table / LOG_DIR / commits[v][0]).splitlines():
                action = json.loads(line) if line.strip() else {}
                info = action.get("commitInfo", info)
            cached[v] = cast(Commit, {**info, "version": v})
        out.append(cached[v])
    while len(_LISTED) >= 16:
        _LISTED.pop(next(iter(_LISTED)))
    _LISTED[key] = out
    return out
