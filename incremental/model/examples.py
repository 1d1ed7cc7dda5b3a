"""The rows an update trains on: validated hours split by hashes of session_id into training,
early-stopping and holdout (the gate's) rows, plus replay, with their lineage, a data hash and the
examination curve estimated from the logs (`training_set`). No model, no MLflow: `train.run_update`
builds its `TrainingSet` here first, so refusing an hour that is not validated costs no model load.

Three disjoint sets of sessions: the holdout (`holdout_fraction`) is what the gate compares the
candidate and the champion on, and nothing trains or early-stops on it; the early-stopping rows
(`early_stopping_fraction` of the other sessions, by a second hash) choose the best step; the rest
trains. So the gate's interval is over rows that played no part in choosing the candidate."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import pandas as pd
import pyarrow as pa

from incremental.config import Settings
from incremental.data import lake as lk
from incremental.data import table
from incremental.errors import IncrementalError
from incremental.hours import HOUR, Hour
from incremental.model import propensity, replay, weak_labels

log = logging.getLogger(__name__)


class TrainingError(IncrementalError, RuntimeError):
    """The update cannot run (an hour that is not validated, no rows to train on)."""


def digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class TrainedHour(TypedDict):
    """One hour of a training set: its partition's identity and how its rows were split."""

    hour: str  # ISO time of the hour's start
    sha256: str
    table_version: int | None  # the version of the lake's table the hour's rows were read at
    rows_sha256: str  # the hour's rows as read (`table.rows_sha256`): what a rebuild by time travel must give
    rows: int
    train_rows: int
    stopping_rows: int
    holdout_rows: int
    stale_rows: int


class TrainingLineage(TypedDict):
    """What an update trained on (its MLflow run's `lineage.json`): the hours, replay, the data hash."""

    kind: str
    interval_start: str
    interval_end: str
    partitions: list[TrainedHour]
    replay: replay.ReplayLineage
    examination: dict[str, object]  # `propensity.Examination.to_dict`
    data_hash: NotRequired[str]
    table: NotRequired[str]  # the lake's table (URI) and the version the fresh hours were read at
    table_version: NotRequired[int | None]
    weak_labels: NotRequired[dict[str, object]]  # `weak_labels.with_bm25_labels`' fit, where BM25 is part of the label


@dataclass(frozen=True)
class HourRows:
    train: pd.DataFrame
    stopping: pd.DataFrame  # early-stopping rows: training-side sessions, never trained on
    holdout: pa.Table  # the gate's rows
    parts: list[TrainedHour]


def load_hours(
    settings: Settings, parts: list[lk.Partition], *, strict: bool, stale: tuple[replay.Stale, ...] = (),
    holdout_from: Hour | None = None,
) -> HourRows:
    """Training, early-stopping and holdout rows of validated hours (`parts`: their states, as the
    caller read them), split by hashes of session_id.

    strict: every hour must be validated (an hourly update); otherwise hours that are not are
    skipped and reported (a bootstrap window may contain quarantined or empty hours).
    stale: rows left out on both sides (`replay.Stale`: what a drift contradicted).
    holdout_from: the holdout keeps only the hours from this one on (a catch-up retrain is judged
    on the new regime's hours, not on the whole window it trains on).
    """
    fraction = settings.training.holdout_fraction
    train, stopping, holdout = [], [], []
    trained: list[TrainedHour] = []
    for part in parts:
        start = part.start
        if part.status != "validated":
            message = f"hour {start} is {part.status}, not validated: refusing to train on it"
            if strict:
                raise TrainingError(message)
            log.warning("%s (skipped)", message)
            continue
        assert part.manifest is not None  # a validated hour has one
        rows = lk.read_partition(part)
        sessions = rows.column("session_id").to_pylist()
        mask = replay.holdout_mask(sessions, fraction)
        stop = replay.holdout_mask(sessions, settings.training.early_stopping_fraction, salt="early-stopping") & ~mask
        keep = ~replay.stale_mask(stale, start, rows.column("category").to_pandas())
        train.append(rows.filter(pa.array(~mask & ~stop & keep)).to_pandas())
        stopping.append(rows.filter(pa.array(stop & keep)).to_pandas())
        if holdout_from is None or start >= holdout_from:
            holdout.append(rows.filter(pa.array(mask & keep)))
        trained.append({"hour": start.isoformat(), "sha256": part.manifest["sha256"], "table_version": part.version,
                        "rows_sha256": table.rows_sha256(rows), "rows": rows.num_rows,
                        "train_rows": int((~mask & ~stop & keep).sum()), "stopping_rows": int((stop & keep).sum()),
                        "holdout_rows": int((mask & keep).sum()),
                        "stale_rows": int((~keep).sum())})
    if not trained:
        raise TrainingError(f"no validated hour among {len(parts)} to train on")
    return HourRows(pd.concat(train, ignore_index=True), pd.concat(stopping, ignore_index=True),
                    pa.concat_tables(holdout), trained)


def examination_curve(settings: Settings, last: Hour) -> propensity.Examination:
    """The examination curve, fitted on the validated hours of the `propensity_hours` up to `last`
    (an hour's own rows are too few: a curve needs the same pair shown at several positions)."""
    t = settings.training
    if t.position_bias == "none":
        return propensity.unbiased(0)
    columns = ["query", "product_id", "position", "clicked"]
    parts = lk.validated_partitions(settings.lake, last + HOUR, t.propensity_hours)
    frames = [lk.read_partition(part).select(columns).to_pandas() for part in parts]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return propensity.estimate(rows)


@dataclass(frozen=True)
class TrainingSet:
    fresh: pd.DataFrame  # the hours' training rows (outside the holdout and early-stopping sessions)
    replayed: pd.DataFrame
    stopping: pd.DataFrame  # early-stopping rows
    holdout: pa.Table  # the gate's rows
    examination: propensity.Examination  # P(examined | position), for the training loss
    lineage: TrainingLineage
    data_hash: str

    @property
    def rows(self) -> pd.DataFrame:
        return pd.concat([self.fresh, self.replayed], ignore_index=True) if len(self.replayed) else self.fresh


def training_set(settings: Settings, parts: list[lk.Partition], kind: str, stale: tuple[replay.Stale, ...] = (),
                 holdout_from: Hour | None = None) -> TrainingSet:
    """The hours' rows (`parts`: their states; less their holdout sessions and `stale` rows) plus
    replay, with lineage and a data hash."""
    t = settings.training
    first, last = parts[0].start, parts[-1].start
    loaded = load_hours(settings, parts, strict=kind == "hourly", stale=stale, holdout_from=holdout_from)
    fresh, trained = loaded.train, loaded.parts
    replayed, replay_lineage = replay.sample(
        settings.lake, first, fresh_rows=len(fresh), fraction=t.replay_fraction,
        replay_hours=t.replay_hours, holdout_fraction=t.holdout_fraction, seed=t.seed, stale=stale,
    )
    examination = examination_curve(settings, last)
    fresh, replayed, weak = _labelled(fresh, replayed, t.bm25_label_weight)
    lineage: TrainingLineage = {"kind": kind, "interval_start": first.isoformat(),
                                "interval_end": (last + HOUR).isoformat(), "partitions": trained,
                                "replay": replay_lineage, "examination": examination.to_dict(),
                                "table": table.uri(settings.lake), "table_version": trained[0]["table_version"]}
    identity = {"partitions": [(p["hour"], p["sha256"]) for p in trained],
                "replay": [(p["hour"], p["sha256"], p["sampled"]) for p in replay_lineage["partitions"]],
                "holdout_fraction": t.holdout_fraction, "early_stopping_fraction": t.early_stopping_fraction}
    if stale:  # only then: an update with nothing stale keeps the identity it always had
        identity["stale"] = [rule.to_dict() for rule in stale]
    if holdout_from is not None:
        identity["holdout_from"] = holdout_from.isoformat()
    if t.position_bias != "none":  # the curve is fitted on hours outside `parts` too: part of what trains
        identity["examination"] = examination.to_dict()
    if weak:
        lineage["weak_labels"] = weak
    lineage["data_hash"] = data_hash = digest(identity)
    return TrainingSet(fresh, replayed, loaded.stopping, loaded.holdout, examination, lineage, data_hash)


def _labelled(fresh: pd.DataFrame, replayed: pd.DataFrame,
              weight: float) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, object] | None]:
    """The training rows with BM25 in their label (`training.bm25_label_weight` > 0), fitted on all of them."""
    if weight <= 0 or not len(fresh):
        return fresh, replayed, None
    both, weak = weak_labels.with_bm25_labels(pd.concat([fresh, replayed], ignore_index=True), weight)
    return both.iloc[:len(fresh)], both.iloc[len(fresh):].reset_index(drop=True), weak
