"""Does each gate rule earn its place? Every decision of a benchmark run's gate, judged on the truth.

A run of the prequential benchmark (`python -m benchmarks.continual ...`) keeps its arms' homes and
the truth of its rows. For every candidate an arm's gate judged (against a champion; first models
are left out), this scores the candidate and the champion it was compared with on:

- `next`: the hours after the candidate's window (`--horizon`), the traffic it would have served:
  truth NDCG@10 (graded by the simulator's hidden relevance), candidate minus champion, with a 90%
  paired bootstrap interval over sessions;
- `probe` (drift scenario): the forgetting probe, pre-drift traffic of the categories the drift leaves
  alone that no arm trained on (`benchmarks.continual.probe`), the same measure: what still holds.

A candidate is `better` when an interval lies above 0 and neither lies below it, `worse` when one
lies below 0, `level` otherwise. A rule is **decisive** for a rejection when it is the only check
that failed: with that rule switched off the candidate would have been promoted. Per rule: how often
it failed, how often it decided alone, and what the candidates it alone rejected were on the truth.
A rule that rejected only `better` candidates alone cost quality; one that never decided alone
changed nothing in this run; one whose lone rejections were `worse` earned its place.

This is a one-step counterfactual, cheap because it reuses the run's models: it does not follow
what a promotion would have led to in later hours (that is the ablation with an arm per rule,
`--arm-config`, an hour-by-hour rerun). The confusion table (gate decision x truth verdict) says how
often the gate as a whole was right.

    .venv/bin/python benchmarks/gate_rules_bench.py --result benchmarks/results/continual/<run>.json [--arm gated]

Results: benchmarks/results/gate_rules-<run>-<arm>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._record import record  # noqa: E402
from benchmarks.continual.homes import arm_settings  # noqa: E402
from benchmarks.continual.plan import HOUR, Plan  # noqa: E402
from benchmarks.continual.probe import probe_settings, unchanged_categories  # noqa: E402
from benchmarks.continual.step import Scorer  # noqa: E402
from benchmarks.continual.truth import TRUTH_FILE, Truth, group_ndcg, paired_truth, simulator_truth  # noqa: E402
from incremental.hours import parse_hour  # noqa: E402


# --- the truth of a comparison ------------------------------------------------------------------
def truth_diff(frame: pd.DataFrame, candidate: np.ndarray, champion: np.ndarray, gains: np.ndarray, *,
               samples: int = 1000, confidence: float = 0.9, seed: int = 0) -> dict[str, Any]:
    """Truth NDCG@10 of candidate minus champion over (session, query) groups, with a paired
    bootstrap interval over sessions; rows whose truth is unknown are left out."""
    return paired_truth([group_ndcg(frame, candidate, gains)], [group_ndcg(frame, champion, gains)],
                        samples=samples, confidence=confidence, seed=seed)


def verdict(*diffs: dict[str, Any]) -> str:
    measured = [d for d in diffs if math.isfinite(d.get("lo", math.nan))]
    if any(d["hi"] < 0 for d in measured):
        return "worse"
    if any(d["lo"] > 0 for d in measured):
        return "better"
    return "level"


# --- the run's rows and models --------------------------------------------------------------------
def load_plan(result: dict[str, Any]) -> Plan:
    names = {f.name for f in fields(Plan)}
    raw = {k: v for k, v in result["plan"].items() if k in names}
    return Plan(**{**raw, "arms": tuple(raw["arms"])})


def validated_rows(lake_root: Any, hours: list[Any]) -> pd.DataFrame | None:
    """The validated rows of these hours (quarantined and missing hours have none)."""
    from incremental.data import lake

    parts = [lake.partition(lake_root, hour) for hour in hours]
    frames = [lake.read_partition(p).to_pandas() for p in parts if p.status == "validated"]
    return pd.concat(frames, ignore_index=True) if frames else None


def load_probe(plan: Plan) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The probe's rows of the unchanged categories and their truth (regenerated: the probe is the
    steady scenario, same seed and rate, the hours before the run's window)."""
    categories = unchanged_categories(plan)
    if not categories or not plan.probe_hours:
        return None
    end = parse_hour(plan.start)
    start = end - plan.probe_hours * HOUR
    frame = validated_rows(probe_settings(plan).lake, [start + i * HOUR for i in range(plan.probe_hours)])
    if frame is None:
        return None
    frame = frame[frame["category"].astype(str).isin(categories)].reset_index(drop=True)
    truth = Truth(simulator_truth(start, end, rate=plan.rate, seed=plan.seed, scenario="steady", drift_at=None))
    return frame, truth.gains(frame)


def version_of_run(settings: Any, run_id: str) -> str | None:
    from incremental.registry import tracking

    client = tracking.configure(settings)
    found = client.search_model_versions(f"name = {tracking.quote(settings.model_name)} and run_id = "
                                         f"{tracking.quote(run_id)}")
    return str(found[0].version) if found else None


# --- judging every decision -----------------------------------------------------------------------
def judge_decision(evaluation: dict[str, Any], plan: Plan, settings: Any, scorer: Scorer, truth: Truth,
                   probe: tuple[pd.DataFrame, np.ndarray] | None, horizon: int) -> dict[str, Any] | None:
    champion = evaluation.get("compared_with")
    version = version_of_run(settings, evaluation["run_id"])
    if not champion or not version:
        return None
    end = parse_hour(evaluation["interval_end"])
    last = parse_hour(plan.start) + plan.hours * HOUR
    frame = validated_rows(arm_settings(plan, "data").lake, [end + i * HOUR for i in range(horizon) if end + i * HOUR < last])
    out: dict[str, Any] = {"hour": evaluation["interval_start"], "kind": evaluation.get("kind"),
                           "mode": evaluation.get("mode"), "version": version, "champion": champion,
                           "decision": evaluation["decision"]["decision"],
                           "checked": [c["name"] for c in evaluation["decision"]["checks"]],
                           "failed": [c["name"] for c in evaluation["decision"]["checks"] if not c["passed"]]}
    diffs = []
    if frame is not None:
        out["next"] = truth_diff(frame, scorer.score(version, frame), scorer.score(champion, frame),
                                 truth.gains(frame))
        diffs.append(out["next"])
    if probe is not None:
        rows, gains = probe
        out["probe"] = truth_diff(rows, scorer.anchor(version, rows), scorer.anchor(champion, rows), gains)
        diffs.append(out["probe"])
    out["truth"] = verdict(*diffs)
    return out


def rule_table(decisions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    names = dict.fromkeys(name for d in decisions for name in [*d.get("checked", []), *d["failed"]])
    rules: dict[str, dict[str, Any]] = {name: {"failed": 0, "decisive": 0, "decisive_truth": Counter()}
                                        for name in names}
    for d in decisions:
        for name in d["failed"]:
            rule = rules[name]
            rule["failed"] += 1
            if len(d["failed"]) == 1:
                rule["decisive"] += 1
                rule["decisive_truth"][d["truth"]] += 1
    for rule in rules.values():
        seen = rule["decisive_truth"]
        rule["decisive_truth"] = dict(seen)
        rule["reading"] = ("never failed" if not rule["failed"]
                           else "never decided alone: switching it off changes nothing here" if not rule["decisive"]
                           else "earned its place: it alone rejected a candidate worse on the truth" if seen["worse"]
                           else "cost quality: it alone rejected only candidates better on the truth" if not seen["level"]
                           else "no evidence either way: what it alone rejected was level with the champion")
    return rules


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--result", type=Path, required=True, help="a continual benchmark result JSON (its homes kept)")
    p.add_argument("--arm", default="gated")
    p.add_argument("--horizon", type=int, default=3, help="hours after the window judged as `next`")
    args = p.parse_args()
    result = json.loads(args.result.read_text())
    plan = load_plan(result)
    settings = arm_settings(plan, args.arm)
    evaluations = [json.loads(f.read_text()) for f in (settings.home / "evaluations").glob("*.json")]
    evaluations.sort(key=lambda e: (e["interval_start"], e["interval_end"]))
    truth, probe, scorer = Truth.load(Path(plan.work) / TRUTH_FILE), load_probe(plan), Scorer(settings)
    decisions = []
    for n, evaluation in enumerate(evaluations, 1):
        judged = judge_decision(evaluation, plan, settings, scorer, truth, probe, args.horizon)
        if judged:
            decisions.append(judged)
            print(f"[{n}/{len(evaluations)}] {judged['hour']} v{judged['version']} {judged['decision']:8s} "
                  f"truth {judged['truth']:6s} failed: {', '.join(judged['failed']) or '-'}", flush=True)
    confusion = Counter(f"{d['decision']} / {d['truth']}" for d in decisions)
    name = f"gate_rules-{args.result.stem}-{args.arm}"
    record(name, {"run": str(args.result), "run_commit": result.get("stamp", {}).get("commit"), "arm": args.arm,
                  "horizon": args.horizon, "decisions": decisions, "confusion": dict(confusion),
                  "rules": rule_table(decisions)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
