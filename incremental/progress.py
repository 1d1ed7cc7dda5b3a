"""Progress of long work, as log lines a person can watch: done / total, rate, time left.

One line at most every `every_s` seconds, and a last one when the work ends (for short work,
only if it printed before: scoring a few hundred rows says nothing). The logger is
`incremental.progress`, which the CLI shows even without --verbose; Airflow's task logs show it.
"""

from __future__ import annotations

import logging
import math
import time

log = logging.getLogger("incremental.progress")
EVERY_S = 15.0


def duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    def __init__(self, label: str, total: int, *, unit: str = "steps", done: int = 0, every_s: float = EVERY_S,
                 always_final: bool = True) -> None:
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.first, self.started = done, time.perf_counter()
        self.last_report, self.reported, self.always_final = self.started, False, always_final

    def update(self, done: int, detail: str = "") -> None:
        now = time.perf_counter()
        if now - self.last_report >= self.every_s:
            self._line(done, detail, now, final=False)

    def finish(self, done: int, detail: str = "") -> None:
        if self.reported or self.always_final:
            self._line(done, detail, time.perf_counter(), final=True)

    def _line(self, done: int, detail: str, now: float, *, final: bool) -> None:
        self.last_report, self.reported = now, True
        elapsed, moved = now - self.started, done - self.first
        rate = moved / elapsed if elapsed > 0 else math.nan
        left = (self.total - done) / rate if rate > 0 else math.nan
        share = 100 * done // max(self.total, 1)
        tail = "done" if final else f"about {duration(left)} left"
        extra = f" | {detail}" if detail else ""
        log.info("%s: %d/%d %s (%d%%) | %.1f %s/s%s | %s", self.label, done, self.total, self.unit, share, rate,
                 self.unit, extra, tail)
