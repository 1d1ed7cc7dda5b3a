"""`incremental history`'s mode column: the kind of training beside the mode, once."""

from __future__ import annotations

from types import SimpleNamespace

from incremental.registry.history import _history_row


def mode(**tags: str) -> str:
    return _history_row(SimpleNamespace(version="1", tags=tags), None)["mode"]  # type: ignore[arg-type]


def test_the_mode_names_the_kind_only_when_it_adds_something() -> None:
    assert mode(mode="normal", kind="hourly") == "normal"
    assert mode(mode="adapt", kind="catch_up") == "adapt (catch_up)"
    assert mode(mode="full_retrain", kind="full_retrain") == "full_retrain"  # a trial saw "full_retrain (full_retrain)"
    assert mode() == "normal"
