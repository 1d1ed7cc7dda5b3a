"""Local file locks, through one library: `filelock` (an exclusive `flock` on Linux, so the kernel
drops a lock with the process that held it, however it ended).

Every local lock of the package is `hold(path, timeout)`: the DuckDB file's (`<file>.lock`), the
local lake's (`<lake>/_locks/<name>.lock`), the MLflow SQLite store's first use
(`mlflow.db.lock`) and each training update's (`<checkpoints>/<key>.lock`). A wait longer than
`NOTICE_S` says so on the progress log, naming the lock file and its holder; a wait past
`timeout` raises `LockTimeout`, one line naming both.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from incremental.errors import IncrementalError

log = logging.getLogger("incremental.progress")  # shown by the CLI and in task logs
NOTICE_S = 2.0  # a wait longer than this is worth a line


class LockTimeout(IncrementalError, TimeoutError):
    """Another process (or worker) held a lock longer than we were willing to wait. Trying again
    later may work."""

    retryable = True

    def __init__(self, message: str, *, path: Path | str | None = None, holder: str | None = None) -> None:
        super().__init__(message)
        self.path, self.holder = path, holder


def holder(path: Path | str) -> str | None:
    """Who holds the `flock` on `path`, as the kernel reports it in /proc/locks (Linux): "pid N
    (its command line)"; None when it cannot tell (another OS, another machine, no holder)."""
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            table = f.read().splitlines()
    except OSError:
        return None
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = [parts[4] for parts in map(str.split, table)  # "1: FLOCK  ADVISORY  WRITE <pid> <maj:min:inode> 0 EOF"
            if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == ident]
    if not pids or pids[0] in ("0", "-1"):
        return None
    try:
        with open(f"/proc/{pids[0]}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    return f"pid {pids[0]} ({command[:160]})" if command else f"pid {pids[0]}"


@contextlib.contextmanager
def hold(path: Path, timeout: float | None = None, *, what: str = "lock") -> Iterator[None]:
    """An exclusive lock on the file `path` (created, with its folder, if missing; it stays after
    release), waiting at most `timeout` seconds (None: as long as it takes). Not re-entrant: the
    same thread taking it again waits for itself (filelock refuses that at once when it would wait
    forever)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, fallback_to_soft=False)  # no flock (NFS without locks): an error, never a soft lock a kill leaves behind
    started = time.monotonic()
    first = NOTICE_S if timeout is None else min(NOTICE_S, timeout)
    try:
        lock.acquire(timeout=first)
    except Timeout:
        if timeout is not None and timeout <= first:
            raise _timeout(path, timeout, what) from None
        log.info("waiting for %s, held by %s", path, holder(path) or "another process")
        left = -1 if timeout is None else max(timeout - (time.monotonic() - started), 0.0)
        try:
            lock.acquire(timeout=left)
        except Timeout:
            raise _timeout(path, timeout, what) from None
    try:
        yield
    finally:
        lock.release()


def _timeout(path: Path, timeout: float | None, what: str) -> LockTimeout:
    who = holder(path)
    return LockTimeout(f"{what} {path} held by {who or 'another process'} for more than {timeout:g} s",
                       path=path, holder=who)
