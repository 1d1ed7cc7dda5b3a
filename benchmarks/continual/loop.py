"""The prequential benchmark's run: the shared data and the bootstrap, then hour by hour each arm
takes its step (`benchmarks.continual.step`: score the hour with the model it serves, then learn
from it); the forgetting probe, the summary and the files at the end."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks.continual.homes import arm_settings, copy_home, write_configs
from benchmarks.continual.plan import HOUR, Plan, all_arms
from benchmarks.continual.probe import build_probe, forgetting, served_at, unchanged_categories
from benchmarks.continual.report import GROUPS, fmt, stamp, summarize, write_results
from benchmarks.continual.step import Scorer, measured, run_cost, step_arm, step_reference
from benchmarks.continual.truth import TRUTH_FILE, Truth, judgment_truth, simulator_truth, titles_of
from incremental.config import Settings
from incremental.hours import Hour, parse_hour


# --- data, bootstrap, the loop ---------------------------------------------------------------
def load_data(plan: Plan, data: Settings) -> tuple[Plan, dict[str, Any]]:
    """Fill the shared warehouse: the simulator, or a judgment CSV (which sets the hours); and
    write the truth of those rows to the benchmark's own `<work>/truth.parquet` (never to the
    warehouse or a lake): the summary's "truth" says what it holds."""
    from incremental.data.warehouse import Warehouse

    warehouse = Warehouse(data.warehouse_url)
    start = parse_hour(plan.start)
    if plan.scenario == "judgments":
        from incremental.sim.judgments import import_judgments

        judgments = plan.judgments
        assert judgments is not None  # plan_from_args sets it for this scenario
        imported = import_judgments(warehouse, Path(judgments["path"]), start=start, rate=plan.rate,
                                    seed=plan.seed, **{k: v for k, v in judgments.items() if k != "path"})
        summary: dict[str, Any] = {**imported,
                                   "truth": Truth(judgment_truth(**judgments)).save(Path(plan.work) / TRUTH_FILE)}
        hours = min(plan.hours, int(summary["hours"]))
        if hours <= plan.bootstrap_hours:
            raise ValueError(f"{judgments['path']} fills {summary['hours']} hours at --rate {plan.rate}: "
                             f"not more than the {plan.bootstrap_hours} bootstrap hours")
        return replace(plan, hours=hours), summary
    from incremental.sim.simulate import simulate

    drift_at = start + plan.drift_hour * HOUR if plan.scenario == "drift" and plan.drift_hour is not None else None
    args: dict[str, Any] = {"rate": plan.rate, "seed": plan.seed, "scenario": plan.scenario, "drift_at": drift_at}
    simulated = simulate(warehouse, start, start + plan.hours * HOUR, **args)
    summary = {**simulated, "truth": Truth(simulator_truth(start, start + plan.hours * HOUR, **args)).save(
        Path(plan.work) / TRUTH_FILE)}
    return plan, {k: v for k, v in summary.items() if k not in ("faults", "per_hour")}


def bootstrap(plan: Plan, data: Settings) -> dict[str, Any]:
    """The first champion, once, in the data home (through retrain.full_retrain and the gate;
    served even if the gate's value thresholds reject it, with the reason recorded)."""
    from incremental import pipeline, retrain
    from incremental.registry import champion as registry

    start = parse_hour(plan.start)
    window = [start + i * HOUR for i in range(plan.bootstrap_hours)]
    statuses = {}
    for hour in window:
        pipeline.extract_step(data, hour)
        statuses[hour.isoformat()] = pipeline.validate_step(data, hour).status
    result = retrain.full_retrain(data, start, start + plan.bootstrap_hours * HOUR, anchor_size=plan.anchor_size)
    assert result.version is not None  # not a dry run
    if result.decision != "approved":
        registry.promote(data, result.version, "benchmark bootstrap: every arm starts from this model",
                         who="benchmark")
    return {"version": result.version, "decision": result.decision, "reasons": list(result.reasons),
            "hours": statuses, **run_cost(data, result.version)}


def prepare_hour(data: Settings, hour: Hour) -> tuple[str, Any]:
    """Extract and validate the hour in the data home; its validated rows (None if quarantined)."""
    from incremental import pipeline

    pipeline.extract_step(data, hour)
    status = pipeline.validate_step(data, hour).status
    if status != "validated":
        return status, None
    return status, read_hour(data, hour)


def read_hour(data: Settings, hour: Hour) -> Any:
    from incremental.data import lake

    return lake.read_partition(lake.partition(data.lake, hour)).to_pandas()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(rec: dict[str, Any], elapsed: float, done: int, total: int) -> str:
    eta = elapsed / done * (total - done) if done else 0.0
    pre = rec.get("prequential") or {}
    truth = f"truth NDCG@10 {fmt(pre.get('truth_ndcg@10'))} " if "truth_ndcg@10" in pre else ""
    learned = f"{rec.get('decision')} v{rec['version']}" if rec.get("version") else str(rec.get("decision"))
    if rec.get("scorer"):  # the oracle, the lexical arm: no model
        return (f"[{_clock(elapsed)} elapsed, ~{_clock(eta)} left] {rec['hour'][:16]} {rec['arm']:<13} "
                f"no model, scores by {rec['scorer']}: {truth}NDCG@10 {fmt(pre.get('ndcg@10'))} AUC "
                f"{fmt(pre.get('auc'))} anchor {fmt(rec.get('anchor_auc'))}, {rec.get('learn_seconds', 0):.1f}s")
    return (f"[{_clock(elapsed)} elapsed, ~{_clock(eta)} left] {rec['hour'][:16]} {rec['arm']:<13} "
            f"served v{rec.get('served_version')}: {truth}NDCG@10 {fmt(pre.get('ndcg@10'))} AUC {fmt(pre.get('auc'))} "
            f"anchor {fmt(rec.get('anchor_auc'))} | learned: {learned}{' (forced)' if rec.get('overridden') else ''}"
            f", champion v{rec.get('champion_after')}, {rec.get('learn_seconds', 0):.1f}s, {rec.get('examples', 0)} ex")


def probe_forgetting(plan: Plan, scorers: dict[str, Scorer], records: list[dict[str, Any]], hours: list[str],
                     log: Callable[[str], None]) -> dict[str, Any] | None:
    """Each arm's forgetting on the probe (`benchmarks.continual.probe`): the model it served at
    the last hour before the drift against the one it serves at the end."""
    if plan.drift_hour is None or plan.scenario != "drift":
        return None
    (frame, seconds, _) = measured(lambda: build_probe(plan))
    if frame is None or frame.empty:
        return None
    categories = unchanged_categories(plan)
    before_hour = hours[plan.drift_hour - plan.bootstrap_hours - 1]
    log(f"forgetting probe: {len(frame)} rows in {', '.join(categories)} ({plan.probe_hours} pre-drift hours, "
        f"built in {seconds:.0f}s); scoring each arm's model before the drift and at the end")
    out: dict[str, Any] = {"rows": len(frame), "hours": plan.probe_hours, "categories": categories,
                           "before_hour": before_hour, "after_hour": hours[-1], "arms": {}}
    scores: dict[tuple[str, str], Any] = {}
    for name, scorer in scorers.items():
        before, after = served_at(records, name, before_hour), served_at(records, name, hours[-1])
        if before is None or after is None:
            continue
        versions = before, after
        for v in versions:
            if (name, v) not in scores:
                scores[name, v] = scorer.score(v, frame)
        figures = forgetting(frame, scores[name, versions[0]], scores[name, versions[1]], categories, plan.seed)
        out["arms"][name] = {"before_version": versions[0], "after_version": versions[1], **figures}
        log(f"  {name}: v{versions[0]} -> v{versions[1]}: forgot {fmt(figures['drop'])} mean AUC "
            f"(90% interval {fmt(figures['lo'])} .. {fmt(figures['hi'])})")
    return out


def run(plan: Plan, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole benchmark: data, bootstrap, homes, then test-then-train hour by hour; writes the results."""
    began, stamped = time.perf_counter(), stamp(plan)  # the code that runs: stamped before the run
    arms = all_arms(plan)
    work = Path(plan.work)
    shutil.rmtree(work, ignore_errors=True)
    models = tuple(name for name in plan.arms if arms[name].has_model)
    configs = write_configs(replace(plan, arms=models), arms)
    data = arm_settings(plan, "data")
    plan, data_summary = load_data(plan, data)
    truth = Truth.load(work / TRUTH_FILE)
    log(f"data: {plan.scenario}, {plan.hours} hours at {plan.rate}/h in {data.warehouse_url}")
    boot, boot_seconds, _ = measured(lambda: bootstrap(plan, data))
    log(f"bootstrap: v{boot['version']} ({boot['decision']}) on {plan.bootstrap_hours} hours in {boot_seconds:.0f}s")
    for name in models:
        copy_home(data.home, work / "arms" / name)
    from incremental.judge import anchor

    anchor_frame, anchor_info = anchor.load(data.lake)
    anchor_truth = truth.gains(anchor_frame)
    # the lexical arm's corpus: the distinct titles of the validated hours an arm could have trained on
    titles = set().union(*(titles_of(read_hour(data, parse_hour(h)))
                           for h, status in boot["hours"].items() if status == "validated"))
    state = {name: (arms[name], arm_settings(plan, name)) for name in models}
    scorers = {name: Scorer(settings) for name, (_, settings) in state.items()}
    start = parse_hour(plan.start)
    hours = [start + i * HOUR for i in range(plan.bootstrap_hours, plan.hours)]
    records, statuses, loop_began = [], {}, time.perf_counter()
    for i, hour in enumerate(hours):
        statuses[hour.isoformat()], frame = prepare_hour(data, hour)
        gains = truth.gains(frame) if frame is not None else None
        due = (i + 1) % plan.retrain_every == 0 or i == len(hours) - 1
        for name in plan.arms:
            if name in state:
                arm, settings = state[name]
                records.append(step_arm(arm, settings, scorers[name], plan, hour, due, frame, anchor_frame, gains))
            else:
                records.append(step_reference(arms[name], hour, frame, gains, anchor_frame, anchor_truth, titles))
            log(progress_line(records[-1], time.perf_counter() - loop_began, len(records),
                              len(hours) * len(plan.arms)))
        titles |= titles_of(frame)  # after every arm scored the hour: the lexical arm never sees it early
    drift = (start + plan.drift_hour * HOUR).isoformat() if plan.drift_hour is not None else None
    summary = summarize(records, plan.arms, [h.isoformat() for h in hours], drift, unchanged=unchanged_categories(plan),
                        pair_with=plan.pair_with)
    probe = probe_forgetting(plan, scorers, records, [h.isoformat() for h in hours], log)
    for name, figures in (probe or {}).get("arms", {}).items():
        summary["arms"][name]["unchanged_forgetting_probe"] = figures
    for rec in records:  # summarized: the per-session figures would make the results file ten times larger
        (rec.get("prequential") or {}).pop(GROUPS, None)
    result = {"stamp": stamped, "plan": asdict(plan), "configs": configs, "data": data_summary,
              "bootstrap": {**boot, "seconds": boot_seconds}, "truth": data_summary.pop("truth", None),
              "anchor": {"sha256": anchor_info.sha256, "rows": anchor_info.rows}, "probe": probe and {k: v for k, v in probe.items() if k != "arms"},
              "hour_status": statuses, "records": records, "summary": summary,
              "seconds": time.perf_counter() - began}
    result["files"] = write_results(result, Path(plan.out))
    return result
