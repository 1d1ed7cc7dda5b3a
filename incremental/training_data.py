"""The rows an update trains on: validated hours split into training and holdout rows by a hash
of session_id, plus replay, with their lineage and a data hash (`training_set`). No model, no
MLflow: `train.run_update` builds its `TrainingSet` here first, so refusing an hour that is not
validated costs no model load."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from incremental import lake as lk
from incremental import replay
from incremental.config import Settings
from incremental.errors import IncrementalError

log = logging.getLogger(__name__)


class TrainingError(IncrementalError, RuntimeError):
    """The update cannot run (an hour that is not validated, no rows to train on)."""


def digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def load_hours(
    settings: Settings, starts: list[datetime], *, strict: bool, stale: tuple[replay.Stale, ...] = (),
    holdout_from: datetime | None = None,
) -> tuple[pd.DataFrame, pa.Table, list[dict[str, Any]]]:
    """Training rows and holdout rows of validated hours, split by a hash of session_id.

    strict: every hour must be validated (an hourly update); otherwise hours that are not are
    skipped and reported (a bootstrap window may contain quarantined or empty hours).
    stale: rows left out on both sides (`replay.Stale`: what a drift contradicted).
    holdout_from: the holdout keeps only the hours from this one on (a catch-up retrain is judged
    on the new regime's hours, not on the whole window it trains on).
    """
    fraction = settings.training.holdout_fraction
    train, holdout, parts = [], [], []
    for start in starts:
        part = lk.partition(settings.lake, start)
        if part.status != "validated":
            message = f"hour {lk.iso_hour(start)} is {part.status}, not validated: refusing to train on it"
            if strict:
                raise TrainingError(message)
            log.warning("%s (skipped)", message)
            continue
        table = lk.read_partition(part)
        mask = replay.holdout_mask(table.column("session_id").to_pylist(), fraction)
        keep = ~replay.stale_mask(stale, start, table.column("category").to_pandas())
        train.append(table.filter(pa.array(~mask & keep)).to_pandas())
        if holdout_from is None or start >= holdout_from:
            holdout.append(table.filter(pa.array(mask & keep)))
        parts.append({"hour": start.isoformat(), "sha256": part.manifest["sha256"], "rows": table.num_rows,
                      "train_rows": int((~mask & keep).sum()), "holdout_rows": int((mask & keep).sum()),
                      "stale_rows": int((~keep).sum())})
    if not parts:
        raise TrainingError(f"no validated hour among {len(starts)} to train on")
    return pd.concat(train, ignore_index=True), pa.concat_tables(holdout), parts


@dataclass(frozen=True)
class TrainingSet:
    fresh: pd.DataFrame  # the hours' rows outside the holdout
    replayed: pd.DataFrame
    holdout: pa.Table
    lineage: dict[str, Any]
    data_hash: str

    @property
    def rows(self) -> pd.DataFrame:
        return pd.concat([self.fresh, self.replayed], ignore_index=True) if len(self.replayed) else self.fresh


def training_set(settings: Settings, starts: list[datetime], kind: str, stale: tuple[replay.Stale, ...] = (),
                 holdout_from: datetime | None = None) -> TrainingSet:
    """The hours' rows (less their holdout sessions and `stale` rows) plus replay, with lineage and a data hash."""
    t = settings.training
    fresh, holdout, parts = load_hours(settings, starts, strict=kind == "hourly", stale=stale,
                                       holdout_from=holdout_from)
    replayed, replay_lineage = replay.sample(
        settings.lake, starts[0], fresh_rows=len(fresh), fraction=t.replay_fraction,
        replay_hours=t.replay_hours, holdout_fraction=t.holdout_fraction, seed=t.seed, stale=stale,
    )
    lineage = {"kind": kind, "interval_start": starts[0].isoformat(), "interval_end": (starts[-1] + lk.HOUR).isoformat(),
               "partitions": parts, "replay": replay_lineage}
    identity = {"partitions": [(p["hour"], p["sha256"]) for p in parts],
                "replay": [(p["hour"], p["sha256"], p["sampled"]) for p in replay_lineage["partitions"]],
                "holdout_fraction": t.holdout_fraction}
    if stale:  # only then: an update with nothing stale keeps the identity it always had
        identity["stale"] = [rule.to_dict() for rule in stale]
    if holdout_from is not None:
        identity["holdout_from"] = holdout_from.isoformat()
    lineage["data_hash"] = data_hash = digest(identity)
    return TrainingSet(fresh, replayed, holdout, lineage, data_hash)
