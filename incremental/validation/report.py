"""What a validation says: the severities, a `Check` (one rule's outcome) and a `ValidationReport`.

Every check has a rule name (the GX expectation type where GX evaluates it), a column, a severity
("critical" quarantines the hour, "rows" quarantines the failing rows, "warning" is recorded
only), and how many rows failed. See `incremental.validation.frame` for the rules
and `incremental.validation.validate` for what follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from incremental.data.storage import LakePath
from incremental.errors import IncrementalError
from incremental.hours import Hour

CRITICAL = "critical"
WARNING = "warning"
ROWS = "rows"  # the failing rows are quarantined, the hour goes on

FIRST = "first extraction"  # what a report names when it validated an hour's first rows
DRIFT_RULES = ("drift_row_count", "drift_ctr", "drift_category_mix")


class ValidationError(IncrementalError, RuntimeError):
    """The hour cannot be validated at all (no live partition)."""


class CheckRecord(TypedDict):
    """A `Check` in the hour's validation record (`_validation.json`) and its quarantine record."""

    rule: str
    column: str | None
    severity: str
    success: bool
    unexpected: int | None
    message: str


@dataclass(frozen=True)
class Check:
    rule: str
    column: str | None
    severity: str  # "critical" | "warning"
    success: bool
    unexpected: int | None  # rows that failed, where the rule counts rows
    message: str

    @property
    def name(self) -> str:
        return f"{self.rule}({self.column})" if self.column else self.rule

    def as_dict(self) -> CheckRecord:
        return {
            "rule": self.rule,
            "column": self.column,
            "severity": self.severity,
            "success": self.success,
            "unexpected": self.unexpected,
            "message": self.message,
        }


@dataclass(frozen=True)
class ValidationReport:
    start: Hour
    status: str  # "validated" | "quarantined"
    rows: int  # the rows this validation looked at
    checks: tuple[Check, ...]
    path: LakePath  # the hour's records folder (validated) or its quarantine folder
    data_docs: LakePath | None  # index.html of the GX data docs site (quarantined hour or rows)
    quarantined_rows: int = 0  # rows moved to quarantine while the hour was validated
    rows_path: LakePath | None = None  # where those rows went
    part: str | None = None  # what was validated now (`FIRST`, later rows; None: nothing was pending)
    live_rows: int | None = None  # rows of the hour's validated view afterwards
    hour_validated: bool = False  # quarantined: only these rows went; the hour keeps its validated rows

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.success and c.severity == CRITICAL)

    @property
    def warnings(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.success and c.severity == WARNING)

    @property
    def row_failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.success and c.severity == ROWS)

    def summary(self) -> str:
        hour = self.start
        failures, warns = self.failures, self.warnings
        what = self.part if self.part and self.part != FIRST else None
        if self.status == "quarantined" and self.hour_validated:
            head = f"hour {hour}: {what or self.part} quarantined ({len(failures)} critical"
            head += f", {len(warns)} warning" + ("s" if len(warns) != 1 else "") if warns else ""
            head += f"): {self.rows} rows quarantined (report: {self.path}); the hour stays validated with its earlier rows"
        elif self.status == "quarantined":
            head = f"hour {hour} quarantined ({len(failures)} critical"
            head += f", {len(warns)} warning" + ("s" if len(warns) != 1 else "") if warns else ""
            head += f"): {self.rows} rows" + (f" of {what}" if what else "") + f" quarantined (report: {self.path})"
        else:
            head = f"hour {hour} validated: {self.rows} rows" + (f" ({what})" if what else "")
            if self.quarantined_rows:
                head += (f", {self.quarantined_rows} bad row{'s' if self.quarantined_rows != 1 else ''}"
                         f" quarantined (report: {self.rows_path})")
            head += f", {len(warns)} warning" + ("s" if len(warns) != 1 else "") if warns else ""
            if self.part is None:
                head += " (already validated; nothing new)"
        lines = [head]
        lines += [f"  critical: {c.message}" for c in failures]
        lines += [f"  rows: {c.message}" for c in self.row_failures]
        lines += [f"  warning: {c.message}" for c in warns]
        lines += [
            f"  note: {c.message}"
            for c in self.checks
            if c.success and c.message.startswith(tuple(f"{r}: skipped" for r in DRIFT_RULES))
        ]
        if self.data_docs is not None:
            lines.append(f"  data docs: {self.data_docs}")
        return "\n".join(lines)
