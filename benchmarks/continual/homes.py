"""The prequential benchmark's homes: one INCREMENTAL_HOME per arm over the shared warehouse,
its checked config and settings, the copy of the bootstrapped data home, and its pages."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import yaml

from benchmarks.continual.plan import Arm, Plan
from incremental.config import Settings, load_settings, load_tuning, merge
from incremental.data import storage
from incremental.judge import drift

PAGE_LEVEL = "page"


# --- homes, configs, settings ----------------------------------------------------------------
def write_arm_config(base_config: Path | None, path: Path, *layers: dict[str, Any]) -> dict[str, Any]:
    """The base YAML with the layers merged in, written to `path` and checked like any config."""
    raw = (yaml.safe_load(base_config.read_text()) or {}) if base_config else {}
    for layer in layers:
        raw = merge(raw, layer)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=True))
    load_tuning(path)  # unknown keys or bad values fail here, not an hour later
    return raw


def home_settings(home: Path, config: Path, warehouse_url: str, base_model: str) -> Settings:
    env = {k: v for k, v in os.environ.items() if k not in ("INCREMENTAL_LAKE", "INCREMENTAL_MLFLOW_URI")}
    env.update(INCREMENTAL_HOME=str(home), INCREMENTAL_CONFIG=str(config), INCREMENTAL_WAREHOUSE_URL=warehouse_url,
               INCREMENTAL_BASE_MODEL=base_model)
    return load_settings(env)


def _ident(name: str) -> str:
    """An SQLite identifier, quoted (names cannot be bound parameters; these come from the
    database's own catalogue, and any double quote in them is escaped)."""
    return '"' + name.replace('"', '""') + '"'


def _rehome(db: Path, old: Path, new: Path) -> int:
    """Rewrite every path of `old` in an MLflow SQLite database (artifact locations, model sources)."""
    changed = 0
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            for col in con.execute("select name, type from pragma_table_info(?)", (table,)).fetchall():
                if "CHAR" in col[1].upper() or "TEXT" in col[1].upper():
                    t, c = _ident(table), _ident(col[0])
                    cur = con.execute(f"update {t} set {c} = replace({c}, ?, ?) where instr({c}, ?) > 0",
                                      (str(old), str(new), str(old)))
                    changed += cur.rowcount
    return changed


def copy_home(src: Path, dst: Path) -> None:
    """The bootstrapped data home as an arm's home: lake, MLflow, models; not the warehouse."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("warehouse.duckdb*", "*.yaml", "registry.lock"))
    _rehome(dst / "mlflow.db", src, dst)


def count_pages(settings: Settings) -> int:
    """Human interventions: lines of `<lake>/_drift/alerts.jsonl` with "level": "page" (missing file: 0)."""
    path = drift.drift_dir(settings) / "alerts.jsonl"
    if not storage.is_file(path):
        return 0
    count = 0
    for line in storage.read_bytes(path).decode().splitlines():
        try:
            count += json.loads(line).get("level") == PAGE_LEVEL
        except (json.JSONDecodeError, AttributeError):
            continue
    return count


def arm_settings(plan: Plan, name: str) -> Settings:
    work = Path(plan.work)
    home = work / "data" if name == "data" else work / "arms" / name
    return home_settings(home, work / "configs" / f"{name}.yaml", _warehouse_url(plan), plan.base_model)


def _warehouse_url(plan: Plan) -> str:
    return f"duckdb:///{Path(plan.work) / 'data' / 'warehouse.duckdb'}"


def write_configs(plan: Plan, arms: dict[str, Arm]) -> dict[str, Any]:
    base = Path(plan.base_config) if plan.base_config else None
    configs = Path(plan.work) / "configs"
    common = {"training": plan.training} if plan.training else {}
    out = {"data": write_arm_config(base, configs / "data.yaml", common)}
    for name in plan.arms:
        reference = {"training": plan.reference_training} if arms[name].learns == "retrain" and plan.reference_training else {}
        out[name] = write_arm_config(base, configs / f"{name}.yaml", common, arms[name].config, reference)
    return out
