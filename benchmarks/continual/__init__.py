"""Prequential (test-then-train) benchmark: gated hourly updates vs a naive fine-tune vs a full
retrain vs a frozen model, between a lexical floor and an oracle ceiling, on the same hours, with
the cost of each, judged on clicks and against the truth (NDCG@10 against the simulator's hidden
relevance, or the judgment grades: `truth`).

Every hour h after the bootstrap window is first *scored* by the model each arm serves at the
close of hour h-1 (its `champion` alias), on the hour's validated rows, and only then does the
arm learn from h. So every figure is on rows no scored model was trained on (`verify_lineage`
checks that from the MLflow lineage of each served version).

Arms are data (`ARMS`: name -> config overrides + how it learns), each with its own
INCREMENTAL_HOME (own MLflow registry, own lake, checkpoints) over one shared warehouse, and
each driven by the pipeline's own functions, the ones the DAGs call:

- ``frozen``: the bootstrap champion, never updated (no learning at all);
- ``naive``: `pipeline.run_hour` every hour with replay and L2-SP off, the gate's verdict
  overridden through the real registry (`force_promote_reason`): every update is served;
- ``gated``: `pipeline.run_hour` with the reviewed config, exactly (whatever drift response it
  has); human interventions are the ``"level": "page"`` lines of ``<lake>/_drift/alerts.jsonl``;
- ``full_retrain``: `retrain.full_retrain` from the base weights on every validated hour so
  far, every K hours; always served (force-promoted with a reason when the gate rejects): it
  is the quality reference;
- ``lexical`` and ``oracle`` (no model, no home, no training; `truth`): BM25 on the
  words of query and title, its IDF fitted on the titles of the hours before (the floor), and
  the ranking by the hidden relevance itself (the ceiling: truth NDCG@10 is 1 by construction).

Bootstrap: the first champion is trained once (`retrain.full_retrain` on the first B hours,
which also freezes the anchor set) in a data home, which is then copied to every arm's home, so
all arms start from the very same weights and anchor at the cost of one bootstrap (training it
once per arm would cost B-hour retrains x arms and could differ by floating-point noise). The
copy's MLflow database names the data home's artifact folder; `_rehome` rewrites those paths so
each arm writes only under its own home.

Results (JSON, a Markdown summary, PNG charts) go to `benchmarks/results/continual/` by default,
stamped with the commit, the machine, the model and the configs.

The code: `plan` (arms, presets, the Plan, the options), `homes` (an arm's home, config and
settings), `loop` (the data, the bootstrap, the hour loop), `step` (one arm's hour: scoring the
served model, learning, what it cost), `lineage` (what each served model was trained on),
`probe` (the forgetting probe), `truth` (the truth side file and the two reference arms) and
`report` (summary maths, Markdown, charts); this module is the entry and re-exports their names.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.continual.homes import PAGE_LEVEL, copy_home, count_pages, home_settings, write_arm_config
from benchmarks.continual.lineage import served_lineage, verify_lineage
from benchmarks.continual.loop import run
from benchmarks.continual.plan import (
    ARMS,
    DEFAULT_OUT,
    HOUR,
    PRESET_MODEL,
    PRESETS,
    SCENARIOS,
    T0,
    Arm,
    Plan,
    Preset,
    add_arguments,
    all_arms,
    help_epilog,
    plan_from_args,
)
from benchmarks.continual.report import (
    RECOVERY_TOLERANCE,
    REFERENCE,
    largest_loss,
    markdown,
    mean,
    paired_table,
    ratio,
    recovery_hours,
    summarize,
    summary_table,
    unchanged_forgetting,
    write_results,
)

__all__ = [
    "ARMS", "DEFAULT_OUT", "HOUR", "PAGE_LEVEL", "PRESETS", "PRESET_MODEL", "RECOVERY_TOLERANCE", "REFERENCE",
    "SCENARIOS", "T0", "Arm", "Plan", "Preset", "add_arguments", "all_arms", "copy_home", "count_pages",
    "help_epilog", "home_settings", "largest_loss", "main", "markdown", "mean", "plan_from_args", "ratio",
    "recovery_hours", "run", "served_lineage", "summarize", "summary_table", "unchanged_forgetting",
    "verify_lineage", "write_arm_config", "write_results",
]


def main(args: argparse.Namespace, config_file: Path | None = None) -> dict[str, Any]:
    """`python -m benchmarks.continual`: run the plan, print the summary table and where the files are."""
    plan = plan_from_args(args, config_file)
    print(f"continual benchmark: preset {plan.preset}, scenario {plan.scenario}, arms {', '.join(plan.arms)}, "
          f"model {plan.base_model}; homes under {plan.work}", flush=True)
    result = run(plan, log=lambda line: print(line, flush=True))
    print(summary_table(result["summary"]))
    print("\n".join(paired_table(result["summary"])))
    for kind, path in result["files"].items():
        print(f"{kind}: {path}")
    return result
