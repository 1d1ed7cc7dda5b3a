"""Every option of every command says what it is for in `--help` (a trial found
`import-judgments --help` listing nine options and explaining none)."""

from __future__ import annotations

import argparse

from incremental.cli import build_parser


def _options(parser: argparse.ArgumentParser, prefix: str = "incremental"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{prefix} {name}")
        elif action.dest != "help":
            yield f"{prefix} {action.option_strings[0] if action.option_strings else action.dest}", action


def test_every_option_has_a_help_text() -> None:
    options = list(_options(build_parser()))
    assert len(options) > 40
    assert [name for name, action in options if not action.help] == []
