"""The command line prints no warnings on a fresh home (issue 12, item 6).

MLflow 3 checks `PythonModel.predict`'s type hints when a subclass is defined (its
`__init_subclass__`, through `mlflow.pyfunc.utils.data_validation`) and warns "Add type hints to
the `predict` method" when the model input has none: `RankerPyfunc.predict` takes
`model_input: pd.DataFrame`, a hint MLflow accepts without inferring a schema from it (the schema
is `model.signature()`). Warnings are shown here whatever the defaults (`PYTHONWARNINGS=always`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO, cli, cli_env

EVERY_HELP = r"""
import argparse, contextlib, io, json, os, sys
for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "GX_ANALYTICS_ENABLED", "TQDM_DISABLE",
             "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
    os.environ.pop(name, None)  # what the package used to set on import, when the caller had not
changed = {}  # variables written by the package's own code (libraries set some of their own, lazily)

class Watched(type(os.environ)):
    def _note(self, key, value):
        frame = sys._getframe(2)
        while frame.f_code.co_filename.endswith(("os.py", "_collections_abc.py", "os>", "_collections_abc>")):
            frame = frame.f_back
        if "/incremental/" in frame.f_code.co_filename:
            changed[key] = f"{value} ({frame.f_code.co_filename}:{frame.f_lineno})"
    def __setitem__(self, key, value):
        self._note(key, value)
        super().__setitem__(key, value)
    def __delitem__(self, key):
        self._note(key, None)
        super().__delitem__(key)

os.environ.__class__ = Watched
import transformers
verbosity = transformers.logging.get_verbosity()
import incremental.judge.evaluate, incremental.model.ranker, incremental.serving.server, incremental.model.update  # what the commands import
import incremental.pipeline, incremental.registry.tracking, incremental.validation.gx_suite
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
print(json.dumps({"environment": changed, "transformers_verbosity": transformers.logging.get_verbosity() == verbosity}))
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


def test_every_command_help_and_the_package_imports_print_no_warning_and_change_nothing(fresh_home: Path) -> None:
    fresh_home.mkdir(parents=True)
    result = _python(fresh_home, EVERY_HELP)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[0]) >= 15  # every command was asked for its help
    assert "warning" not in result.stderr.lower(), result.stderr[-3000:]
    # and importing the package changed nothing: no environment variable, no library's verbosity
    # (the process's edge sets them: incremental.runtime.prepare_process)
    assert json.loads(result.stdout.splitlines()[-1]) == {"environment": {}, "transformers_verbosity": True}


def test_the_check_would_see_mlflows_type_hint_warning(fresh_home: Path) -> None:
    """The same capture shows MLflow's warning for a predict without type hints: the tests above
    pass because the cause is gone, not because the warning is hidden."""
    fresh_home.mkdir(parents=True)
    result = _python(fresh_home, UNHINTED)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Add type hints to the `predict` method" in result.stderr
