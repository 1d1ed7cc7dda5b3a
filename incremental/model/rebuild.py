"""Rebuild a model version's training rows by time travel: `incremental training-rows`.

A version's run records, for each fresh hour it trained on, the version of the lake's table it
read the hour at and the sha256 of the rows it read (`lineage.json`: `TrainedHour.table_version`,
`rows_sha256`). Opening the table at that version (`DeltaTable(uri, version=n)`) gives the same
rows whatever was committed since (late rows, re-admissions): each hour is read back, its sha256
checked against the recorded one, and written as Parquet. The training, early-stopping and
holdout rows are split from them by hashes of `session_id`, as training split them.

Old table versions must outlive the models that name them: never `vacuum` the table with a
retention shorter than the oldest live model version's training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from incremental.config import Settings
from incremental.data import files, table
from incremental.errors import IncrementalError, InputError
from incremental.hours import parse_hour
from incremental.registry import tracking

if TYPE_CHECKING:  # the JSON shape only: examples imports the model's stack
    from incremental.model.examples import TrainingLineage


class RebuildError(IncrementalError, RuntimeError):
    """The rows read back are not the ones the version trained on (the lake was rewritten)."""


@dataclass(frozen=True)
class RebuiltHour:
    hour: str
    table_version: int
    rows: int
    sha256: str
    path: Path


def lineage_of(settings: Settings, version: str) -> TrainingLineage:
    """The lineage (`lineage.json`) of a registered model version's run; `InputError` if there is none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = tracking.configure(settings)
    try:
        mv = client.get_model_version(settings.model_name, str(version))
        lineage = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/lineage.json")
    except MlflowException as exc:
        raise InputError(f"model {settings.model_name!r} has no version {version!r} with a training lineage "
                         f"({exc.error_code})") from None
    return cast("TrainingLineage", dict(lineage))


def rebuild(settings: Settings, lineage: TrainingLineage, out: Path) -> list[RebuiltHour]:
    """Each fresh hour of `lineage`, read at the table version it was trained at, checked, and written to `out`."""
    done = []
    latest = table.open_table(settings.lake)
    if latest is None:
        raise InputError(f"the lake {table.uri(settings.lake)} has no table to travel back in")
    for p in lineage.get("partitions", []):
        version, expected = p.get("table_version"), p.get("rows_sha256")
        if version is None or not expected:
            raise InputError(f"hour {p['hour']} of this version was trained before the lake recorded table "
                             "versions: it cannot be rebuilt by time travel")
        if int(version) > latest.version():
            raise InputError(f"hour {p['hour']} was trained at table version {version}, but {table.uri(settings.lake)} "
                             f"is at version {latest.version()}: is this the lake the version trained on?")
        start = parse_hour(p["hour"])
        rows = table.read_rows(table.open_table(settings.lake, int(version)), start, [table.VALIDATED])
        sha = table.rows_sha256(rows)
        if sha != expected:
            raise RebuildError(f"hour {p['hour']} at table version {version}: rows sha256 {sha[:12]}, but the version "
                               f"trained on {expected[:12]}: the table's history was rewritten")
        path = out / f"{start:%Y%m%dT%H}.parquet"
        files.write_parquet_atomic(path, rows)
        done.append(RebuiltHour(p["hour"], int(version), rows.num_rows, sha, path))
    return done
