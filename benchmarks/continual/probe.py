"""The forgetting probe of the prequential benchmark: a large sample of the traffic the drift
leaves alone, that no arm ever trains on, to measure forgetting with a known precision.

The benchmark's anchor is the pipeline's own (a few hundred holdout rows of the bootstrap hours):
on `medium`, 368 rows in the five unchanged categories, too few to tell 0.01 AUC of forgetting
from 0.04 (a 90% interval about ±0.035 wide). The probe is `probe_hours` more hours of the
simulator's pre-drift regime (scenario `steady`, the same seed and catalogue process), the hours
just before the benchmark's window, in a warehouse and lake of their own, extracted and
validated by the pipeline like any hour. Only its rows in the categories the drift leaves alone
are kept. Each arm's forgetting is then the mean over those categories of the per-category AUC
of the model it served at the last hour before the drift minus the one it serves at the end,
with a paired bootstrap interval over sessions (`compare.category_mean_bootstrap`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.continual.homes import home_settings
from benchmarks.continual.plan import HOUR, Plan
from incremental.config import Settings
from incremental.hours import parse_hour


def unchanged_categories(plan: Plan) -> list[str]:
    """The categories the simulator's drift leaves alone (none for other scenarios)."""
    if plan.scenario != "drift":
        return []
    from incremental.sim.catalogue import CATEGORIES
    from incremental.sim.traffic import drift_mapping

    return sorted({c.name for c in CATEGORIES} - set(drift_mapping(plan.seed)))


def probe_settings(plan: Plan) -> Settings:
    home = Path(plan.work) / "probe"
    return home_settings(home, Path(plan.work) / "configs" / "data.yaml",
                         f"duckdb:///{home / 'warehouse.duckdb'}", plan.base_model)


def build_probe(plan: Plan) -> pd.DataFrame | None:
    """The probe's rows in the unchanged categories (None when the scenario has none)."""
    unchanged = unchanged_categories(plan)
    if not unchanged or plan.probe_hours < 1:
        return None
    from incremental import pipeline
    from incremental.data import lake
    from incremental.data.warehouse import Warehouse
    from incremental.sim.simulate import simulate

    settings = probe_settings(plan)
    end = parse_hour(plan.start)
    start = end - plan.probe_hours * HOUR
    simulate(Warehouse(settings.warehouse_url), start, end, rate=plan.rate, seed=plan.seed, scenario="steady")
    frames = []
    for i in range(plan.probe_hours):
        hour = start + i * HOUR
        pipeline.extract_step(settings, hour)
        if pipeline.validate_step(settings, hour).validated:
            frames.append(lake.read_partition(lake.partition(settings.lake, hour)).to_pandas())
    if not frames:
        return None
    frame = pd.concat(frames, ignore_index=True)
    return frame[frame["category"].astype(str).isin(unchanged)].reset_index(drop=True)


def forgetting(probe: pd.DataFrame, before: Any, after: Any, categories: list[str], seed: int) -> dict[str, Any]:
    """Mean per-category AUC of `before` minus `after` on the probe (positive: forgot), 90% interval."""
    from incremental.judge.compare import category_mean_bootstrap

    out = category_mean_bootstrap(probe, after, before, categories, samples=1000, confidence=0.9, seed=seed)
    return {"drop": -out["diff"], "lo": -out["hi"], "hi": -out["lo"], "rows": out["rows"],
            "sessions": out["sessions"], "confidence": out["confidence"],
            "per_category": {c: -m["diff"] for c, m in out["categories"].items()}}


def served_at(records: list[dict[str, Any]], arm: str, hour: str) -> str | None:
    return next((r.get("served_version") for r in records if r["arm"] == arm and r["hour"] == hour), None)
