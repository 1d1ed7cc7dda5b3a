"""The prequential benchmark's plan: the arms and presets (data), the resolved `Plan` of one
run, and the `python -m benchmarks.continual` options and help that build it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from incremental.config import REPO_ROOT

HOUR = timedelta(hours=1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "continual"
SCENARIOS = ("steady", "drift", "judgments")
PRESET_MODEL = "minilm-l2"  # MiniLM's embeddings + 2 layers, mean-pooled: learns the simulator's signal, ~2x MiniLM's speed


# --- arms and presets: data ------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    name: str
    learns: str  # "none" | "hourly" (pipeline.run_hour) | "retrain" (retrain.full_retrain)
    description: str
    config: dict[str, Any] = field(default_factory=dict)  # overrides of the YAML sections, e.g. {"training": {...}}
    force_reason: str | None = None  # promote even when the gate rejects (recorded in the registry)
    scorer: str = "served"  # "served" (the arm's champion) | "oracle" | "lexical" (`truth`: no model, no home)

    @property
    def has_model(self) -> bool:
        return self.scorer == "served"


ARMS: dict[str, Arm] = {
    "frozen": Arm("frozen", "none", "the bootstrap champion, never updated (no learning)"),
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
    "lexical": Arm("lexical", "none", "BM25 on query and title words, IDF refitted each hour on the titles of the "
                   "hours before it; no clicks, no training (the floor a transformer must beat)", scorer="lexical"),
    "oracle": Arm("oracle", "none", "ranks by the hidden relevance (the simulator's, or the judgment grades): "
                  "truth NDCG@10 1 by construction, its click figures the ceiling", scorer="oracle"),
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
    probe_hours: int = 8  # pre-drift hours of the forgetting probe (`benchmarks.continual.probe`)
    # over `training`, for the full_retrain arm only: the reference trains until early stopping ends it
    reference_training: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "small": Preset(hours=6, bootstrap_hours=2, drift_hour=3, rate=300, retrain_every=1, anchor_size=300,
                    training={"max_steps": 15, "bootstrap_steps": 40}, probe_hours=3,
                    description="6 hours (2 bootstrap, 4 scored, drift at hour 3), 300 impressions/h, "
                                "15 steps/update, 40 steps/retrain: plumbing-sized (too little data for minilm-l2 to "
                                "learn the signal: its figures are no evidence of quality); the test suite runs it"),
    "medium": Preset(hours=16, bootstrap_hours=4, drift_hour=8, rate=1000, retrain_every=4, anchor_size=1000,
                     training={"max_steps": 30},
                     # to convergence: 3 passes, the schedule sized to them, ended by early stopping on its
                     # own sessions (a 5,000-step cap made the schedule 5,000 steps long, and early stopping
                     # ended one retrain inside its warm-up: benchmarks/early_stopping_bench.py)
                     reference_training={"bootstrap_steps": 300, "bootstrap_epochs": 3.0},
                     description="16 hours (4 bootstrap, drift at hour 8), 1,000 impressions/h, 30 steps/update, "
                                 "full retrain (to convergence) every 4 hours: about 40 minutes on 2 CPU cores with minilm-l2 (4 arms)"),
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
    pair_with: str = "gated"  # the arm an --arm-config arm's truth is paired with (--pair-with)
    probe_hours: int = 0  # the drift scenario's forgetting probe: simulated pre-drift hours no arm trains on
    reference_training: dict[str, Any] | None = None  # the full_retrain arm's training, over `training`


def all_arms(plan: Plan) -> dict[str, Arm]:
    extra = {name: Arm(name, "hourly", f"run_hour with {spec['path']} merged over the config", config=spec["config"])
             for name, spec in (plan.extra_arms or {}).items()}
    return {**ARMS, **extra}


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
            "examples:\n  python -m benchmarks.continual --preset small --scenario drift\n"
            "  python -m benchmarks.continual --preset full --scenario drift"
            " --retrain-every 6\n  python -m benchmarks.continual --preset small --scenario judgments --judgments "
            "data.csv.zip --query-col search_term --title-col product_title --grade-col relevance --encoding latin-1")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = help_epilog()
    p.add_argument("--preset", choices=tuple(PRESETS), default="small")
    p.add_argument("--scenario", choices=SCENARIOS, default="drift")
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms (default: %(default)s)")
    p.add_argument("--arm-config", action="append", default=[], metavar="NAME=PATH",
                   help="an extra run_hour arm: PATH's YAML sections merged over the config")
    p.add_argument("--pair-with", default="gated", metavar="ARM",
                   help="the arm each --arm-config arm is paired with on the truth (default: %(default)s)")
    p.add_argument("--hours", type=int, help="hours in all, bootstrap included")
    p.add_argument("--bootstrap-hours", type=int, help="hours the first champion is trained on")
    p.add_argument("--drift-hour", type=int, help="first drifted hour, counted from the start")
    p.add_argument("--rate", type=int, help="impressions an hour")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retrain-every", type=int, metavar="K", help="full_retrain every K hours (and at the last)")
    p.add_argument("--anchor-size", type=int, help="rows of the benchmark anchor (frozen at the bootstrap)")
    p.add_argument("--probe-hours", type=int, help="pre-drift hours simulated for the forgetting probe (drift scenario; 0: none)")
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
    if extra and args.pair_with not in arms:
        raise ValueError(f"--pair-with {args.pair_with}: not among the arms ({', '.join(arms)})")
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
        extra_arms=extra or None, pair_with=args.pair_with, probe_hours=pick(args.probe_hours, preset.probe_hours),
        reference_training=dict(preset.reference_training) or None)
    if not 0 < plan.bootstrap_hours < plan.hours or plan.retrain_every < 1:
        raise ValueError("need 0 < --bootstrap-hours < --hours and --retrain-every >= 1")
    if plan.scenario == "drift" and (plan.drift_hour is None
                                     or not plan.bootstrap_hours < plan.drift_hour < plan.hours):
        raise ValueError("--drift-hour must fall among the scored hours (after the bootstrap window)")
    return plan
