"""One source of settings: the reviewed `incremental.yaml` and the code defaults agree, and the
settings never load without a reviewed file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import incremental.config as config
from incremental.config import DEFAULT_CONFIG_FILE, SettingsError, Tuning, load_settings, load_tuning


def _leaves(mapping: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_leaves(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def test_every_key_of_the_reviewed_file_is_the_code_default() -> None:
    reviewed = yaml.safe_load(DEFAULT_CONFIG_FILE.read_text())
    loaded = _leaves(load_tuning(DEFAULT_CONFIG_FILE).model_dump())  # the file's values, as the settings type them
    defaults = _leaves(Tuning().model_dump())
    keys = _leaves({k: v for k, v in reviewed.items() if k != "models"})  # per-model entries differ on purpose
    assert keys, f"{DEFAULT_CONFIG_FILE} states no settings"
    differ = [f"{'.'.join(k)}: {DEFAULT_CONFIG_FILE.name} says {loaded[k]!r}, incremental/config.py {defaults[k]!r}"
              for k in keys if loaded[k] != defaults[k]]
    assert not differ, "the reviewed file and the code defaults disagree:\n" + "\n".join(differ)


def test_a_base_model_entry_is_merged_over_the_sections(tmp_path: Path) -> None:
    own = tmp_path / "own.yaml"
    own.write_text("training:\n  max_steps: 7\n  learning_rate: 1.0e-5\n"
                   "models:\n  minilm-l2:\n    training:\n      learning_rate: 4.0e-5\n")
    env = {"INCREMENTAL_HOME": str(tmp_path), "INCREMENTAL_CONFIG": str(own)}
    fast = load_settings({**env, "INCREMENTAL_BASE_MODEL": "minilm-l2"})
    assert (fast.training.learning_rate, fast.training.max_steps) == (4e-5, 7)
    assert load_settings({**env, "INCREMENTAL_BASE_MODEL": "minilm"}).training.learning_rate == 1e-5
    own.write_text("models:\n  minilm-l2:\n    training:\n      learning_rate: -1\n")  # checked whichever the base
    with pytest.raises(SettingsError, match="models.minilm-l2: training.learning_rate"):
        load_settings(env)


def test_a_missing_reviewed_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "incremental.yaml"
    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", missing)
    with pytest.raises(SettingsError, match=f"{missing}.*does not exist.*INCREMENTAL_CONFIG"):
        load_settings({"INCREMENTAL_HOME": str(tmp_path)})


def test_a_missing_file_named_by_the_environment_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "reviewed.yaml"
    with pytest.raises(SettingsError, match=f"{missing} does not exist"):
        load_settings({"INCREMENTAL_HOME": str(tmp_path), "INCREMENTAL_CONFIG": str(missing)})


def test_a_file_of_ones_own_is_used_as_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "own.yaml"
    own.write_text("training:\n  max_steps: 7\n")
    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", tmp_path / "absent.yaml")  # not needed when one is named
    s = load_settings({"INCREMENTAL_HOME": str(tmp_path), "INCREMENTAL_CONFIG": str(own)})
    assert s.config_file == own and s.training.max_steps == 7
