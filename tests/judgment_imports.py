"""Shared by the judgment-import tests (tests/data/test_judgments.py, tests/reliability/test_imports.py):
the fixture CSV, its columns, and one import of it into a real warehouse."""

from __future__ import annotations

from datetime import UTC, timedelta
from pathlib import Path

from incremental.data.warehouse import Warehouse
from incremental.hours import Hour
from incremental.sim.judgments import import_judgments

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "judgments_small.csv"
T0 = Hour(2024, 5, 1, tzinfo=UTC)
H = timedelta(hours=1)
COLS = {"query_col": "search", "title_col": "product_name", "grade_col": "score"}


def import_fixture(warehouse: Warehouse, path: Path = FIXTURE, **overrides) -> dict:
    kwargs = {**COLS, "encoding": "latin-1", "start": T0, "rate": 10, "seed": 0, **overrides}
    return import_judgments(warehouse, path, **kwargs)
