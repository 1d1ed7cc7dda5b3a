"""Model review in the MLflow UI: what each candidate's run carries under `review/`.

- `decision.json`: every gate check with value, threshold and verdict, and the registration outcome
- `report.md`: the decision, reasons and key figures in a page a reviewer reads first
- `forgetting_per_category.png`: anchor AUC per category, parent vs candidate
- `metric_history.png`: holdout and anchor AUC across the registered versions
- `r_matrix.png`: the accuracy matrix R[model version][anchor source hour] as a heatmap,
  with backward transfer and average forgetting (definitions in `incremental.judge.forgetting`)
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime
from typing import Any, TypedDict

import matplotlib

matplotlib.use("Agg")  # no display on workers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from mlflow.entities import Metric, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from incremental.config import Settings  # noqa: E402
from incremental.handover import Registered  # noqa: E402
from incremental.hours import HOUR, Hour, parse_hour
from incremental.judge.evaluate import Evaluation, load_evaluation  # noqa: E402
from incremental.judge.forgetting import forgetting_report
from incremental.registry import tracking  # noqa: E402
from incremental.registry.history import history

MAX_VERSIONS = 24  # rows of R and points of the history chart
REVIEW = "review"  # the run's artifact folder for all of it
DPI = 110


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) and x is not None and math.isfinite(x) else "n/a"


class AccuracyRows(TypedDict):
    """Rows of R (`r_matrix`): per model label, its anchor AUC by source hour, and its last trained hour."""

    rows: dict[str, dict[str, float | None]]  # null: not measurable on that hour's rows
    trained_through: dict[str, datetime]


def trained_through(evaluation: Evaluation) -> datetime:
    """The last hour the evaluated model was trained on: its interval's end is exclusive."""
    return parse_hour(evaluation["interval_end"]) - HOUR


def accuracy_rows(settings: Settings, evaluation: Evaluation, version: str | None) -> AccuracyRows:
    """R rows of the registered versions scored on the same anchor, plus this candidate's."""
    client = tracking.configure(settings)
    sha = evaluation["anchor"]["sha256"]
    evaluations: dict[str, Evaluation] = {}
    for row in history(settings)[-MAX_VERSIONS:]:
        mv = client.get_model_version(settings.model_name, row["version"])
        if mv.tags.get("anchor_sha256") != sha or row["version"] == version or mv.run_id is None:
            continue  # (a version made outside a run has no evaluation)
        try:
            past = load_evaluation(settings, mv.run_id)
        except (OSError, MlflowException):  # a version registered before evaluations were logged
            continue
        if past:
            evaluations[f"v{row['version']}"] = past
    evaluations[f"v{version}" if version else "candidate"] = evaluation
    return rows_of(evaluations)


def rows_of(evaluations: dict[str, Evaluation]) -> AccuracyRows:
    """Per model label, its anchor AUC by source hour and the last hour it was trained on."""
    return {"rows": {label: e["candidate"]["anchor_by_hour"] for label, e in evaluations.items()},
            "trained_through": {label: trained_through(e) for label, e in evaluations.items()}}


def r_matrix(r: AccuracyRows) -> tuple[list[str], list[Hour], np.ndarray, dict[str, Any]]:
    """R from `accuracy_rows`: model labels (oldest first), source hours, values, and the forgetting summary.

    A source hour counts as learned by the first model whose last trained hour is at or after it
    (hours compared as datetimes, whatever text the evaluations wrote them in).
    """
    labels = sorted(r["rows"], key=lambda k: (r["trained_through"][k], k))
    rows = {m: {parse_hour(h): v for h, v in r["rows"][m].items()} for m in labels}
    hours = sorted({h for row in rows.values() for h in row})
    values = np.array([[v if (v := rows[m].get(h)) is not None else np.nan for h in hours] for m in labels],
                      dtype=float).reshape(len(labels), len(hours))
    ordered = {i: dict(zip(hours, values[i], strict=True)) for i in range(len(labels))}
    through = [r["trained_through"][m] for m in labels]
    summary = forgetting_report(ordered, through) if len(labels) > 1 else {}
    return labels, hours, values, summary


def _r_matrix_chart(r: AccuracyRows) -> tuple[Figure, dict[str, Any]]:
    labels, hours, values, summary = r_matrix(r)
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(hours) + 3), max(3, 0.35 * len(labels) + 2)))
    image = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0.5, vmax=max(0.51, np.nanmax(values) if values.size else 1))
    ax.set_xticks(range(len(hours)), [f"{h:%m-%d %H:%M}" for h in hours], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("anchor source hour (UTC)")
    ax.set_ylabel("model (oldest first)")
    bwt, forgetting = summary.get("backward_transfer", math.nan), summary.get("average_forgetting", math.nan)
    ax.set_title(f"R[model][source hour] = anchor AUC    BWT {_fmt(bwt)}   avg forgetting {_fmt(forgetting)}", fontsize=9)
    fig.colorbar(image, ax=ax, label="AUC")
    fig.tight_layout()
    return fig, {k: v for k, v in summary.items() if k in ("backward_transfer", "average_forgetting", "max_forgetting")}


def _category_chart(evaluation: Evaluation) -> Figure:
    cand = evaluation["candidate"]["anchor"]["per_category"]
    parent = evaluation.get("champion") or {}
    champ = parent.get("anchor", {}).get("per_category", {})
    names = sorted(cand)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names) + 2), 4))
    if champ:
        ax.bar(x - 0.2, [champ.get(n, {}).get("auc") or np.nan for n in names], 0.4,
               label=f"parent v{parent.get('version')}")
    ax.bar(x + (0.2 if champ else 0), [cand[n]["auc"] if cand[n]["auc"] is not None else np.nan for n in names],
           0.4, label="candidate")
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("anchor AUC")
    ax.set_ylim(0.4, 1.0)
    ax.set_title("Forgetting per category: anchor AUC, parent vs candidate")
    ax.legend()
    fig.tight_layout()
    return fig


def _history_chart(settings: Settings) -> Figure:
    rows = history(settings)[-MAX_VERSIONS:]

    def number(text: str) -> float:
        try:
            return float(text)
        except (TypeError, ValueError):
            return np.nan

    labels = [f"v{r['version']}" for r in rows]
    colors = ["tab:green" if r["decision"] == "approved" else "tab:red" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(rows) + 2), 4))
    ax.plot(labels, [number(r["holdout_auc"]) for r in rows], "o-", label="holdout AUC (fresh hour)")
    ax.plot(labels, [number(r["anchor_auc"]) for r in rows], "s--", label="anchor AUC (forgetting benchmark)")
    for i, c in enumerate(colors):
        ax.axvspan(i - 0.5, i + 0.5, color=c, alpha=0.08)
    ax.set_ylabel("AUC")
    ax.set_title("Metric history across versions (green: approved, red: rejected)")
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=45, fontsize=8)
    fig.tight_layout()
    return fig


def _drift_lines(evaluation: Evaluation) -> list[str]:
    """Mode, drift evidence, slices judged changed, and the paired intervals against the champion."""
    context = evaluation.get("drift") or {}
    relative = (evaluation.get("candidate") or {}).get("holdout_vs_champion") or {}
    lines = ["## Mode and drift", "", f"- mode: **{evaluation.get('mode', 'normal')}** ({evaluation.get('kind', 'hourly')}),"
             f" judged against version {evaluation.get('compared_with') or 'none'}"]
    if context.get("declared_at"):
        lines.append(f"- drift episode declared at {context['declared_at']}")
    lines.append(f"- slices judged changed (reported, not protected): {', '.join(context.get('changed_slices', [])) or 'none'}")
    lines += [f"- evidence: {e}" for e in context.get("anomalous", []) or context.get("evidence", [])]
    for metric in ("ndcg@10", "auc"):
        i = relative.get(metric)
        if i:
            lines.append(f"- fresh holdout {metric}, candidate - champion: {_fmt(i.get('diff'))} "
                         f"[{_fmt(i.get('lo'))}, {_fmt(i.get('hi'))}] ({i.get('verdict')}, "
                         f"{relative.get('sessions')} sessions, {relative.get('confidence', 0.9):.0%} paired bootstrap)")
    return [*lines, ""]


def markdown(evaluation: Evaluation, registered: Registered, forgetting: dict[str, Any]) -> str:
    decision = evaluation["decision"]
    lines = [
        f"# Candidate for {evaluation['interval_start']} .. {evaluation['interval_end']}: "
        f"**{str(registered.decision).upper()}**",
        "",
        f"- model version: {registered.version}  (parent: {evaluation['parent_version'] or 'base weights'})",
        f"- champion now: {registered.champion}",
        f"- anchor set: {evaluation['anchor']['sha256'][:12]} ({evaluation['anchor']['rows']} rows)",
        f"- backward transfer {_fmt(forgetting.get('backward_transfer'))}, "
        f"average forgetting {_fmt(forgetting.get('average_forgetting'))}",
        "",
        "## Reasons",
        *[f"- {r}" for r in registered.reasons],
        "",
        *_drift_lines(evaluation),
        "## Gate checks",
        "| check | kind | value | threshold | verdict |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {c['name']} | {c['kind']} | {_fmt(c['value'])} | {c['comparison']} {_fmt(c['threshold'])} | "
          f"{'pass' if c['passed'] else '**FAIL**'} |" for c in decision["checks"]],
        "",
        "Charts: `forgetting_per_category.png`, `metric_history.png`, `r_matrix.png` beside this file.",
    ]
    return "\n".join(lines) + "\n"


def log_report(settings: Settings, run_id: str, evaluation: Evaluation, registered: Registered) -> None:
    """Attach the review to the candidate's MLflow run under `review/`; the forgetting summary
    as metrics and the decision as tags, in one batch."""
    client = tracking.configure(settings)
    r_matrix_figure, forgetting = _r_matrix_chart(accuracy_rows(settings, evaluation, registered.version))
    figures = {"r_matrix.png": r_matrix_figure, "forgetting_per_category.png": _category_chart(evaluation),
               "metric_history.png": _history_chart(settings)}
    for name, figure in figures.items():
        client.log_figure(run_id, figure, f"{REVIEW}/{name}", save_kwargs={"dpi": DPI})
        plt.close(figure)
    decision = {**evaluation["decision"], "registration": registered.to_dict(), "forgetting": forgetting,
                "key_metrics": evaluation["key_metrics"]}
    client.log_text(run_id, json.dumps(decision, indent=2, default=str), f"{REVIEW}/decision.json")
    client.log_text(run_id, markdown(evaluation, registered, forgetting), f"{REVIEW}/report.md")
    client.log_text(run_id, json.dumps(evaluation, indent=2, default=str), f"{REVIEW}/evaluation.json")
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(f"anchor_{name}", float(value), now, 0) for name, value in forgetting.items()
                 if value is not None and math.isfinite(value)],
        tags=[RunTag("decision", str(registered.decision)), RunTag("model_version", str(registered.version))],
    )
