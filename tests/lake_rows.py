"""Rows of the search-log contract for tests of the lake's table, and a home on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from incremental.config import Settings, load_settings
from incremental.data import lake


def rows(prefix: str, n: int) -> pa.Table:
    """`n` rows with unique event ids (`prefix`-i) over 7 sessions; every other column null."""
    base = {f.name: pa.nulls(n, f.type) for f in lake.SEARCH_LOG_SCHEMA}
    base["event_id"] = pa.array([f"{prefix}-{i}" for i in range(n)])
    base["session_id"] = pa.array([f"s{i % 7}" for i in range(n)])
    return pa.table(base, schema=lake.SEARCH_LOG_SCHEMA)


def tiny_home(tmp_path: Path) -> Settings:
    return load_settings({"INCREMENTAL_HOME": str(tmp_path / "var"), "INCREMENTAL_BASE_MODEL": "tiny"})
