"""The prequential benchmark's run: the shared data and the bootstrap, then hour by hour each arm
scores the hour with the model it serves and learns from it through the pipeline's own functions;
what each step cost, and the lineage check of what every served model was trained on."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.continual.homes import arm_settings, copy_home, count_pages, write_configs
from benchmarks.continual.plan import HOUR, Arm, Plan, all_arms
from benchmarks.continual.probe import build_probe, forgetting, served_at, unchanged_categories
from benchmarks.continual.report import fmt, stamp, summarize, write_results
from benchmarks.continual.truth import (
    TRUTH_FILE,
    Truth,
    as_probability,
    judgment_truth,
    lexical_scores,
    simulator_truth,
    titles_of,
)
from incremental.config import Settings
from incremental.handover import Registered


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


def _version_run(settings: Settings, version: str) -> Any:
    """The MLflow run that made a registered version (every version here is registered from one)."""
    from incremental.registry import tracking

    client = tracking.configure(settings)
    run_id = client.get_model_version(settings.model_name, version).run_id
    if run_id is None:
        raise ValueError(f"version {version} of {settings.model_name} was not made by an MLflow run")
    return client.get_run(run_id)


def served_lineage(settings: Settings, version: str | None) -> dict[str, Any]:
    """From the served version's MLflow run: its interval end and the last hour it trained on."""
    if version is None:
        return {"served_interval_end": None, "served_trained_through": None}
    tags = _version_run(settings, version).data.tags
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
        from incremental.model import ranker as rk
        from incremental.registry import tracking

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


def prequential(frame: Any, scores: Any, truth: Any, *, calibrated: bool = True) -> dict[str, Any]:
    """The click metrics of `scores` on the hour's rows, and NDCG@10 against the truth (graded
    gains, `metrics.ndcg_against`) with how many rows the truth knew. A scorer that is no click
    model (`calibrated` False: the oracle, the lexical arm) has no log loss or ECE."""
    from incremental.judge import metrics

    out = _trim(metrics.evaluate(frame, scores))
    if not calibrated:
        out["logloss"] = out["ece"] = None
        for m in out["per_category"].values():
            m["logloss"] = m["ece"] = None
    if truth is not None:
        out["truth_ndcg@10"] = metrics.ndcg_against(frame, scores, truth)
        out["truth_rows"] = int(np.isfinite(truth).sum())
    return out


def _anchor(out: dict[str, Any], anchor_frame: Any, scores: Any) -> dict[str, Any]:
    from incremental.judge import metrics

    anchor = metrics.evaluate(anchor_frame, scores)
    out["anchor_auc"] = anchor["auc"]
    out["anchor_auc_per_category"] = {c: m["auc"] for c, m in anchor["per_category"].items()}
    return out


def score_served(scorer: Scorer, version: str, frame: Any, anchor_frame: Any, truth: Any = None) -> dict[str, Any]:
    """Prequential metrics of the served model on the hour (truth NDCG@10 where `truth` is given:
    one gain per row), and its anchor AUC (overall, per category)."""
    out: dict[str, Any] = {"prequential": None}
    if frame is not None and len(frame):
        out["prequential"] = prequential(frame, scorer.score(version, frame), truth)
    return _anchor(out, anchor_frame, scorer.anchor(version, anchor_frame))


def reference_scores(arm: Arm, frame: Any, truth: Any, titles: set[str]) -> np.ndarray:
    """The oracle's (the truth; unknown rows 0) or the lexical arm's scores, as [0, 1] numbers."""
    if arm.scorer == "oracle":
        return np.nan_to_num(np.asarray(truth, dtype=np.float64), nan=0.0)
    if arm.scorer == "lexical":
        return as_probability(lexical_scores(titles, frame))
    raise ValueError(f"arm {arm.name}: no reference scorer {arm.scorer!r}")


def step_reference(arm: Arm, hour: datetime, frame: Any, truth: Any, anchor_frame: Any, anchor_truth: Any,
                   titles: set[str]) -> dict[str, Any]:
    """An arm with no model (oracle, lexical): score the hour and the anchor; nothing to learn
    (the lexical arm's IDF is refitted on `titles`, those of the hours before, at every hour:
    its learn seconds)."""
    began = time.perf_counter()
    out: dict[str, Any] = {"hour": hour.isoformat(), "arm": arm.name, "served_version": None,
                           "served_interval_end": None, "served_trained_through": None, "prequential": None,
                           "scorer": arm.scorer, "fitted_titles": len(titles) if arm.scorer == "lexical" else None}
    if frame is not None and len(frame):
        out["prequential"] = prequential(frame, reference_scores(arm, frame, truth, titles), truth, calibrated=False)
    _anchor(out, anchor_frame, reference_scores(arm, anchor_frame, anchor_truth, titles))
    out.update({"version": None, "decision": None, "overridden": False, "examples": 0, "train_seconds": 0.0,
                "learn_seconds": time.perf_counter() - began, "peak_rss_mb": None, "champion_after": None,
                "promoted": False, "pages": 0})
    return out


# --- how an arm learns: the pipeline's own functions ------------------------------------------
def _run_cost(settings: Settings, version: str | None) -> dict[str, Any]:
    """Steps x batch size and the training loop's seconds, from the version's MLflow run."""
    if version is None:
        return {"examples": 0, "train_seconds": 0.0}
    run = _version_run(settings, version)
    steps = run.data.metrics.get("steps", 0.0)
    batch = int(run.data.params.get("training.batch_size", settings.training.batch_size))
    return {"examples": int(steps * batch), "train_seconds": run.data.metrics.get("train_seconds", 0.0)}


def _force(settings: Settings, arm: Arm, result: Registered) -> bool:
    """Serve the arm's new version even if the gate rejected it (recorded as an override)."""
    from incremental.registry import champion as registry

    if arm.force_reason and result.version and result.champion != result.version:
        registry.promote(settings, result.version, arm.force_reason, who="benchmark")
        return True
    return result.override is not None


def learn(arm: Arm, settings: Settings, plan: Plan, hour: datetime, due: bool) -> dict[str, Any]:
    """The arm learns from `hour` (after it was scored); returns version, decision, override."""
    from incremental import pipeline, retrain

    if arm.learns == "none":
        return {"version": None, "decision": None, "overridden": False}
    if arm.learns == "hourly":
        run = pipeline.run_hour(settings, hour, force_promote_reason=arm.force_reason)
        if run.registered is None:
            return {"version": None, "decision": "quarantined", "overridden": False}
        # a drift episode's catch-up retrain counts in the cost
        caught = run.catch_up.registered if run.catch_up is not None else None
        return {"version": run.registered.version, "decision": run.registered.decision,
                "overridden": run.registered.override is not None, "mode": run.mode,
                "catch_up_version": caught.version if caught else None,
                "catch_up_decision": caught.decision if caught else None}
    pipeline.extract_step(settings, hour)
    status = pipeline.validate_step(settings, hour).status
    if not due:
        return {"version": None, "decision": f"not due ({status})", "overridden": False}
    start = datetime.fromisoformat(plan.start)
    result = retrain.full_retrain(settings, start, hour + HOUR, anchor_size=plan.anchor_size)
    return {"version": result.version, "decision": result.decision, "overridden": _force(settings, arm, result)}


def step_arm(arm: Arm, settings: Settings, scorer: Scorer, plan: Plan, hour: datetime, due: bool,
             frame: Any, anchor_frame: Any, truth: Any = None) -> dict[str, Any]:
    """Test, then train: score the hour with the served model, then let the arm learn from it."""
    from incremental.registry import tracking

    client = tracking.configure(settings)
    served = tracking.champion_version(client, settings.model_name)
    rec: dict[str, Any] = {"hour": hour.isoformat(), "arm": arm.name, "served_version": served,
                           **served_lineage(settings, served)}
    if served is not None:
        rec.update(score_served(scorer, served, frame, anchor_frame, truth))
    learned, seconds, rss = measured(lambda: learn(arm, settings, plan, hour, due))
    rec.update(learned)
    costs = [_run_cost(settings, v) for v in (learned["version"], learned.get("catch_up_version")) if v]
    rec.update({"examples": sum(c["examples"] for c in costs),
                "train_seconds": sum(c["train_seconds"] for c in costs)})
    rec["learn_seconds"] = seconds if arm.learns != "none" else 0.0
    rec["peak_rss_mb"] = rss if arm.learns != "none" else None
    rec["champion_after"] = tracking.champion_version(tracking.configure(settings), settings.model_name)
    rec["promoted"] = rec["champion_after"] != served
    rec["pages"] = count_pages(settings)
    return rec


# --- data, bootstrap, the loop ---------------------------------------------------------------
def load_data(plan: Plan, data: Settings) -> tuple[Plan, dict[str, Any]]:
    """Fill the shared warehouse: the simulator, or a judgment CSV (which sets the hours); and
    write the truth of those rows to the benchmark's own `<work>/truth.parquet` (never to the
    warehouse or a lake): the summary's "truth" says what it holds."""
    from incremental.data.warehouse import Warehouse

    warehouse = Warehouse(data.warehouse_url)
    start = datetime.fromisoformat(plan.start)
    if plan.scenario == "judgments":
        from incremental.sim.judgments import import_judgments

        judgments = plan.judgments
        assert judgments is not None  # plan_from_args sets it for this scenario
        summary = import_judgments(warehouse, Path(judgments["path"]), start=start, rate=plan.rate,
                                   seed=plan.seed, **{k: v for k, v in judgments.items() if k != "path"})
        summary["truth"] = Truth(judgment_truth(**judgments)).save(Path(plan.work) / TRUTH_FILE)
        hours = min(plan.hours, int(summary["hours"]))
        if hours <= plan.bootstrap_hours:
            raise ValueError(f"{judgments['path']} fills {summary['hours']} hours at --rate {plan.rate}: "
                             f"not more than the {plan.bootstrap_hours} bootstrap hours")
        return replace(plan, hours=hours), summary
    from incremental.sim.simulate import simulate

    drift_at = start + plan.drift_hour * HOUR if plan.scenario == "drift" and plan.drift_hour is not None else None
    args: dict[str, Any] = {"rate": plan.rate, "seed": plan.seed, "scenario": plan.scenario, "drift_at": drift_at}
    summary = simulate(warehouse, start, start + plan.hours * HOUR, **args)
    summary["truth"] = Truth(simulator_truth(start, start + plan.hours * HOUR, **args)).save(
        Path(plan.work) / TRUTH_FILE)
    return plan, {k: v for k, v in summary.items() if k not in ("faults", "per_hour")}


def bootstrap(plan: Plan, data: Settings) -> dict[str, Any]:
    """The first champion, once, in the data home (through retrain.full_retrain and the gate;
    served even if the gate's value thresholds reject it, with the reason recorded)."""
    from incremental import pipeline, retrain
    from incremental.registry import champion as registry

    start = datetime.fromisoformat(plan.start)
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
            "hours": statuses, **_run_cost(data, result.version)}


def prepare_hour(data: Settings, hour: datetime) -> tuple[str, Any]:
    """Extract and validate the hour in the data home; its validated rows (None if quarantined)."""
    from incremental import pipeline

    pipeline.extract_step(data, hour)
    status = pipeline.validate_step(data, hour).status
    if status != "validated":
        return status, None
    return status, read_hour(data, hour)


def read_hour(data: Settings, hour: datetime) -> Any:
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
    titles = set().union(*(titles_of(read_hour(data, datetime.fromisoformat(h)))
                           for h, status in boot["hours"].items() if status == "validated"))
    state = {name: (arms[name], arm_settings(plan, name)) for name in models}
    scorers = {name: Scorer(settings) for name, (_, settings) in state.items()}
    start = datetime.fromisoformat(plan.start)
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
    summary = summarize(records, plan.arms, [h.isoformat() for h in hours], drift, unchanged=unchanged_categories(plan))
    probe = probe_forgetting(plan, scorers, records, [h.isoformat() for h in hours], log)
    for name, figures in (probe or {}).get("arms", {}).items():
        summary["arms"][name]["unchanged_forgetting_probe"] = figures
    result = {"stamp": stamped, "plan": asdict(plan), "configs": configs, "data": data_summary,
              "bootstrap": {**boot, "seconds": boot_seconds}, "truth": data_summary.pop("truth", None),
              "anchor": {"sha256": anchor_info.sha256, "rows": anchor_info.rows}, "probe": probe and {k: v for k, v in probe.items() if k != "arms"},
              "hour_status": statuses, "records": records, "summary": summary,
              "seconds": time.perf_counter() - began}
    result["files"] = write_results(result, Path(plan.out))
    return result
