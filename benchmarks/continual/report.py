"""The prequential benchmark's results: the summary maths (pure), the stamp of the code and
machine, the Markdown summary, the charts and the files they go to."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.continual.plan import ARMS, Plan, all_arms
from benchmarks.continual.truth import paired_truth
from incremental.config import REPO_ROOT

REFERENCE = "full_retrain"
FLOOR = "lexical"
GROUPS = "truth_groups"  # a record's per-(session, query) truth NDCG@10 (`truth.group_ndcg`), for `paired`
ORACLE, LEXICAL = "oracle", "lexical"  # the reference arms without a model (`truth`)
TRUTH = "truth_ndcg@10"
RECOVERY_TOLERANCE = 0.01  # NDCG@10 within this of the reference counts as recovered


# --- summary maths (pure) ----------------------------------------------------------------------
def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def mean(values: Sequence[float | None]) -> float | None:
    kept = _finite(values)
    return sum(kept) / len(kept) if kept else None


def recovery_hours(arm: Sequence[float | None], ref: Sequence[float | None], drift_index: int,
                   tolerance: float = RECOVERY_TOLERANCE) -> int | None:
    """Hours from the drift until the arm's metric is within `tolerance` of the reference's and
    stays there to the end of the window (0: it never fell behind); None when it is not back by
    the last hour. Hours where either is unknown are skipped. Staying, not touching: an arm that
    is within tolerance at the drift hour only because both collapsed, then falls behind, has
    not recovered."""
    a, r = ([math.nan if v is None else v for v in values] for values in (arm, ref))  # unknown: nan
    known = [i for i in range(drift_index, min(len(a), len(r))) if math.isfinite(a[i]) and math.isfinite(r[i])]
    behind = [i for i in known if a[i] < r[i] - tolerance]
    if not known or (behind and behind[-1] == known[-1]):
        return None
    back = known[known.index(behind[-1]) + 1] if behind else known[0]  # the first hour of the final run within
    return back - drift_index


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
    truth = _series(records, arm, TRUTH, hours)
    own = [r for r in records if r["arm"] == arm]
    out: dict[str, Any] = {
        TRUTH: mean(truth),
        f"{TRUTH}_before_drift": mean(truth[:drift_index]) if drift_index is not None else None,
        f"{TRUTH}_after_drift": mean(truth[drift_index:]) if drift_index is not None else None,
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


def unchanged_forgetting(records: list[dict[str, Any]], arm: str, hours: list[str], drift_index: int,
                         unchanged: Sequence[str]) -> float | None:
    """Mean anchor AUC drop on the `unchanged` categories (the simulator's, not the pipeline's
    guess): the served model at the last hour before the drift against the one at the last hour.
    The anchor is the benchmark's own, frozen before any arm learned, so every arm is measured
    on the same rows whatever its pipeline did to its own anchor."""
    by_hour = {r["hour"]: r for r in records if r["arm"] == arm}
    if drift_index < 1 or not unchanged:
        return None
    before = (by_hour.get(hours[drift_index - 1]) or {}).get("anchor_auc_per_category") or {}
    after = (by_hour.get(hours[-1]) or {}).get("anchor_auc_per_category") or {}
    drops = [before[c] - after[c] for c in unchanged if before.get(c) is not None and after.get(c) is not None]
    return sum(drops) / len(drops) if drops else None


def _last_learn(records: list[dict[str, Any]], arm: str) -> dict[str, Any] | None:
    learned = [r for r in records if r["arm"] == arm and r.get("version") is not None]
    return learned[-1] if learned else None


def paired(records: list[dict[str, Any]], arms: Sequence[str], hours: list[str],
           drift_index: int | None, pair_with: str = "gated") -> dict[str, dict[str, dict[str, Any]]]:
    """Each model arm's truth NDCG@10 minus the floor's (lexical) and the reference's (full_retrain),
    and an `--arm-config` arm's (a variant) minus the `pair_with` arm's (`--pair-with`, gated by default), on the
    same rows, with a 90% bootstrap interval over sessions: over all scored hours, and before and
    from the drift."""
    groups = {(r["hour"], r["arm"]): (r.get("prequential") or {}).get(GROUPS) for r in records}
    spans = {"all": hours}
    if drift_index is not None:
        spans |= {"before_drift": hours[:drift_index], "after_drift": hours[drift_index:]}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for arm in arms:
        variant = arm not in ARMS  # an --arm-config arm: the gated pipeline with a config changed
        for other in (FLOOR, REFERENCE, pair_with) if variant else (FLOOR, REFERENCE):
            if arm in (FLOOR, "oracle", other) or other not in arms:
                continue
            out.setdefault(arm, {})[other] = {
                span: paired_truth([groups.get((h, arm)) for h in hs], [groups.get((h, other)) for h in hs])
                for span, hs in spans.items() if hs}
    return out


def summarize(records: list[dict[str, Any]], arms: Sequence[str], hours: list[str],
              drift_hour: str | None, unchanged: Sequence[str] = (), pair_with: str = "gated") -> dict[str, Any]:
    """Per arm: mean truth NDCG@10 (all scored hours, before and from the drift), mean prequential
    click NDCG@10/AUC (all scored hours, and from the drift on), recovery
    and largest loss vs the reference, cost; and the gated/full-retrain cost ratio at the end."""
    drift_index = hours.index(drift_hour) if drift_hour in hours else None
    ref = REFERENCE if REFERENCE in arms else None
    per_arm = {a: _arm_summary(records, a, hours, drift_index, ref) for a in arms}
    if drift_index is not None and unchanged:
        for a in arms:
            per_arm[a]["unchanged_anchor_auc_drop"] = unchanged_forgetting(records, a, hours, drift_index, unchanged)
    gated, full = _last_learn(records, "gated"), _last_learn(records, REFERENCE)
    cost = None
    if gated and full:
        cost = {"gated_hour": gated["hour"], "full_retrain_hour": full["hour"],
                "seconds": ratio(gated.get("learn_seconds"), full.get("learn_seconds")),
                "examples": ratio(gated.get("examples"), full.get("examples"))}
    return {"hours": hours, "drift_hour": drift_hour, "reference": ref, "arms": per_arm,
            "truth_paired": paired(records, arms, hours, drift_index, pair_with), "pair_with": pair_with, "unchanged_categories": sorted(unchanged),
            "cost_ratio_gated_vs_full_retrain": cost}


def fmt(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


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
                        "torch_threads": torch.get_num_threads(), "load_average_1m": os.getloadavg()[0],
                        "device": "cuda" if torch.cuda.is_available() else "cpu"},
            "model": plan.base_model, "command": " ".join(sys.argv)}


def result_name(plan: dict[str, Any]) -> str:
    seed = plan.get("seed", 0)
    return f"continual-{plan['preset']}-{plan['scenario']}" + (f"-seed{seed}" if seed else "")


def summary_table(summary: dict[str, Any]) -> str:
    """The per-arm summary as a Markdown table."""
    head = ("| arm | truth NDCG@10 | truth NDCG@10 before drift | truth NDCG@10 after drift | NDCG@10 | AUC |"
            " NDCG@10 after drift | AUC after drift | recovery (h) | largest NDCG@10 loss vs"
            " full_retrain | anchor AUC drop, unchanged categories | forgetting on the probe (90% interval) |"
            " updates served / made | learn s | examples | peak RSS MiB | pages |")
    lines = [head, "|" + " --- |" * 17]
    for arm, s in summary["arms"].items():
        recovery = s.get("recovery_hours")
        lines.append(
            f"| {arm} | {fmt(s.get(TRUTH))} | {fmt(s.get(TRUTH + '_before_drift'))} | "
            f"{fmt(s.get(TRUTH + '_after_drift'))} | {fmt(s['ndcg@10'])} | {fmt(s['auc'])} | {fmt(s['ndcg@10_after_drift'])} | "
            f"{fmt(s['auc_after_drift'])} | {'not within window' if recovery is None and summary['drift_hour'] and summary['reference'] else fmt(recovery, 'd')} | "
            f"{fmt(s.get('largest_ndcg@10_loss_vs_ref'))} | {fmt(s.get('unchanged_anchor_auc_drop'))} | "
            f"{_probe_cell(s.get('unchanged_forgetting_probe'))} | "
            f"{s['promotions']} / {s['updates']} | "
            f"{s['learn_seconds']:.0f} | {s['examples']} | {fmt(s['peak_rss_mb'], '.0f')} | {s['human_interventions']} |")
    return "\n".join(lines)


def paired_table(summary: dict[str, Any]) -> list[str]:
    """Each model arm against the floor and the reference on the truth, paired over sessions."""
    rows = [(arm, other, figures) for arm, by in (summary.get("truth_paired") or {}).items()
            for other, figures in by.items()]
    if not rows:
        return []
    spans = list(rows[0][2])
    lines = ["Truth NDCG@10 of each model arm minus the floor's (`lexical`) and the reference's (`full_retrain`) "
             f"(an `--arm-config` arm's also minus the {summary.get('pair_with', 'gated')} arm's), on the same rows, with a 90% bootstrap "
             "interval over sessions (an interval above 0: better beyond the noise):", "", "| arm | against | " + " | ".join(s.replace("_", " ") for s in spans) + " |",
             "|" + " --- |" * (len(spans) + 2)]
    for arm, other, figures in rows:
        cells = [f"{fmt(f['diff'], '+.3f')} [{fmt(f['lo'], '+.3f')}, {fmt(f['hi'], '+.3f')}]"
                 for f in (figures.get(s, {}) for s in spans)]
        lines.append(f"| {arm} | {other} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _probe_cell(probe: dict[str, Any] | None) -> str:
    if not probe:
        return "n/a"
    return f"{fmt(probe['drop'])} [{fmt(probe['lo'])}, {fmt(probe['hi'])}]"


def _probe_text(result: dict[str, Any]) -> list[str]:
    probe = result.get("probe")
    if not probe:
        return []
    return [f"Forgetting on the probe: {probe['rows']} rows of {probe['hours']} simulated pre-drift hours that no arm "
            f"trains on, in the categories the drift leaves alone ({', '.join(probe['categories'])}): the mean over "
            f"them of the per-category AUC of the model served at {probe['before_hour'][:16]} minus the one served at "
            f"{probe['after_hour'][:16]}, with a 90% paired bootstrap interval over sessions. The anchor column is the "
            "same measure on the pipeline's anchor rows of those categories, far fewer.", ""]


def _truth_text(result: dict[str, Any]) -> list[str]:
    truth = result.get("truth")
    if not truth:
        return []
    return [f"Truth NDCG@10 is NDCG@10 per (session, query) against {truth['source']} ({truth['rows']} rows known;"
            " linear graded gains), which no arm sees: the benchmark keeps it in a side file of its own. Click NDCG@10"
            " and AUC are against the clicks. `oracle` ranks by the truth itself (truth NDCG@10 1 by construction;"
            " its click figures are the ceiling clicks allow), `lexical` by BM25 on the words of query and title"
            " (IDF fitted on the titles of the hours before; no training): the floor. Neither has log loss or ECE.", ""]


def _hour_table(result: dict[str, Any], key: str = "ndcg@10") -> str:
    arms = result["plan"]["arms"]
    lines = ["| hour | " + " | ".join(arms) + " |", "|" + " --- |" * (len(arms) + 1)]
    by = {(r["hour"], r["arm"]): r for r in result["records"]}
    for hour in result["summary"]["hours"]:
        cells = []
        for arm in arms:
            r = by.get((hour, arm), {})
            mark = {"approved": " ✓", "rejected": " ✗"}.get(str(r.get("decision")), "")
            forced = " (forced)" if r.get("overridden") else ""
            served = f" v{r.get('served_version')}" if r.get("served_version") is not None else ""
            cells.append(f"{fmt((r.get('prequential') or {}).get(key))}{served}{mark}{forced}")
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
        f"torch {st['machine']['torch']} ({st['machine'].get('torch_threads', '?')} threads, load "
        f"{st['machine'].get('load_average_1m', '?')} at the start); took {result['seconds']:.0f} s.", "",
        f"{plan['hours']} hours at {plan['rate']} impressions/h (seed {plan['seed']}): {plan['bootstrap_hours']} "
        f"bootstrap hours, then {len(summary['hours'])} scored hours"
        + (f", drift from {summary['drift_hour'][:16]}" if summary["drift_hour"] else "")
        + f"; full retrain every {plan['retrain_every']} h; anchor {result['anchor']['rows']} rows "
        f"({result['anchor']['sha256'][:12]}); step overrides for every arm: {plan['training'] or 'none'} "
        f"(over the config, its `models.{plan['base_model']}` entry included)"
        + (f"; full_retrain's, to convergence: {plan['reference_training']}" if plan.get("reference_training") else "")
        + ".", "",
        "Each hour is scored by the model the arm served at the close of the previous hour, then the arm "
        "learns from it. Means are over the scored hours; recovery is the hours from the drift until NDCG@10 "
        f"is within {RECOVERY_TOLERANCE} of full_retrain's and stays there; pages are the gated pipeline's human interventions.", "",
        summary_table(summary), "", *_truth_text(result), *paired_table(summary), *_probe_text(result),
        f"Cost of the last gated update vs the last full retrain: {fmt(cost.get('seconds'), '.2f')}x the seconds, "
        f"{fmt(cost.get('examples'), '.2f')}x the examples.", "",
        "## Arms", "", *[f"- `{a}`: {arms[a].description}" for a in plan["arms"]], "",
        "## Prequential NDCG@10 per hour (served version; ✓/✗ the gate's verdict on the update that followed)", "",
        _hour_table(result), "",
        *(["## Truth NDCG@10 per hour", "", _hour_table(result, TRUTH), ""] if result.get("truth") else []), *[f"![{k}]({v})" for k, v in charts.items()], ""])


def charts(result: dict[str, Any], folder: Path, name: str) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, plan = result["summary"], result["plan"]
    hours = summary["hours"]
    has_truth = any(s.get(TRUTH) is not None for s in summary["arms"].values())
    files = {"ndcg_per_hour": f"{name}-ndcg.png", "cost_vs_quality": f"{name}-cost.png"}
    if has_truth:
        files["truth_ndcg_per_hour"] = f"{name}-truth.png"
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("P", "--")]
    reference_style: dict[str, dict[str, Any]] = {
        ORACLE: {"color": "black", "linestyle": "-", "linewidth": 2.5, "marker": "*"},
        LEXICAL: {"color": "grey", "linestyle": ":", "linewidth": 2, "marker": "x"}}
    for key, file, label in (("ndcg@10", "ndcg_per_hour", "prequential NDCG@10 (clicks)"),
                             (TRUTH, "truth_ndcg_per_hour", "prequential NDCG@10 against the truth")):
        if file not in files:
            continue
        fig, ax = plt.subplots(figsize=(9, 4.5))
        models = [a for a in plan["arms"] if a not in reference_style]
        for arm in plan["arms"]:  # markers and dashes: arms that serve the same model overlap
            series = [math.nan if v is None else v for v in _series(result["records"], arm, key, hours)]  # a gap
            if arm in reference_style:  # the oracle's line is the ceiling, the lexical arm's the floor
                ax.plot(range(len(hours)), series, label=arm, markersize=9, **reference_style[arm])
                continue
            marker, line = styles[models.index(arm) % len(styles)]
            ax.plot(range(len(hours)), series, marker=marker, linestyle=line,
                    markersize=max(8 - models.index(arm), 3), label=arm)
        if summary["drift_hour"] in hours:
            ax.axvline(hours.index(summary["drift_hour"]), color="red", linestyle="--", label="drift")
        ax.set_xticks(range(len(hours)), [h[11:16] if len(hours) <= 24 else h[5:13] for h in hours], rotation=45)
        ax.set(xlabel="hour (UTC)", ylabel=label, title=f"{plan['preset']} / {plan['scenario']}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(folder / files[file], dpi=110)
        plt.close(fig)
    quality = TRUTH if has_truth else "ndcg@10"
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for arm, s in summary["arms"].items():
        ax.scatter(s["learn_seconds"], s[quality] if s[quality] is not None else math.nan, s=60)
        ax.annotate(arm, (s["learn_seconds"], s[quality] or 0), textcoords="offset points", xytext=(5, 5))
    ax.set(xlabel="learning cost: seconds over the scored hours",
           ylabel="mean NDCG@10 against the truth" if has_truth else "mean prequential NDCG@10",
           title="cost against quality")
    fig.tight_layout()
    fig.savefig(folder / files["cost_vs_quality"], dpi=110)
    plt.close(fig)
    return files


def write_results(result: dict[str, Any], folder: Path) -> dict[str, str]:
    from incremental.judge.evaluate import strict_json

    folder.mkdir(parents=True, exist_ok=True)
    name = result_name(result["plan"])
    files = charts(result, folder, name)
    (folder / f"{name}.md").write_text(markdown(result, files))
    (folder / f"{name}.json").write_text(json.dumps(strict_json(result), indent=1, sort_keys=True) + "\n")
    return {"json": str(folder / f"{name}.json"), "markdown": str(folder / f"{name}.md"),
            **{k: str(folder / v) for k, v in files.items()}}
