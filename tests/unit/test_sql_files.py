"""SQL files are split into statements by sqlparse, not by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from incremental.data import warehouse


def test_statements_keep_semicolons_and_dashes_inside_literals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mixed.sql").write_text(
        "-- a file comment; with a semicolon\n"
        "UPDATE t SET note = 'a;b -- not a comment' WHERE id = :id;  -- trailing comment\n"
        "\n"
        "DELETE FROM t WHERE note = ';';\n"
    )
    monkeypatch.setattr(warehouse, "SQL_DIR", tmp_path)
    assert warehouse.sql_statements("mixed") == [
        "UPDATE t SET note = 'a;b -- not a comment' WHERE id = :id",
        "DELETE FROM t WHERE note = ';'",
    ]


def test_the_shipped_schema_has_its_three_statements() -> None:
    statements = warehouse.sql_statements("schema")
    assert len(statements) == 3 and all(s.startswith("CREATE") and not s.endswith(";") for s in statements)
