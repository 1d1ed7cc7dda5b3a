"""What the stages hand each other, as typed values (issue 19, item 4).

A hand-over crosses Airflow's XCom as JSON: each type here is a frozen dataclass with `to_dict()`
(the JSON the XCom stores, with the keys the stage returned when it was a plain dict; its values
are `object`: written out, never read back but through `from_dict`) and
`from_dict()` (back, in the next task). The DAG converts at the task boundary; the pipeline, the
CLI and the tests read attributes. Hours travel as aware UTC datetimes and become text only in
`to_dict` (`incremental.hours.iso_hour`); `from_dict` parses them back.

    extract_step -> Extracted      validate_step -> Validated    monitor_step -> Monitored
    train_step -> Trained          evaluate_step -> Evaluated    register_step -> Registered
    catch_up_step -> CaughtUp      freeze_anchor -> AnchorFrozen   run_hour -> HourRun
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from incremental.hours import iso_hour, parse_hour

if TYPE_CHECKING:  # JSON shapes only: this module stays light (the DAG tasks import it)
    from incremental.judge.drift_rule import AssessmentRecord, DriftContext


@dataclass(frozen=True)
class Extracted:
    """The hour's partition in the lake (or its delta: `delta_rows`, 0 when nothing was new)."""

    hour: datetime
    rows: int
    sha256: str | None  # the hour's identity: what a model version's lineage names (None: none of it is live)
    lake_key: str  # the partition's folder, relative to the lake root
    delta_rows: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {"hour": iso_hour(self.hour), "rows": self.rows, "sha256": self.sha256, "delta_rows": self.delta_rows,
                "lake_key": self.lake_key}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Extracted:
        return cls(hour=parse_hour(data["hour"]), rows=data["rows"], sha256=data["sha256"], lake_key=data["lake_key"],
                   delta_rows=data.get("delta_rows"))


@dataclass(frozen=True)
class Validated:
    """The validation's verdict on the hour (or on its pending part) and where its evidence is."""

    hour: datetime
    status: str  # "validated" | "quarantined"
    rows: int
    summary: str
    lake_key: str  # the live folder, or the quarantine folder
    warnings: tuple[str, ...] = ()
    data_docs: str | None = None  # lake key of the GX data docs (a quarantined hour or rows)
    part: str | None = None  # the part validated now (None: nothing was pending)
    quarantined_rows: int = 0
    quarantined_rows_key: str | None = None
    hour_validated: bool = False  # quarantined: only this part went; the hour keeps its validated parts

    @property
    def validated(self) -> bool:
        return self.status == "validated"

    def to_dict(self) -> dict[str, object]:
        return {"hour": iso_hour(self.hour), "status": self.status, "rows": self.rows, "summary": self.summary,
                "warnings": list(self.warnings), "lake_key": self.lake_key, "data_docs": self.data_docs,
                "part": self.part, "quarantined_rows": self.quarantined_rows,
                "quarantined_rows_key": self.quarantined_rows_key, "hour_validated": self.hour_validated}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Validated:
        return cls(hour=parse_hour(data["hour"]), status=data["status"], rows=data["rows"], summary=data["summary"],
                   lake_key=data["lake_key"], warnings=tuple(data.get("warnings", ())), data_docs=data.get("data_docs"),
                   part=data.get("part"), quarantined_rows=data.get("quarantined_rows", 0),
                   quarantined_rows_key=data.get("quarantined_rows_key"),
                   hour_validated=data.get("hour_validated", False))


@dataclass(frozen=True)
class AnchorFrozen:
    """A frozen (or rolled) anchor set: what `incremental benchmark freeze` prints."""

    sha256: str
    rows: int
    reason: str
    baseline_version: str | None  # the champion it holds later candidates to (None: there was none)
    protected_categories: list[str] | None  # the categories it is held on (None: all)
    lake_key: str

    def to_dict(self) -> dict[str, object]:
        return {"sha256": self.sha256, "rows": self.rows, "reason": self.reason,
                "baseline_version": self.baseline_version, "protected_categories": self.protected_categories,
                "lake_key": self.lake_key}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnchorFrozen:
        return cls(sha256=data["sha256"], rows=data["rows"], reason=data["reason"],
                   baseline_version=data["baseline_version"], protected_categories=data["protected_categories"],
                   lake_key=data["lake_key"])


@dataclass(frozen=True)
class Monitored:
    """The champion's test-then-train look at the hour and what the drift rule made of it; `context`
    and `start_version` are what `train` reads of the episode (taken here, once, for this hour).

    Three shapes: no champion yet (`note`), a dry run (`dry_run`: the rule's assessment, nothing
    recorded, no episode moved), and the hour observed (the episode moved on: `declared_now`, ...)."""

    hour: datetime
    mode: str  # the episode's mode after this hour: "normal" | "adapt"
    context: DriftContext
    start_version: str | None = None  # adapt mode: the episode's shadow chain head, where the update starts
    champion_version: str | None = None
    note: str | None = None  # why nothing was scored
    dry_run: bool = False
    assessment: AssessmentRecord | None = None
    declared_now: bool = False
    ended_now: bool = False
    declared_at: str | None = None
    anomalous: tuple[str, ...] = ()
    changed_slices: tuple[str, ...] = ()
    anchor: AnchorFrozen | None = None  # rolled when a drift was declared now

    def to_dict(self) -> dict[str, object]:
        out = {"hour": iso_hour(self.hour), "mode": self.mode, "context": self.context, "start_version": self.start_version}
        if self.note is not None:
            return {**out, "note": self.note}
        scored = {**out, "champion_version": self.champion_version, "assessment": self.assessment}
        if self.dry_run:
            return {**scored, "dry_run": True}
        observed: dict[str, object] = {**scored, "declared_now": self.declared_now, "ended_now": self.ended_now,
                                       "declared_at": self.declared_at, "anomalous": list(self.anomalous),
                                       "changed_slices": list(self.changed_slices)}
        return {**observed, "anchor": self.anchor.to_dict()} if self.anchor is not None else observed

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Monitored:
        anchor = data.get("anchor")
        return cls(hour=parse_hour(data["hour"]), mode=data["mode"], context=data["context"],
                   start_version=data.get("start_version"), champion_version=data.get("champion_version"),
                   note=data.get("note"), dry_run=data.get("dry_run", False), assessment=data.get("assessment"),
                   declared_now=data.get("declared_now", False), ended_now=data.get("ended_now", False),
                   declared_at=data.get("declared_at"), anomalous=tuple(data.get("anomalous", ())),
                   changed_slices=tuple(data.get("changed_slices", ())),
                   anchor=AnchorFrozen.from_dict(anchor) if anchor else None)


@dataclass(frozen=True)
class Trained:
    """What `train` (or a full retrain) hands the evaluation: a candidate in MLflow, or the version
    this partition already produced (`reused_version`), or why the hour is not trained on
    (`skipped`: the champion's lineage already trained on it). URIs and ids only: the evaluation
    may run on another worker."""

    hour: datetime  # the (first) hour trained on
    partition_sha256: str | None = None  # the hour's identity (None: a window, not one hour)
    reused_version: str | None = None
    skipped: str | None = None
    champion: str | None = None  # skipped: the champion then
    trained_by: str | None = None  # skipped: the version of the lineage that trained on the hour
    trained_through: str | None = None  # skipped: the end of what that lineage trained on (ISO hour)
    run_id: str | None = None  # the candidate's MLflow run (reused: the version's run)
    interval_end: datetime | None = None
    kind: str = "hourly"  # "hourly" | "full_retrain" | "catch_up"
    model_uri: str | None = None
    holdout_uri: str | None = None
    parent_version: str | None = None  # the weights it started from (a full retrain: the champion it must beat)
    compare_with: str | None = None  # the champion when training started: what it must beat and replace
    data_hash: str | None = None
    drift: DriftContext | None = None
    resumed_from_step: int | None = None
    train_metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return self.drift["mode"] if self.drift is not None else "normal"

    def to_dict(self) -> dict[str, object]:
        hour = iso_hour(self.hour)
        if self.reused_version is not None:
            return {"hour": hour, "reused_version": self.reused_version, "run_id": self.run_id,
                    "partition_sha256": self.partition_sha256}
        if self.skipped is not None:
            return {"hour": hour, "reused_version": None, "partition_sha256": self.partition_sha256,
                    "skipped": self.skipped, "champion": self.champion, "trained_by": self.trained_by,
                    "trained_through": self.trained_through}
        return {"hour": hour, "interval_end": iso_hour(self.interval_end) if self.interval_end else None,
                "reused_version": None, "mode": self.mode, "drift": self.drift, "compare_with": self.compare_with,
                "run_id": self.run_id, "model_uri": self.model_uri, "holdout_uri": self.holdout_uri,
                "parent_version": self.parent_version, "data_hash": self.data_hash,
                "partition_sha256": self.partition_sha256, "kind": self.kind,
                "resumed_from_step": self.resumed_from_step, "train_metrics": dict(self.train_metrics)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trained:
        return cls(hour=parse_hour(data["hour"]), partition_sha256=data.get("partition_sha256"),
                   reused_version=data.get("reused_version"), skipped=data.get("skipped"),
                   champion=data.get("champion"), trained_by=data.get("trained_by"),
                   trained_through=data.get("trained_through"), run_id=data.get("run_id"),
                   interval_end=parse_hour(data["interval_end"]) if data.get("interval_end") else None,
                   kind=data.get("kind", "hourly"),
                   model_uri=data.get("model_uri"), holdout_uri=data.get("holdout_uri"),
                   parent_version=data.get("parent_version"),
                   compare_with=data.get("compare_with", data.get("parent_version")), data_hash=data.get("data_hash"),
                   drift=data.get("drift"), resumed_from_step=data.get("resumed_from_step"),
                   train_metrics=dict(data.get("train_metrics", {})))


@dataclass(frozen=True)
class Evaluated:
    """What `evaluate_step` hands `register_step`: the hour, and either the version reprocessing
    reuses (nothing was evaluated), why the hour was not trained (`skipped`: the champion's
    lineage already trained on it), or where the full evaluation is and the gate's verdict on it."""

    hour: datetime
    reused_version: str | None = None  # reprocessing an hour: the version made from the same inputs
    run_id: str | None = None  # the candidate's MLflow run (None: reused)
    evaluation_uri: str | None = None  # runs:/<run_id>/evaluation/evaluation.json
    decision: str | None = None  # "approved" | "rejected" (None: reused)
    reasons: tuple[str, ...] = ()
    key_metrics: Mapping[str, float | None] = field(default_factory=dict)  # registry.KEY_METRICS and more
    skipped: str | None = None  # the hour was not trained on: why (lineage.already_trained)

    @property
    def reused(self) -> bool:
        return self.reused_version is not None

    def to_dict(self) -> dict[str, object]:
        hour = iso_hour(self.hour)
        if self.skipped is not None:
            return {"hour": hour, "skipped": self.skipped}
        if self.reused_version is not None:
            return {"hour": hour, "reused_version": self.reused_version}
        return {"hour": hour, "run_id": self.run_id, "evaluation_uri": self.evaluation_uri,
                "decision": self.decision, "reasons": list(self.reasons), "key_metrics": dict(self.key_metrics)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluated:
        hour = parse_hour(data["hour"])
        if data.get("skipped"):
            return cls(hour=hour, skipped=data["skipped"])
        if data.get("reused_version"):
            return cls(hour=hour, reused_version=data["reused_version"])
        return cls(hour=hour, run_id=data["run_id"], evaluation_uri=data["evaluation_uri"],
                   decision=data["decision"], reasons=tuple(data["reasons"]), key_metrics=dict(data["key_metrics"]))


@dataclass(frozen=True)
class ChampionMove:
    """A person moved the champion alias (`incremental promote`, `rollback`, a forced promotion)."""

    champion: str
    previous: str | None
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"champion": self.champion, "previous": self.previous, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChampionMove:
        return cls(champion=data["champion"], previous=data.get("previous"), reason=data["reason"])


@dataclass(frozen=True)
class Registered:
    """The gate's outcome for the hour: the version registered (or reused), the decision and its
    reasons, the champion afterwards. Also a skipped hour (`decision` "skipped": nothing trained,
    no version) and a dry run (decided, nothing registered)."""

    hour: datetime
    version: str | None
    decision: str | None  # "approved" | "rejected" | "skipped"
    reasons: tuple[str, ...]
    champion: str | None
    reused: bool = False  # reprocessing: the version the same inputs already made
    dry_run: bool = False
    skipped: str | None = None
    trained_by: str | None = None  # skipped: the version of the champion's lineage that trained on the hour
    override: ChampionMove | None = None  # a forced promotion
    mode: str | None = None  # the candidate's mode (None: nothing was evaluated now)
    changed_slices: tuple[str, ...] = ()
    drift_evidence: tuple[str, ...] = ()
    mlflow_run_url: str | None = None
    model_version_url: str | None = None

    @property
    def new_champion(self) -> bool:
        """This registration made a new champion (not a reused version, a dry run or a skipped hour)."""
        return (not self.dry_run and not self.reused and self.version is not None
                and str(self.champion) == str(self.version))

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"hour": iso_hour(self.hour), "version": self.version, "decision": self.decision,
                                  "reasons": list(self.reasons), "champion": self.champion}
        if self.dry_run:
            out["dry_run"] = True
        else:
            out["reused"] = self.reused
        if self.skipped is not None:
            out.update(skipped=self.skipped, trained_by=self.trained_by)
        if self.override is not None:
            out["override"] = self.override.to_dict()
        if self.mode is not None:
            out.update(mode=self.mode, changed_slices=list(self.changed_slices),
                       drift_evidence=list(self.drift_evidence))
        urls = {"mlflow_run_url": self.mlflow_run_url, "model_version_url": self.model_version_url}
        return {**out, **{k: v for k, v in urls.items() if v}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Registered:
        override = data.get("override")
        return cls(hour=parse_hour(data["hour"]), version=data.get("version"), decision=data.get("decision"),
                   reasons=tuple(data.get("reasons") or ()), champion=data.get("champion"),
                   reused=data.get("reused", False), dry_run=data.get("dry_run", False), skipped=data.get("skipped"),
                   trained_by=data.get("trained_by"), override=ChampionMove.from_dict(override) if override else None,
                   mode=data.get("mode"), changed_slices=tuple(data.get("changed_slices", ())),
                   drift_evidence=tuple(data.get("drift_evidence", ())), mlflow_run_url=data.get("mlflow_run_url"),
                   model_version_url=data.get("model_version_url"))


@dataclass(frozen=True)
class CaughtUp:
    """The catch-up retrain after a declared drift: skipped (why), or its registration with the
    window it trained on and the recent hours it was judged on (the hour names the run that found it pending)."""

    hour: datetime
    skipped: str | None = None
    registered: Registered | None = None
    window: tuple[datetime, datetime] | None = None
    judged_on: tuple[datetime, datetime] | None = None

    def to_dict(self) -> dict[str, object]:
        if self.registered is None or self.window is None or self.judged_on is None:
            return {"hour": iso_hour(self.hour), "skipped": self.skipped}
        return {**self.registered.to_dict(), "hour": iso_hour(self.hour), "window": [iso_hour(h) for h in self.window],
                "judged_on": [iso_hour(h) for h in self.judged_on]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaughtUp:
        if "window" not in data:
            return cls(hour=parse_hour(data["hour"]), skipped=data.get("skipped"))
        first, end = (parse_hour(h) for h in data["window"])
        judged_from, judged_end = (parse_hour(h) for h in data["judged_on"])
        return cls(hour=parse_hour(data["hour"]), registered=Registered.from_dict(data), window=(first, end),
                   judged_on=(judged_from, judged_end))


@dataclass(frozen=True)
class HourRun:
    """One hour through every stage without Airflow (`run_hour`, `incremental run-hour`): quarantined
    (train and what follows not run), or done: the registration, the drift rule's look at the hour,
    and the catch-up retrain when one ran."""

    hour: datetime
    status: str  # "done" | "quarantined"
    rows: int
    summary: str | None = None  # quarantined: the validation's summary
    lake_key: str | None = None  # quarantined: where the data went
    warnings: tuple[str, ...] = ()
    monitored_mode: str | None = None
    drift: AssessmentRecord | None = None  # the drift rule's assessment of the hour (None: no champion yet)
    registered: Registered | None = None
    catch_up: CaughtUp | None = None

    @property
    def mode(self) -> str | None:
        """The candidate's mode, else the episode's (nothing was evaluated now)."""
        return (self.registered.mode if self.registered is not None else None) or self.monitored_mode

    @property
    def champion(self) -> str | None:
        if self.catch_up is not None and self.catch_up.registered is not None:
            return self.catch_up.registered.champion
        return self.registered.champion if self.registered is not None else None

    def to_dict(self) -> dict[str, object]:
        if self.registered is None:
            return {"hour": iso_hour(self.hour), "status": self.status, "rows": self.rows, "summary": self.summary,
                    "lake_key": self.lake_key}
        out = {"status": self.status, "rows": self.rows, "warnings": list(self.warnings), "drift": self.drift,
               **self.registered.to_dict(), "mode": self.mode, "champion": self.champion}
        caught = self.catch_up.to_dict() if self.catch_up is not None and self.catch_up.registered else None
        if caught is not None:
            out["catch_up"] = {k: caught.get(k) for k in ("window", "version", "decision", "reasons", "champion")}
        return out
