"""State that cannot lie about the registry (issue 20, defects 2 and 10), on a real SQLite MLflow.

- A recreated registry numbers its versions from 1 again: the local copy of the old version 1
  (and its cached anchor scores) must never be taken for the new one.
- A 0-byte or damaged `mlflow.db` is refused with one line naming it, not silently turned into
  a new empty registry (the way into the first case).
- `promote` / `rollback` to a version whose artifacts are gone is refused before the alias moves.

The versions are registered by a child process (a fresh MLflow per registry, as a worker has):
a ranker pyfunc whose `model_dir` holds a config.json with a marker and a weights file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, assert_clean_error, assert_ok, cli, cli_env, mlflow_state

REGISTER = """
import json, sys, tempfile, pathlib, mlflow
from incremental.registry import tracking
from incremental.config import load_settings

class Ranker(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [0.5] * len(model_input)

settings = load_settings()
client = tracking.configure(settings)
tracking.get_or_create_experiment(settings)
mlflow.set_experiment(tracking.UPDATES_EXPERIMENT)
out = {}
for marker in sys.argv[1:]:
    folder = pathlib.Path(tempfile.mkdtemp()) / "model_dir"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"marker": marker}))
    (folder / "model.safetensors").write_bytes(marker.encode() * 100)
    with mlflow.start_run() as run:
        mlflow.pyfunc.log_model(name="model", python_model=Ranker(), artifacts={"model_dir": str(folder)},
                                pip_requirements=["mlflow"])
    version = str(mlflow.register_model(f"runs:/{run.info.run_id}/model", settings.model_name).version)
    cached = tracking.version_model_dir(settings, version)
    out[marker] = {"version": version, "cached": json.loads((cached / "config.json").read_text())["marker"],
                   "key": getattr(tracking, "version_key", lambda s, v: v)(settings, version),
                   "artifacts": client.get_model_version_download_uri(settings.model_name, version)}
print(json.dumps(out))
"""


def register(home: Path, *markers: str) -> dict[str, dict[str, str]]:
    """Register one version per marker; each is read back at once through the local cache."""
    out = subprocess.run([sys.executable, "-c", REGISTER, *markers], env=cli_env(home), capture_output=True,
                         text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_recreated_registry_never_serves_the_old_weights(fresh_home: Path) -> None:
    old = register(fresh_home, "old-weights")["old-weights"]
    assert old == {**old, "version": "1", "cached": "old-weights"}
    cached = sorted(p.name for p in (fresh_home / "models" / "search-ranker").iterdir())

    # the registry is reset (database and artifacts); the local caches and the lake are not
    (fresh_home / "mlflow.db").unlink()
    shutil.rmtree(fresh_home / "mlartifacts")
    new = register(fresh_home, "new-weights")["new-weights"]
    assert new["version"] == "1"
    assert new["cached"] == "new-weights", "the old version 1's weights were served for the new version 1"
    assert new["key"] != old["key"]  # the anchor-score cache key (score_cache.cached_scores) differs too
    assert cached[0] in {p.name for p in (fresh_home / "models" / "search-ranker").iterdir()}  # old copy untouched


def test_a_changed_local_copy_is_downloaded_again(fresh_home: Path) -> None:
    register(fresh_home, "weights")
    [copy] = [p for p in (fresh_home / "models" / "search-ranker").iterdir() if not p.name.startswith(".")]
    (copy / "model.safetensors").write_bytes(b"tampered")
    code = ("from incremental.registry import tracking; from incremental.config import load_settings; "
            "print(open(tracking.version_model_dir(load_settings(), '1') / 'model.safetensors', 'rb').read()[:7])")
    out = subprocess.run([sys.executable, "-c", code], env=cli_env(fresh_home), capture_output=True, text=True,
                         timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("b'weights'"), out.stdout


def test_a_second_download_never_removes_a_complete_copy(fresh_home: Path) -> None:
    # two processes miss the cache at once (first use of a version): the one that finishes second
    # keeps the first one's complete copy, which a scorer may be reading, instead of removing it
    register(fresh_home, "weights")
    code = ("import os; from incremental.registry import tracking; from incremental.config import load_settings\n"
            "s = load_settings(); d = tracking.version_model_dir(s, '1'); before = os.stat(d).st_ino\n"
            "real, calls = tracking._cached, []\n"
            "def once(cache, identity):\n"
            "    calls.append(1)\n"
            "    return False if len(calls) == 1 else real(cache, identity)\n"
            "tracking._cached = once\n"
            "again = tracking.version_model_dir(s, '1')\n"
            "print(again == d, os.stat(again).st_ino == before, (again / 'config.json').is_file())")
    out = subprocess.run([sys.executable, "-c", code], env=cli_env(fresh_home), capture_output=True, text=True,
                         timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["True", "True", "True"], out.stdout


@pytest.mark.parametrize("content", [b"", b"not a database at all\n" * 4], ids=["empty", "garbage"])
def test_a_registry_file_that_is_not_a_database_is_refused(fresh_home: Path, content: bytes) -> None:
    fresh_home.mkdir(parents=True)
    db = fresh_home / "mlflow.db"
    db.write_bytes(content)
    line = assert_clean_error(cli(cli_env(fresh_home), "history", timeout=300), str(db))
    assert "empty (0 bytes)" in line if not content else "not an SQLite database" in line
    assert db.read_bytes() == content  # left as it was: not turned into a new registry


def test_promote_and_rollback_refuse_a_version_whose_artifacts_are_gone(fresh_home: Path) -> None:
    versions = register(fresh_home, "one", "two", "three")
    env = cli_env(fresh_home)
    assert_ok(cli(env, "promote", "--version", "1", "--reason", "the first reviewed model", timeout=300))
    shutil.rmtree(versions["two"]["artifacts"].removeprefix("file://"))  # every artifact of version 2
    (Path(versions["three"]["artifacts"].removeprefix("file://")) / "artifacts" / "model_dir"
     / "model.safetensors").unlink()  # only the weights of version 3

    for args in (["promote", "--version", "2", "--reason", "reviewed: better on the anchor"],
                 ["rollback", "--to", "2", "--reason", "back to the one before"],
                 ["promote", "--version", "3", "--reason", "reviewed: better on the anchor"]):
        version = args[args.index("--version" if "--version" in args else "--to") + 1]
        line = assert_clean_error(cli(env, *args, timeout=300), f"version {version} cannot be loaded",
                                  "champion was not moved")
        if version == "3":
            assert "model.safetensors" in line
    assert mlflow_state(fresh_home)["champion"] == "1"
