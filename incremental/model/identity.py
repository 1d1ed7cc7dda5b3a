"""An update's identity: what names its checkpoint folder, its candidate and its MLflow run, so that
a re-run of the same update (interval, parent version, data, config) resumes or reuses it instead of
starting a second lineage (`incremental.model.update`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from incremental.config import Settings
from incremental.hours import HOUR, Hour
from incremental.model.examples import digest


class UpdateConfig(TypedDict):
    """What an update's identity hashes (and its checkpoint records) besides the data: the training
    settings, the kind of update, its steps, the base weights (a first model)."""

    training: dict[str, Any]  # `TrainingSettings.model_dump()`
    kind: str
    max_steps: int
    base_model: str | None  # None: warm-started from a parent version
    world_size: NotRequired[int]  # a sharded run only


@dataclass(frozen=True)
class UpdateIdentity:
    """One checkpoint folder and one MLflow run per (interval, parent, data, config), so a re-run
    resumes or reuses instead of starting a second lineage."""

    key: str
    config: UpdateConfig
    candidate_dir: Path
    holdout_path: Path
    checkpoint_path: Path


def update_identity(settings: Settings, first: Hour, last: Hour, kind: str, max_steps: int,
                    parent_version: str | None, data_hash: str, world_size: int = 1) -> UpdateIdentity:
    config: UpdateConfig = {"training": settings.training.model_dump(), "kind": kind, "max_steps": max_steps,
                            "base_model": None if parent_version else settings.base_model}
    if world_size > 1:  # a sharded run (`model.distributed`) trains otherwise: its own update; one process keeps its key
        config["world_size"] = world_size
    hour_key = f"{first:%Y%m%dT%H}" + (f"-{last + HOUR:%Y%m%dT%H}" if kind != "hourly" else "")
    key = f"{hour_key}-{'v' + parent_version if parent_version else 'base'}-{data_hash[:12]}-{digest(config)[:8]}"
    home = settings.home
    return UpdateIdentity(key, config, home / "candidates" / key, home / "holdout" / f"{key}.parquet",
                          home / "checkpoints" / key / "last.pt")
