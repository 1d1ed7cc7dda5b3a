"""The command line prints no warnings on a fresh home (issue 12, item 6).

MLflow 3 checks `PythonModel.predict`'s type hints when a subclass is defined (its
`__init_subclass__`, through `mlflow.pyfunc.utils.data_validation`) and warns "Add type hints to
the `predict` method" when the model input has none: `RankerPyfunc.predict` takes
`model_input: pd.DataFrame`, a hint MLflow accepts without inferring a schema from it (the schema
is `model.signature()`). Warnings are shown here whatever the defaults (`PYTHONWARNINGS=always`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO, cli, cli_env

EVERY_HELP = r"""
import argparse, contextlib, io
import incremental.evaluate, incremental.model, incremental.serve, incremental.train  # what the commands import
from incremental.cli import build_parser, main

def commands(parser, path=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path
    for action in subs:
        for name, child in action.choices.items():
            yield from commands(child, (*path, name))

paths = list(commands(build_parser()))
for path in paths:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main([*path, "--help"])
        except SystemExit:
            pass
print(len(paths), "commands")
"""

UNHINTED = r"""
import mlflow.pyfunc

class Unhinted(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input
"""


def _python(home: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(home, PYTHONWARNINGS="always", HOME=str(home))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600,
                          cwd=REPO)


def test_validate_help_prints_no_warning(fresh_home: Path) -> None:
    result = cli(cli_env(fresh_home, PYTHONWARNINGS="always", HOME=str(fresh_home)), "validate", "--help")
    assert result.returncode == 0 and "--start" in result.stdout, result.stderr
    assert result.stderr == "", result.stderr


def test_every_command_help_and_the_model_imports_print_no_warning(fresh_home: Path) -> None:
    fresh_home.mkdir(parents=True)
    result = _python(fresh_home, EVERY_HELP)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[0]) >= 15  # every command was asked for its help
    assert "warning" not in result.stderr.lower(), result.stderr[-3000:]


def test_the_check_would_see_mlflows_type_hint_warning(fresh_home: Path) -> None:
    """The same capture shows MLflow's warning for a predict without type hints: the tests above
    pass because the cause is gone, not because the warning is hidden."""
    fresh_home.mkdir(parents=True)
    result = _python(fresh_home, UNHINTED)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Add type hints to the `predict` method" in result.stderr
