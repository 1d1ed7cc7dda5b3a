"""Three consecutive hours through the real hourly DAG (`airflow dags test`), the tiny model, the embedded default.

Hour 04 is good (approved), hour 05 is damaged by the simulator (quarantined: train, evaluate and
register skipped, the run green with a note), hour 06 is good again (approved, warm-started from 04's
champion). Afterwards the lake and the MLflow registry say the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow_helpers import Env, seed_and_bootstrap

from incremental.data import lake
from incremental.hours import HOUR, parse_hour

HOURS = ["2026-01-01T04:00", "2026-01-01T05:00", "2026-01-01T06:00"]
SKIPPED = {"train", "evaluate", "register", "publish_champion"}


@pytest.mark.slow
def test_three_hours_approved_quarantined_approved(tmp_path: Path) -> None:
    env = Env(tmp_path / "var")
    seed_and_bootstrap(env, "2026-01-01T00:00", "2026-01-01T04:00", "2026-01-01T07:00", bad_hour=HOURS[1])
    champion_before = next(row["version"] for row in env.history() if row["champion"])

    for hour in HOURS:  # a manual run at H+1 covers [H, H+1): the timetable infers the closed hour
        logical = parse_hour(hour) + HOUR
        env.sh(f"airflow dags test search_ranker_hourly {logical.isoformat()}", timeout=900)

    runs = {run["hour"]: run for run in env.runs("search_ranker_hourly")}
    good, bad, good_again = (runs[f"{h}Z"] for h in HOURS)
    for run in (good, bad, good_again):
        assert run["state"] == "success", run  # a quarantined hour does not turn the run red
    for run in (good, good_again):
        # no drift declared: no catch-up retrain, so nothing for publish_catch_up to announce
        assert run["tasks"].pop("publish_catch_up") == "skipped", run["tasks"]
        assert set(run["tasks"].values()) == {"success"}, run["tasks"]
        assert run["note"].startswith(f"Hour {run['hour']}: approved"), run["note"]
    assert {t: s for t, s in bad["tasks"].items() if t in SKIPPED} == dict.fromkeys(SKIPPED, "skipped"), bad["tasks"]
    assert bad["tasks"]["validate"] == "success" and bad["tasks"]["check_validated"] == "success"
    assert bad["note"].startswith(f"Hour {bad['hour']} QUARANTINED"), bad["note"]

    # the lake: two validated hours, one in quarantine with the GX result and data docs
    settings_lake = env.home / "lake"
    states = [lake.partition(settings_lake, parse_hour(h)).status for h in HOURS]
    assert states == ["validated", "quarantined", "validated"]
    quarantined = lake.partition(settings_lake, parse_hour(HOURS[1]))
    assert (quarantined.path / "quarantine.json").is_file()

    # the registry: one new version per good hour, each the champion in turn, trained on its parent
    history = env.history()
    hourly = [row for row in history if row["interval"].startswith(("2026-01-01T04", "2026-01-01T06"))]
    assert [row["decision"] for row in hourly] == ["approved", "approved"], history
    assert hourly[0]["parent"] == champion_before and hourly[1]["parent"] == hourly[0]["version"], history
    assert hourly[1]["champion"], history
    assert not any(row["interval"].startswith("2026-01-01T05") for row in history), history
