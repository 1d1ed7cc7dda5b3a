"""What the hourly stages hand each other, as typed values (issue 19, item 4).

A hand-over crosses Airflow's XCom as JSON: each type here is a frozen dataclass with `to_dict()`
(the JSON the XCom stores, the same keys the stage returned as a plain dict) and `from_dict()`
(back, in the next task). The DAG converts at the task boundary; the pipeline, the CLI and the
tests read attributes. Stages not converted yet still hand over dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Evaluated:
    """What `evaluate_step` hands `register_step`: the hour, and either the version reprocessing
    reuses (nothing was evaluated), why the hour was not trained (`skipped`: the champion's
    lineage already trained on it), or where the full evaluation is and the gate's verdict on it."""

    hour: str  # ISO hour
    reused_version: str | None = None  # reprocessing an hour: the version made from the same inputs
    run_id: str | None = None  # the candidate's MLflow run (None: reused)
    evaluation_uri: str | None = None  # runs:/<run_id>/evaluation/evaluation.json
    decision: str | None = None  # "approved" | "rejected" (None: reused)
    reasons: tuple[str, ...] = ()
    key_metrics: Mapping[str, float | None] = field(default_factory=dict)  # registry.KEY_METRICS and more
    skipped: str | None = None  # the hour was not trained on: why (pipeline.already_trained)

    @property
    def reused(self) -> bool:
        return self.reused_version is not None

    def to_dict(self) -> dict[str, Any]:
        """The XCom's JSON."""
        if self.skipped is not None:
            return {"hour": self.hour, "skipped": self.skipped}
        if self.reused_version is not None:
            return {"hour": self.hour, "reused_version": self.reused_version}
        return {"hour": self.hour, "run_id": self.run_id, "evaluation_uri": self.evaluation_uri,
                "decision": self.decision, "reasons": list(self.reasons), "key_metrics": dict(self.key_metrics)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluated:
        """Back from the XCom's JSON (`to_dict`)."""
        if data.get("skipped"):
            return cls(hour=data["hour"], skipped=data["skipped"])
        if data.get("reused_version"):
            return cls(hour=data["hour"], reused_version=data["reused_version"])
        return cls(hour=data["hour"], run_id=data["run_id"], evaluation_uri=data["evaluation_uri"],
                   decision=data["decision"], reasons=tuple(data["reasons"]), key_metrics=dict(data["key_metrics"]))
