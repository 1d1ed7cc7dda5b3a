"""Prequential (test-then-train) benchmark: gated hourly updates vs a naive fine-tune vs a full
retrain vs a frozen model, on the same hours, with the cost of each.

Every hour h after the bootstrap window is first *scored* by the model each arm serves at the
close of hour h-1 (its `champion` alias), on the hour's validated rows, and only then does the
arm learn from h. So every figure is on rows no scored model was trained on (`verify_lineage`
checks that from the MLflow lineage of each served version).

Arms are data (`ARMS`: name -> config overrides + how it learns), each with its own
INCREMENTAL_HOME (own MLflow registry, own lake, checkpoints) over one shared warehouse, and
each driven by the pipeline's own functions, the ones the DAGs call:

- ``frozen``: the bootstrap champion, never updated (the floor);
- ``naive``: `pipeline.run_hour` every hour with replay and L2-SP off, the gate's verdict
  overridden through the real registry (`force_promote_reason`): every update is served;
- ``gated``: `pipeline.run_hour` with the reviewed config, exactly (whatever drift response it
  has); human interventions are the ``"level": "page"`` lines of ``<home>/alerts.jsonl``;
- ``full_retrain``: `pipeline.full_retrain` from the base weights on every validated hour so
  far, every K hours; always served (force-promoted with a reason when the gate rejects): it
  is the quality reference.

Bootstrap: the first champion is trained once (`pipeline.full_retrain` on the first B hours,
which also freezes the anchor set) in a data home, which is then copied to every arm's home, so
all arms start from the very same weights and anchor at the cost of one bootstrap (training it
once per arm would cost B-hour retrains x arms and could differ by floating-point noise). The
copy's MLflow database names the data home's artifact folder; `_rehome` rewrites those paths so
each arm writes only under its own home.

Results (JSON, a Markdown summary, PNG charts) go to `benchmarks/results/continual/` by default,
stamped with the commit, the machine, the model and the configs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from incremental.config import REPO_ROOT, Settings, load_settings, load_tuning, merge

HOUR = timedelta(hours=1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "continual"
REFERENCE = "full_retrain"
RECOVERY_TOLERANCE = 0.01  # NDCG@10 within this of the reference counts as recovered
SCENARIOS = ("steady", "drift", "judgments")
PRESET_MODEL = "minilm-l2"  # MiniLM's embeddings + 2 layers, mean-pooled: learns the simulator's signal, ~2x MiniLM's speed
PAGE_LEVEL = "page"



# --- arms and presets: data ------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    name: str
    learns: str  # "none" | "hourly" (pipeline.run_hour) | "retrain" (pipeline.full_retrain)
    description: str
    config: dict[str, Any] = field(default_factory=dict)  # overrides of the YAML sections, e.g. {"training": {...}}
    force_reason: str | None = None  # promote even when the gate rejects (recorded in the registry)


ARMS: dict[str, Arm] = {
    "frozen": Arm("frozen", "none", "the bootstrap champion, never updated (the floor)"),
    "naive": Arm("naive", "hourly", "run_hour every hour, no replay, no L2-SP, no drift response, every update "
                 "served (no gate)",
                 # a fall of 1.0 AUC never happens: no hold, no adapt mode, no catch-up retrain
                 config={"training": {"replay_fraction": 0.0, "l2sp_strength": 0.0},
                         "gate": {"hold_anomalous_hours": False},
                         "drift": {"overall_auc_drop": 1.0, "slice_auc_drop": 1.0}},
                 force_reason="benchmark arm 'naive': no gate, every hourly update is served"),
    "gated": Arm("gated", "hourly", "run_hour with the reviewed config, exactly: the production pipeline"),
    "full_retrain": Arm("full_retrain", "retrain", "full_retrain from the base weights on all validated hours so far,"
                        " every K hours, always served (the reference)",
                        force_reason="benchmark arm 'full_retrain': the quality reference is always served"),
}


@dataclass(frozen=True)
class Preset:
    hours: int  # simulated hours in all, the bootstrap window included
    bootstrap_hours: int
    drift_hour: int | None  # index of the first drifted hour (drift scenario)
    rate: int  # impressions an hour
    retrain_every: int  # K
    anchor_size: int
    training: dict[str, Any]  # applied to every arm (step counts that make the preset affordable)
    description: str


PRESETS: dict[str, Preset] = {
    "small": Preset(hours=6, bootstrap_hours=2, drift_hour=3, rate=300, retrain_every=1, anchor_size=300,
                    training={"max_steps": 15, "bootstrap_steps": 40},
                    description="6 hours (2 bootstrap, 4 scored, drift at hour 3), 300 impressions/h, "
                                "15 steps/update, 40 steps/retrain: plumbing-sized (too little data for minilm-l2 to "
                                "learn the signal: its figures are no evidence of quality); the test suite runs it"),
    "medium": Preset(hours=16, bootstrap_hours=4, drift_hour=8, rate=1000, retrain_every=4, anchor_size=1000,
                     training={"max_steps": 30},
                     description="16 hours (4 bootstrap, drift at hour 8), 1,000 impressions/h, 30 steps/update, "
                                 "full retrain every 4 hours: about an hour on 2 CPU cores with minilm-l2"),
    "full": Preset(hours=48, bootstrap_hours=6, drift_hour=24, rate=2000, retrain_every=1, anchor_size=2000,
                   training={}, description="48 hours (6 bootstrap, drift at hour 24), 2,000 impressions/h, "
                                            "the config's step counts; hours of CPU, use --retrain-every"),
}


@dataclass(frozen=True)
class Plan:
    """One benchmark run, fully resolved: what the JSON records as its configuration."""

    preset: str
    scenario: str
    arms: tuple[str, ...]
    hours: int
    bootstrap_hours: int
    drift_hour: int | None
    rate: int
    seed: int
    retrain_every: int
    anchor_size: int
    training: dict[str, Any]
    base_model: str
    base_config: str
    out: str
    work: str
    start: str = T0.isoformat()
    judgments: dict[str, Any] | None = None  # path and import-judgments options (scenario "judgments")
    extra_arms: dict[str, Any] | None = None  # name -> {"path", "config"}: more run_hour arms (--arm-config)


# --- summary maths (pure) ----------------------------------------------------------------------
def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def mean(values: Sequence[float | None]) -> float | None:
    kept = _finite(values)
    return sum(kept) / len(kept) if kept else None


def recovery_hours(arm: Sequence[float | None], ref: Sequence[float | None], drift_index: int,
                   tolerance: float = RECOVERY_TOLERANCE) -> int | None:
    """Hours from the drift until the arm's metric is within `tolerance` of the reference's
    (0: it never fell behind); None when it is not within the window."""
    for i in range(drift_index, min(len(arm), len(ref))):
        a, r = arm[i], ref[i]
        if a is not None and r is not None and math.isfinite(a) and math.isfinite(r) and a >= r - tolerance:
            return i - drift_index
    return None


def largest_loss(arm: Sequence[float | None], ref: Sequence[float | None]) -> float | None:
    """The largest shortfall ref - arm over the hours where both are known (negative: never behind)."""
    gaps = [r - a for a, r in zip(arm, ref, strict=False) if a is not None and r is not None
            and math.isfinite(a) and math.isfinite(r)]
    return max(gaps) if gaps else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _series(records: list[dict[str, Any]], arm: str, key: str, hours: list[str]) -> list[float | None]:
    by_hour = {r["hour"]: r for r in records if r["arm"] == arm}
    return [(by_hour.get(h, {}).get("prequential") or {}).get(key) for h in hours]


def _arm_summary(records: list[dict[str, Any]], arm: str, hours: list[str], drift_index: int | None,
                 ref: str | None) -> dict[str, Any]:
    ndcg, auc = _series(records, arm, "ndcg@10", hours), _series(records, arm, "auc", hours)
    own = [r for r in records if r["arm"] == arm]
    out: dict[str, Any] = {
        "ndcg@10": mean(ndcg), "auc": mean(auc),
        "ndcg@10_after_drift": mean(ndcg[drift_index:]) if drift_index is not None else None,
        "auc_after_drift": mean(auc[drift_index:]) if drift_index is not None else None,
        "promotions": sum(bool(r.get("promoted")) for r in own),
        "updates": sum(r.get("version") is not None for r in own),
        "learn_seconds": sum(r.get("learn_seconds") or 0.0 for r in own),
        "examples": sum(r.get("examples") or 0 for r in own),
        "peak_rss_mb": max((r["peak_rss_mb"] for r in own if r.get("peak_rss_mb") is not None), default=None),
        "human_interventions": max((r.get("pages") or 0 for r in own), default=0),
    }
    if ref is not None:
        ref_ndcg = _series(records, ref, "ndcg@10", hours)
        out["largest_ndcg@10_loss_vs_ref"] = largest_loss(ndcg, ref_ndcg)
        out["recovery_hours"] = (recovery_hours(ndcg, ref_ndcg, drift_index)
                                 if drift_index is not None else None)
    return out


def _last_learn(records: list[dict[str, Any]], arm: str) -> dict[str, Any] | None:
    learned = [r for r in records if r["arm"] == arm and r.get("version") is not None]
    return learned[-1] if learned else None


def summarize(records: list[dict[str, Any]], arms: Sequence[str], hours: list[str],
              drift_hour: str | None) -> dict[str, Any]:
    """Per arm: mean prequential NDCG@10/AUC (all scored hours, and from the drift on), recovery
    and largest loss vs the reference, cost; and the gated/full-retrain cost ratio at the end."""
    drift_index = hours.index(drift_hour) if drift_hour in hours else None
    ref = REFERENCE if REFERENCE in arms else None
    per_arm = {a: _arm_summary(records, a, hours, drift_index, ref) for a in arms}
    gated, full = _last_learn(records, "gated"), _last_learn(records, REFERENCE)
    cost = None
    if gated and full:
        cost = {"gated_hour": gated["hour"], "full_retrain_hour": full["hour"],
                "seconds": ratio(gated.get("learn_seconds"), full.get("learn_seconds")),
                "examples": ratio(gated.get("examples"), full.get("examples"))}
    return {"hours": hours, "drift_hour": drift_hour, "reference": ref, "arms": per_arm,
            "cost_ratio_gated_vs_full_retrain": cost}


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


def _rehome(db: Path, old: Path, new: Path) -> int:
    """Rewrite every path of `old` in an MLflow SQLite database (artifact locations, model sources)."""
    changed = 0
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            for col in con.execute(f'pragma table_info("{table}")').fetchall():
                if "CHAR" in col[2].upper() or "TEXT" in col[2].upper():
                    cur = con.execute(f'update "{table}" set "{col[1]}" = replace("{col[1]}", ?, ?) '
                                      f'where instr("{col[1]}", ?) > 0', (str(old), str(new), str(old)))
                    changed += cur.rowcount
    return changed


def copy_home(src: Path, dst: Path) -> None:
    """The bootstrapped data home as an arm's home: lake, MLflow, models; not the warehouse."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("warehouse.duckdb*", "*.yaml", "registry.lock"))
    _rehome(dst / "mlflow.db", src, dst)


def count_pages(home: Path) -> int:
    """Human interventions: lines of `<home>/alerts.jsonl` with "level": "page" (missing file: 0)."""
    path = home / "alerts.jsonl"
    if not path.is_file():
        return 0
    count = 0
    for line in path.read_text().splitlines():
        try:
            count += json.loads(line).get("level") == PAGE_LEVEL
        except (json.JSONDecodeError, AttributeError):
            continue
    return count


# --- measuring one step -------------------------------------------------------------------------
def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def _peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measured(fn: Callable[[], Any]) -> tuple[Any, float, float | None]:
    """(result, wall seconds, peak RSS in MiB during the call)."""
    _reset_peak_rss()
    began = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - began, _peak_rss_mb()


# --- lineage: what the served model was trained on --------------------------------------------
def _tag_hours(tag: str, fields: int) -> list[datetime]:
    """Hours of a `lineage.partitions` ("hour:sha", fields=1) or `lineage.replay_partitions`
    ("hour:sha:sampled", fields=2) tag."""
    hours = []
    for entry in filter(None, (tag or "").split(",")):
        hours.append(datetime.fromisoformat(entry.rsplit(":", fields)[0]))
    return hours


def served_lineage(settings: Settings, version: str | None) -> dict[str, Any]:
    """From the served version's MLflow run: its interval end and the last hour it trained on."""
    from incremental import tracking

    if version is None:
        return {"served_interval_end": None, "served_trained_through": None}
    client = tracking.configure(settings)
    tags = client.get_run(client.get_model_version(settings.model_name, version).run_id).data.tags
    hours = (_tag_hours(tags.get("lineage.partitions", ""), 1)
             + _tag_hours(tags.get("lineage.replay_partitions", ""), 2))
    return {"served_interval_end": tags.get("interval_end"),
            "served_trained_through": (max(hours) + HOUR).isoformat() if hours else None}


def verify_lineage(plan: Plan, records: list[dict[str, Any]]) -> list[str]:
    """Prequential order, re-read from each arm's MLflow: the version that scored hour h was
    trained only on rows ingested before h. Returns the violations (empty: the order holds)."""
    problems = []
    for rec in records:
        if rec.get("served_version") is None or rec.get("prequential") is None:
            continue
        settings = arm_settings(plan, rec["arm"])
        lineage = served_lineage(settings, rec["served_version"])
        hour = datetime.fromisoformat(rec["hour"])
        for key in ("served_interval_end", "served_trained_through"):
            value = lineage[key]
            if value is None or datetime.fromisoformat(value) > hour:
                problems.append(f"{rec['arm']} hour {rec['hour']}: served v{rec['served_version']} has {key} {value}")
    return problems


# --- scoring the served model --------------------------------------------------------------------
class Scorer:
    """The served model of one arm, loaded once per version; anchor scores kept per version."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.version: str | None = None
        self.model: Any = None
        self.anchor_scores: dict[str, Any] = {}

    def score(self, version: str, frame: Any) -> Any:
        from incremental import model as rk
        from incremental import tracking

        if version != self.version:
            self.model = rk.load_dir(tracking.version_model_dir(self.settings, version))
            self.version = version
        model, tokenizer = self.model
        return rk.score_frame(model, tokenizer, frame, max_length=self.settings.training.max_length,
                              device=rk.pick_device())

    def anchor(self, version: str, frame: Any) -> Any:
        if version not in self.anchor_scores:
            self.anchor_scores[version] = self.score(version, frame)
        return self.anchor_scores[version]


def _trim(evaluated: dict[str, Any]) -> dict[str, Any]:
    keys = ("rows", "ctr", "auc", "ndcg@10", "logloss", "ece")
    out = {k: evaluated.get(k) for k in keys}
    out["per_category"] = {c: {k: m.get(k) for k in keys} for c, m in evaluated.get("per_category", {}).items()}
    return out


def score_served(scorer: Scorer, version: str, frame: Any, anchor_frame: Any) -> dict[str, Any]:
    """Prequential metrics of the served model on the hour, and its anchor AUC (overall, per category)."""
    from incremental import metrics

    out: dict[str, Any] = {"prequential": None}
    if frame is not None and len(frame):
        out["prequential"] = _trim(metrics.evaluate(frame, scorer.score(version, frame)))
    anchor = metrics.evaluate(anchor_frame, scorer.anchor(version, anchor_frame))
    out["anchor_auc"] = anchor["auc"]
    out["anchor_auc_per_category"] = {c: m["auc"] for c, m in anchor["per_category"].items()}
    return out


# --- how an arm learns: the pipeline's own functions ------------------------------------------
def all_arms(plan: Plan) -> dict[str, Arm]:
    extra = {name: Arm(name, "hourly", f"run_hour with {spec['path']} merged over the config", config=spec["config"])
             for name, spec in (plan.extra_arms or {}).items()}
    return {**ARMS, **extra}


def arm_settings(plan: Plan, name: str) -> Settings:
    work = Path(plan.work)
    home = work / "data" if name == "data" else work / "arms" / name
    return home_settings(home, work / "configs" / f"{name}.yaml", _warehouse_url(plan), plan.base_model)


def _warehouse_url(plan: Plan) -> str:
    return f"duckdb:///{Path(plan.work) / 'data' / 'warehouse.duckdb'}"


def _run_cost(settings: Settings, version: str | None) -> dict[str, Any]:
    """Steps x batch size and the training loop's seconds, from the version's MLflow run."""
    from incremental import tracking

    if version is None:
        return {"examples": 0, "train_seconds": 0.0}
    client = tracking.configure(settings)
    run = client.get_run(client.get_model_version(settings.model_name, version).run_id)
    steps = run.data.metrics.get("steps", 0.0)
    batch = int(run.data.params.get("training.batch_size", settings.training.batch_size))
    return {"examples": int(steps * batch), "train_seconds": run.data.metrics.get("train_seconds", 0.0)}


def _force(settings: Settings, arm: Arm, result: dict[str, Any]) -> bool:
    """Serve the arm's new version even if the gate rejected it (recorded as an override)."""
    from incremental import registry

    if arm.force_reason and result.get("version") and result.get("champion") != result["version"]:
        registry.promote(settings, result["version"], arm.force_reason, who="benchmark")
        return True
    return bool(result.get("override"))


def learn(arm: Arm, settings: Settings, plan: Plan, hour: datetime, due: bool) -> dict[str, Any]:
    """The arm learns from `hour` (after it was scored); returns version, decision, override."""
    from incremental import pipeline

    if arm.learns == "none":
        return {"version": None, "decision": None, "overridden": False}
    if arm.learns == "hourly":
        result = pipeline.run_hour(settings, hour, force_promote_reason=arm.force_reason)
        if result["status"] == "quarantined":
            return {"version": None, "decision": "quarantined", "overridden": False}
        caught = result.get("catch_up") or {}  # a drift episode's catch-up retrain counts in the cost
        return {"version": result.get("version"), "decision": result.get("decision"),
                "overridden": bool(result.get("override")), "mode": result.get("mode"),
                "catch_up_version": caught.get("version"), "catch_up_decision": caught.get("decision")}
    pipeline.extract_step(settings, hour)
    status = pipeline.validate_step(settings, hour)["status"]
    if not due:
        return {"version": None, "decision": f"not due ({status})", "overridden": False}
    start = datetime.fromisoformat(plan.start)
    result = pipeline.full_retrain(settings, start, hour + HOUR, anchor_size=plan.anchor_size)
    return {"version": result["version"], "decision": result["decision"], "overridden": _force(settings, arm, result)}


def step_arm(arm: Arm, settings: Settings, scorer: Scorer, plan: Plan, hour: datetime, due: bool,
             frame: Any, anchor_frame: Any) -> dict[str, Any]:
    """Test, then train: score the hour with the served model, then let the arm learn from it."""
    from incremental import tracking

    client = tracking.configure(settings)
    served = tracking.champion_version(client, settings.model_name)
    rec: dict[str, Any] = {"hour": hour.isoformat(), "arm": arm.name, "served_version": served,
                           **served_lineage(settings, served)}
    if served is not None:
        rec.update(score_served(scorer, served, frame, anchor_frame))
    learned, seconds, rss = measured(lambda: learn(arm, settings, plan, hour, due))
    rec.update(learned)
    costs = [_run_cost(settings, v) for v in (learned["version"], learned.get("catch_up_version")) if v]
    rec.update({"examples": sum(c["examples"] for c in costs),
                "train_seconds": sum(c["train_seconds"] for c in costs)})
    rec["learn_seconds"] = seconds if arm.learns != "none" else 0.0
    rec["peak_rss_mb"] = rss if arm.learns != "none" else None
    rec["champion_after"] = tracking.champion_version(tracking.configure(settings), settings.model_name)
    rec["promoted"] = rec["champion_after"] != served
    rec["pages"] = count_pages(settings.home)
    return rec


# --- data, bootstrap, the loop ---------------------------------------------------------------
def load_data(plan: Plan, data: Settings) -> tuple[Plan, dict[str, Any]]:
    """Fill the shared warehouse: the simulator, or a judgment CSV (which sets the hours)."""
    from incremental.warehouse import Warehouse

    warehouse = Warehouse(data.warehouse_url)
    start = datetime.fromisoformat(plan.start)
    if plan.scenario == "judgments":
        from incremental.judgments import import_judgments

        summary = import_judgments(warehouse, Path(plan.judgments["path"]), start=start, rate=plan.rate,
                                   seed=plan.seed, **{k: v for k, v in plan.judgments.items() if k != "path"})
        hours = min(plan.hours, int(summary["hours"]))
        if hours <= plan.bootstrap_hours:
            raise ValueError(f"{plan.judgments['path']} fills {summary['hours']} hours at --rate {plan.rate}: "
                             f"not more than the {plan.bootstrap_hours} bootstrap hours")
        return replace(plan, hours=hours), summary
    from incremental.simulate import simulate

    drift_at = start + plan.drift_hour * HOUR if plan.scenario == "drift" else None
    summary = simulate(warehouse, start, start + plan.hours * HOUR, rate=plan.rate, seed=plan.seed,
                       scenario=plan.scenario, drift_at=drift_at)
    return plan, {k: v for k, v in summary.items() if k not in ("faults", "per_hour")}


def bootstrap(plan: Plan, data: Settings) -> dict[str, Any]:
    """The first champion, once, in the data home (through pipeline.full_retrain and the gate;
    served even if the gate's value thresholds reject it, with the reason recorded)."""
    from incremental import pipeline, registry

    start = datetime.fromisoformat(plan.start)
    window = [start + i * HOUR for i in range(plan.bootstrap_hours)]
    statuses = {}
    for hour in window:
        pipeline.extract_step(data, hour)
        statuses[hour.isoformat()] = pipeline.validate_step(data, hour)["status"]
    result = pipeline.full_retrain(data, start, start + plan.bootstrap_hours * HOUR, anchor_size=plan.anchor_size)
    if result["decision"] != "approved":
        registry.promote(data, result["version"], "benchmark bootstrap: every arm starts from this model",
                         who="benchmark")
    return {"version": result["version"], "decision": result["decision"], "reasons": result.get("reasons"),
            "hours": statuses, **_run_cost(data, result["version"])}


def prepare_hour(data: Settings, hour: datetime) -> tuple[str, Any]:
    """Extract and validate the hour in the data home; its validated rows (None if quarantined)."""
    from incremental import lake, pipeline

    pipeline.extract_step(data, hour)
    status = pipeline.validate_step(data, hour)["status"]
    if status != "validated":
        return status, None
    return status, lake.read_partition(lake.partition(data.lake, hour)).to_pandas()


def write_configs(plan: Plan, arms: dict[str, Arm]) -> dict[str, Any]:
    base = Path(plan.base_config) if plan.base_config else None
    configs = Path(plan.work) / "configs"
    common = {"training": plan.training} if plan.training else {}
    out = {"data": write_arm_config(base, configs / "data.yaml", common)}
    for name in plan.arms:
        out[name] = write_arm_config(base, configs / f"{name}.yaml", common, arms[name].config)
    return out


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(rec: dict[str, Any], elapsed: float, done: int, total: int) -> str:
    eta = elapsed / done * (total - done) if done else 0.0
    pre = rec.get("prequential") or {}
    learned = f"{rec.get('decision')} v{rec['version']}" if rec.get("version") else str(rec.get("decision"))
    return (f"[{_clock(elapsed)} elapsed, ~{_clock(eta)} left] {rec['hour'][:16]} {rec['arm']:<13} "
            f"served v{rec.get('served_version')}: NDCG@10 {_fmt(pre.get('ndcg@10'))} AUC {_fmt(pre.get('auc'))} "
            f"anchor {_fmt(rec.get('anchor_auc'))} | learned: {learned}{' (forced)' if rec.get('overridden') else ''}"
            f", champion v{rec.get('champion_after')}, {rec.get('learn_seconds', 0):.1f}s, {rec.get('examples', 0)} ex")


def run(plan: Plan, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole benchmark: data, bootstrap, homes, then test-then-train hour by hour; writes the results."""
    began, stamped = time.perf_counter(), stamp(plan)  # the code that runs: stamped before the run
    arms = all_arms(plan)
    work = Path(plan.work)
    shutil.rmtree(work, ignore_errors=True)
    configs = write_configs(plan, arms)
    data = arm_settings(plan, "data")
    plan, data_summary = load_data(plan, data)
    log(f"data: {plan.scenario}, {plan.hours} hours at {plan.rate}/h in {data.warehouse_url}")
    boot, boot_seconds, _ = measured(lambda: bootstrap(plan, data))
    log(f"bootstrap: v{boot['version']} ({boot['decision']}) on {plan.bootstrap_hours} hours in {boot_seconds:.0f}s")
    for name in plan.arms:
        copy_home(data.home, work / "arms" / name)
    from incremental import anchor

    anchor_frame, anchor_info = anchor.load(data.lake)
    state = {name: (arms[name], arm_settings(plan, name)) for name in plan.arms}
    scorers = {name: Scorer(settings) for name, (_, settings) in state.items()}
    start = datetime.fromisoformat(plan.start)
    hours = [start + i * HOUR for i in range(plan.bootstrap_hours, plan.hours)]
    records, statuses, loop_began = [], {}, time.perf_counter()
    for i, hour in enumerate(hours):
        statuses[hour.isoformat()], frame = prepare_hour(data, hour)
        due = (i + 1) % plan.retrain_every == 0 or i == len(hours) - 1
        for name, (arm, settings) in state.items():
            records.append(step_arm(arm, settings, scorers[name], plan, hour, due, frame, anchor_frame))
            log(progress_line(records[-1], time.perf_counter() - loop_began, len(records),
                              len(hours) * len(state)))
    drift = (start + plan.drift_hour * HOUR).isoformat() if plan.drift_hour is not None else None
    result = {"stamp": stamped, "plan": asdict(plan), "configs": configs, "data": data_summary,
              "bootstrap": {**boot, "seconds": boot_seconds}, "anchor": {"sha256": anchor_info.sha256,
              "rows": anchor_info.rows}, "hour_status": statuses, "records": records,
              "summary": summarize(records, plan.arms, [h.isoformat() for h in hours], drift),
              "seconds": time.perf_counter() - began}
    result["files"] = write_results(result, Path(plan.out))
    return result


# --- results ------------------------------------------------------------------------------------
def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def stamp(plan: Plan) -> dict[str, Any]:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), None) if Path("/proc/cpuinfo").is_file() else None
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": _git("rev-parse", "HEAD"),
            "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu": cpu,
                        "python": platform.python_version(), "torch": torch.__version__,
                        "device": "cuda" if torch.cuda.is_available() else "cpu"},
            "model": plan.base_model, "command": " ".join(sys.argv)}


def result_name(plan: dict[str, Any]) -> str:
    return f"continual-{plan['preset']}-{plan['scenario']}"


def summary_table(summary: dict[str, Any]) -> str:
    """The per-arm summary as a Markdown table."""
    head = ("| arm | NDCG@10 | AUC | NDCG@10 after drift | AUC after drift | recovery (h) | largest NDCG@10 loss vs"
            " full_retrain | updates served / made | learn s | examples | peak RSS MiB | pages |")
    lines = [head, "|" + " --- |" * 12]
    for arm, s in summary["arms"].items():
        recovery = s.get("recovery_hours")
        lines.append(
            f"| {arm} | {_fmt(s['ndcg@10'])} | {_fmt(s['auc'])} | {_fmt(s['ndcg@10_after_drift'])} | "
            f"{_fmt(s['auc_after_drift'])} | {'not within window' if recovery is None and summary['drift_hour'] and summary['reference'] else _fmt(recovery, 'd')} | "
            f"{_fmt(s.get('largest_ndcg@10_loss_vs_ref'))} | {s['promotions']} / {s['updates']} | "
            f"{s['learn_seconds']:.0f} | {s['examples']} | {_fmt(s['peak_rss_mb'], '.0f')} | {s['human_interventions']} |")
    return "\n".join(lines)


def _hour_table(result: dict[str, Any]) -> str:
    arms = result["plan"]["arms"]
    lines = ["| hour | " + " | ".join(arms) + " |", "|" + " --- |" * (len(arms) + 1)]
    by = {(r["hour"], r["arm"]): r for r in result["records"]}
    for hour in result["summary"]["hours"]:
        cells = []
        for arm in arms:
            r = by.get((hour, arm), {})
            mark = {"approved": " ✓", "rejected": " ✗"}.get(str(r.get("decision")), "")
            forced = " (forced)" if r.get("overridden") else ""
            cells.append(f"{_fmt((r.get('prequential') or {}).get('ndcg@10'))} v{r.get('served_version')}{mark}{forced}")
        drift = " (drift)" if hour == result["summary"]["drift_hour"] else ""
        lines.append(f"| {hour[:16]}{drift} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(result: dict[str, Any], charts: dict[str, str]) -> str:
    plan, st, summary = result["plan"], result["stamp"], result["summary"]
    cost = summary["cost_ratio_gated_vs_full_retrain"] or {}
    arms = all_arms(Plan(**plan))
    return "\n".join([
        f"# Prequential benchmark: `{plan['preset']}` preset, `{plan['scenario']}` scenario", "",
        f"Commit `{st['commit']}`{' (uncommitted changes)' if st['dirty'] else ''}, {st['date']}; model "
        f"`{st['model']}`; {st['machine']['cpus']} CPUs ({st['machine']['cpu']}), {st['machine']['device']}, "
        f"torch {st['machine']['torch']}; took {result['seconds']:.0f} s.", "",
        f"{plan['hours']} hours at {plan['rate']} impressions/h (seed {plan['seed']}): {plan['bootstrap_hours']} "
        f"bootstrap hours, then {len(summary['hours'])} scored hours"
        + (f", drift from {summary['drift_hour'][:16]}" if summary["drift_hour"] else "")
        + f"; full retrain every {plan['retrain_every']} h; anchor {result['anchor']['rows']} rows "
        f"({result['anchor']['sha256'][:12]}); step overrides for every arm: {plan['training'] or 'none'} "
        f"(over the config, its `models.{plan['base_model']}` entry included).", "",
        "Each hour is scored by the model the arm served at the close of the previous hour, then the arm "
        "learns from it. Means are over the scored hours; recovery is the hours from the drift until NDCG@10 "
        f"is within {RECOVERY_TOLERANCE} of full_retrain's; pages are the gated pipeline's human interventions.", "",
        summary_table(summary), "",
        f"Cost of the last gated update vs the last full retrain: {_fmt(cost.get('seconds'), '.2f')}x the seconds, "
        f"{_fmt(cost.get('examples'), '.2f')}x the examples.", "",
        "## Arms", "", *[f"- `{a}`: {arms[a].description}" for a in plan["arms"]], "",
        "## Prequential NDCG@10 per hour (served version; ✓/✗ the gate's verdict on the update that followed)", "",
        _hour_table(result), "", *[f"![{k}]({v})" for k, v in charts.items()], ""])


def charts(result: dict[str, Any], folder: Path, name: str) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, plan = result["summary"], result["plan"]
    hours = summary["hours"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("P", "--")]
    for i, arm in enumerate(plan["arms"]):  # markers and dashes: arms that serve the same model overlap
        marker, line = styles[i % len(styles)]
        ax.plot(range(len(hours)), _series(result["records"], arm, "ndcg@10", hours), marker=marker,
                linestyle=line, markersize=8 - i, label=arm)
    if summary["drift_hour"] in hours:
        ax.axvline(hours.index(summary["drift_hour"]), color="red", linestyle="--", label="drift")
    ax.set_xticks(range(len(hours)), [h[11:16] if len(hours) <= 24 else h[5:13] for h in hours], rotation=45)
    ax.set(xlabel="hour (UTC)", ylabel="prequential NDCG@10", title=f"{plan['preset']} / {plan['scenario']}")
    ax.legend()
    fig.tight_layout()
    files = {"ndcg_per_hour": f"{name}-ndcg.png", "cost_vs_quality": f"{name}-cost.png"}
    fig.savefig(folder / files["ndcg_per_hour"], dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for arm, s in summary["arms"].items():
        ax.scatter(s["learn_seconds"], s["ndcg@10"] if s["ndcg@10"] is not None else math.nan, s=60)
        ax.annotate(arm, (s["learn_seconds"], s["ndcg@10"] or 0), textcoords="offset points", xytext=(5, 5))
    ax.set(xlabel="learning cost: seconds over the scored hours", ylabel="mean prequential NDCG@10",
           title="cost against quality")
    fig.tight_layout()
    fig.savefig(folder / files["cost_vs_quality"], dpi=110)
    plt.close(fig)
    return files


def write_results(result: dict[str, Any], folder: Path) -> dict[str, str]:
    from incremental.evaluate import strict_json

    folder.mkdir(parents=True, exist_ok=True)
    name = result_name(result["plan"])
    files = charts(result, folder, name)
    (folder / f"{name}.md").write_text(markdown(result, files))
    (folder / f"{name}.json").write_text(json.dumps(strict_json(result), indent=1, sort_keys=True) + "\n")
    return {"json": str(folder / f"{name}.json"), "markdown": str(folder / f"{name}.md"),
            **{k: str(folder / v) for k, v in files.items()}}


# --- command line ---------------------------------------------------------------------------------
def help_epilog() -> str:
    arms = "\n".join(f"  {a.name:<13} {a.description}" for a in ARMS.values())
    presets = "\n".join(f"  {n:<6} {p.description}" for n, p in PRESETS.items())
    return (f"arms (--arms, default all):\n{arms}\n  (--arm-config NAME=PATH adds a run_hour arm with PATH's YAML "
            "merged over the config, e.g. a second gate setting)\n\n"
            "scenarios (--scenario):\n  steady     the simulator, no drift\n"
            "  drift      the simulator, drift from --drift-hour (hours from the start)\n"
            "  judgments  a relevance-judgment CSV through import-judgments (--judgments PATH and its column options)\n\n"
            f"presets (--preset; any option below overrides the preset's value):\n{presets}\n\n"
            "examples:\n  incremental benchmark continual --preset small --scenario drift\n"
            "  incremental benchmark continual --preset full --scenario drift"
            " --retrain-every 6\n  incremental benchmark continual --preset small --scenario judgments --judgments "
            "data.csv.zip --query-col search_term --title-col product_title --grade-col relevance --encoding latin-1")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = help_epilog()
    p.add_argument("--preset", choices=tuple(PRESETS), default="small")
    p.add_argument("--scenario", choices=SCENARIOS, default="drift")
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms (default: %(default)s)")
    p.add_argument("--arm-config", action="append", default=[], metavar="NAME=PATH",
                   help="an extra run_hour arm: PATH's YAML sections merged over the config")
    p.add_argument("--hours", type=int, help="hours in all, bootstrap included")
    p.add_argument("--bootstrap-hours", type=int, help="hours the first champion is trained on")
    p.add_argument("--drift-hour", type=int, help="first drifted hour, counted from the start")
    p.add_argument("--rate", type=int, help="impressions an hour")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retrain-every", type=int, metavar="K", help="full_retrain every K hours (and at the last)")
    p.add_argument("--anchor-size", type=int, help="rows of the benchmark anchor (frozen at the bootstrap)")
    p.add_argument("--max-steps", type=int, help="steps per hourly update (default: the preset's or the config's)")
    p.add_argument("--bootstrap-steps", type=int, help="steps per bootstrap / full retrain")
    p.add_argument("--model", help="base model of every arm (default: %(default)s; INCREMENTAL_BASE_MODEL is not read)",
                   default=PRESET_MODEL)
    p.add_argument("--config", type=Path, help="base config (default: INCREMENTAL_CONFIG or incremental.yaml)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default: %(default)s)")
    p.add_argument("--work", type=Path, help="homes of the arms (default: a new folder under /tmp; kept)")
    g = p.add_argument_group("judgments scenario (see `incremental import-judgments --help`)")
    g.add_argument("--judgments", type=Path, metavar="PATH")
    g.add_argument("--query-col", default="query")
    g.add_argument("--title-col", default="title")
    g.add_argument("--grade-col", default="grade")
    g.add_argument("--encoding", default="utf-8")
    g.add_argument("--slice-by", choices=("brand", "hash"), default="brand")


def _extra_arms(specs: list[str]) -> dict[str, Any]:
    out = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not name or not path or name in ARMS:
            raise ValueError(f"--arm-config {spec!r}: expected NAME=PATH with a new arm name")
        out[name] = {"path": path, "config": yaml.safe_load(Path(path).read_text()) or {}}
    return out


def plan_from_args(args: argparse.Namespace, config_file: Path | None = None) -> Plan:
    import tempfile

    preset = PRESETS[args.preset]
    extra = _extra_arms(args.arm_config)
    arms = tuple(a for a in args.arms.split(",") if a) + tuple(extra)
    unknown = [a for a in arms if a not in ARMS and a not in extra]
    if unknown:
        raise ValueError(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)} or add --arm-config")
    if args.scenario == "judgments" and args.judgments is None:
        raise ValueError("--scenario judgments needs --judgments PATH")
    training = dict(preset.training)
    training.update({k: v for k, v in (("max_steps", args.max_steps), ("bootstrap_steps", args.bootstrap_steps))
                     if v is not None})
    pick = lambda value, default: default if value is None else value  # noqa: E731
    plan = Plan(
        preset=args.preset, scenario=args.scenario, arms=arms, hours=pick(args.hours, preset.hours),
        bootstrap_hours=pick(args.bootstrap_hours, preset.bootstrap_hours),
        drift_hour={"drift": pick(args.drift_hour, preset.drift_hour), "judgments": args.drift_hour}.get(args.scenario),
        rate=pick(args.rate, preset.rate), seed=args.seed, retrain_every=pick(args.retrain_every, preset.retrain_every),
        anchor_size=pick(args.anchor_size, preset.anchor_size), training=training,
        base_model=args.model or PRESET_MODEL,
        base_config=str(args.config or config_file or ""), out=str(args.out),
        work=str(args.work or tempfile.mkdtemp(prefix="continual-")),
        judgments={"path": str(args.judgments), "query_col": args.query_col, "title_col": args.title_col,
                   "grade_col": args.grade_col, "encoding": args.encoding, "slice_by": args.slice_by}
        if args.scenario == "judgments" else None,
        extra_arms=extra or None)
    if not 0 < plan.bootstrap_hours < plan.hours or plan.retrain_every < 1:
        raise ValueError("need 0 < --bootstrap-hours < --hours and --retrain-every >= 1")
    if plan.scenario == "drift" and not plan.bootstrap_hours < plan.drift_hour < plan.hours:
        raise ValueError("--drift-hour must fall among the scored hours (after the bootstrap window)")
    return plan


def main(args: argparse.Namespace, config_file: Path | None = None) -> dict[str, Any]:
    """`incremental benchmark continual`: run the plan, print the summary table and where the files are."""
    plan = plan_from_args(args, config_file)
    print(f"continual benchmark: preset {plan.preset}, scenario {plan.scenario}, arms {', '.join(plan.arms)}, "
          f"model {plan.base_model}; homes under {plan.work}", flush=True)
    result = run(plan, log=lambda line: print(line, flush=True))
    print(summary_table(result["summary"]))
    for kind, path in result["files"].items():
        print(f"{kind}: {path}")
    return result
