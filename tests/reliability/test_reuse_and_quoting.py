"""The registry on a real SQLite-backed MLflow: which earlier version reprocessing reuses
(issue 10 item 3), quoting in MLflow filters and a failing update's run (item 11)."""

from __future__ import annotations

import importlib.util
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest

from incremental.config import Settings, load_settings
from incremental.hours import Hour
from incremental.registry import champion as registry
from incremental.registry import tracking
from incremental.registry.history import history

H0 = Hour(2026, 2, 1, 0, tzinfo=UTC)


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list[float]:
        return [0.5] * len(model_input)


def candidate(settings: Settings, hour: int, parent: str | None, *, sha: str, approved: bool = True) -> dict:
    tracking.get_or_create_experiment(settings)
    mlflow.set_experiment(tracking.UPDATES_EXPERIMENT)
    with mlflow.start_run() as run:
        mlflow.pyfunc.log_model(name="model", python_model=Constant(), pip_requirements=["mlflow"])
    start = H0 + timedelta(hours=hour)
    return registry.register_candidate(
        settings, model_uri=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, interval_start=start,
        interval_end=start + timedelta(hours=1), parent_version=parent, data_hash=f"{sha}|{parent}",
        partition_sha256=sha, approved=approved, reasons=["ok"] if approved else ["gate said no"],
        metrics={"holdout_auc": 0.7},
    )


def test_a_stale_rejected_hour_is_retrained_from_the_current_champion(settings: Settings) -> None:
    assert candidate(settings, 0, None, sha="s0").champion == "1"
    # hours 1 and 2 both trained from version 1; hour 1 registers first and becomes champion
    assert candidate(settings, 1, "1", sha="s1").champion == "2"
    stale = candidate(settings, 2, "1", sha="s2")
    assert stale.decision == "rejected" and "retrain from the current champion" in stale.reasons[-1]

    hour2 = H0 + timedelta(hours=2)
    # its reason says "retrain from the current champion": reprocessing must not hand it back
    assert registry.find_processed(settings, hour2, "s2", "2") is None
    # ... while a run from the same parent (nothing has changed) still reuses it
    assert str(registry.find_processed(settings, hour2, "s2", "1").version) == stale.version
    retrained = candidate(settings, 2, "2", sha="s2")
    assert retrained.decision == "approved" and retrained.version == "4"
    assert str(registry.find_processed(settings, hour2, "s2", "4").version) == "4"  # approved: the hour is done

    # an hour the champion already learnt is never trained twice, however far the champion moved
    assert str(registry.find_processed(settings, H0 + timedelta(hours=1), "s1", "4").version) == "2"
    # a gate rejection from the current champion is reused (same inputs, same answer)
    gated = candidate(settings, 3, "4", sha="s3", approved=False)
    assert str(registry.find_processed(settings, H0 + timedelta(hours=3), "s3", "4").version) == gated.version


@pytest.mark.parametrize("name", ["o'brien's ranker", 'the "main" ranker'])
def test_quotes_in_the_model_name(home: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("INCREMENTAL_MODEL_NAME", name)
    settings = load_settings()
    first = candidate(settings, 0, None, sha="s0")
    again = candidate(settings, 0, None, sha="s0")  # idempotency goes through a filter too
    assert again.version == first.version and again.reused
    rows = history(settings)
    assert [r["version"] for r in rows] == ["1"] and rows[0]["champion"]
    assert str(registry.find_processed(settings, H0, "s0", "1").version) == "1"


def test_a_name_with_both_quotes_is_refused_with_a_message(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from incremental.errors import IncrementalError

    monkeypatch.setenv("INCREMENTAL_MODEL_NAME", """it's "odd\"""")
    with pytest.raises(IncrementalError, match="both kinds of quote"):
        history(load_settings())


def test_a_failing_update_marks_its_run_failed(home: Path, tmp_path: Path) -> None:
    """A real fault after the run exists: the holdout folder cannot be created (a file is in the
    way), so saving fails at the very end. The run must end FAILED, not stay RUNNING."""
    spec = importlib.util.spec_from_file_location("model_fixtures", Path(__file__).parents[1] / "model" / "conftest.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)  # tests/model/conftest.py: the text-rule hours and the tiny settings
    OLD_HOURS, TINY_TRAINING, make_hour_frame, make_settings, write_hour = (  # noqa: N806
        m.OLD_HOURS, m.TINY_TRAINING, m.make_hour_frame, m.make_settings, m.write_hour)

    lake = tmp_path / "lake"
    write_hour(lake, OLD_HOURS[0], make_hour_frame(OLD_HOURS[0], 120, seed=0))
    settings = make_settings(home, lake, model_name="ranker-fails",
                             training=TINY_TRAINING.model_copy(update={"max_steps": 4, "eval_every": 4,
                                                                       "checkpoint_every": 2}))
    home.mkdir(parents=True, exist_ok=True)
    (home / "holdout").write_text("not a folder")
    from incremental.data.lake import partition
    from incremental.model.update import train_hour

    with pytest.raises(OSError):
        train_hour(settings, partition(settings.lake, OLD_HOURS[0]))
    client = tracking.configure(settings)
    runs = client.search_runs([tracking.get_or_create_experiment(settings)])
    assert [r.info.status for r in runs] == ["FAILED"]

    # and a rerun once the fault is gone resumes and finishes (the update lock was released)
    (home / "holdout").unlink()
    done = train_hour(settings, partition(settings.lake, OLD_HOURS[0]))
    assert client.get_run(done.run_id).info.status == "FINISHED"
    assert not [r for r in client.search_runs([tracking.get_or_create_experiment(settings)])
                if r.info.status == "RUNNING"]
