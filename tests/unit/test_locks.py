"""The local locks (`incremental.locks`, filelock): a wait says who it waits for, a timeout is one
line naming the lock file and its holder, and the lake lock stays re-entrant within a thread only."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from incremental import locks
from incremental.data import lake_lock
from incremental.errors import IncrementalError


def test_a_timeout_names_the_lock_file_and_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "_locks" / "registry.lock"
    path.parent.mkdir()
    with open(path, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another holder: its own open file
        started = time.monotonic()
        with pytest.raises(lake_lock.LockTimeout) as caught:
            with lake_lock.lock(tmp_path, "registry", timeout=0.3):
                pass
        assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith(f"lake lock {path} held by pid {os.getpid()} (") and message.endswith("for more than 0.3 s")
    # the CLI prints it as one line (an IncrementalError), and it is still a TimeoutError
    assert isinstance(caught.value, IncrementalError) and isinstance(caught.value, TimeoutError)
    assert caught.value.retryable
    with lake_lock.lock(tmp_path, "registry", timeout=0.3):  # released (as a killed holder's is): taken at once
        pass
    assert path.exists()  # the file stays, so every waiter locks the same inode


def test_a_long_wait_says_what_it_waits_for(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="incremental.progress")
    monkeypatch.setattr(locks, "NOTICE_S", 0.1)
    path = tmp_path / "x.lock"
    with open(path, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        threading.Timer(0.5, fcntl.flock, (held, fcntl.LOCK_UN)).start()
        with locks.hold(path, timeout=30):
            pass
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"waiting for {path}, held by pid {os.getpid()}")


def test_the_lake_lock_is_reentrant_in_a_thread_and_excludes_other_threads(tmp_path: Path) -> None:
    got: list[str] = []

    def other() -> None:
        try:
            with lake_lock.lock(tmp_path, "drift", timeout=0.2):
                got.append("taken")
        except lake_lock.LockTimeout:
            got.append("timed out")

    with lake_lock.lock(tmp_path, "drift", timeout=1), lake_lock.lock(tmp_path, "drift", timeout=1):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert got == ["timed out"]
    other()
    assert got == ["timed out", "taken"]
