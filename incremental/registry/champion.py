"""The MLflow model registry workflow: every candidate a version, the champion an alias.

- Every candidate is registered as a version of `settings.model_name` and tagged with its
  decision, reasons, interval, parent version, data hash, key metrics and Airflow run id, so a
  reviewer in the MLflow UI sees rejected candidates too.
- Promotion is compare-and-set: the alias `champion` moves to an approved candidate only if it
  still points at the version the candidate was trained from; otherwise the candidate is
  rejected as stale. MLflow has no atomic alias update, so the read-compare-write runs under an
  exclusive lock: a file lock in INCREMENTAL_HOME (a shared volume in the compose stack) when the
  lake is a local folder; when the lake is on object storage (`s3://`), a lock object in the lake
  taken with a create-only conditional PUT, so workers need no shared disk (`lake_lock.lock`).
- Idempotent: (interval, parent version, data hash) names a candidate; registering the same
  key again returns the existing version.
- A person can promote a rejected version or roll back, with a reason; both are recorded as tags.

What it records on each version, read back as `incremental history` shows it: `incremental.registry.history`.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import cast

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from incremental.config import Settings
from incremental.data import lake_lock
from incremental.errors import IncrementalError, require_reason
from incremental.handover import ChampionMove
from incremental.hours import iso_hour, now_iso
from incremental.registry import tracking

ALIAS = tracking.CHAMPION_ALIAS
_q = tracking.quote  # every value in a search filter goes through it
BASE = "base"  # the parent "version" of a model trained from the base weights
KEY_METRICS = ("holdout_auc", "holdout_logloss", "anchor_auc", "anchor_ndcg@10", "worst_category_auc",
               "holdout_ndcg_diff", "holdout_auc_diff")
SAME_AS_PARENT = object()  # register_candidate's default: the champion must still be the parent
TAG_NAMES = {k: k.replace("@", "_at_") for k in KEY_METRICS}  # MLflow tag names cannot hold "@"
# "pending" from the moment a version exists until its decision is carried out (champion moved,
# description written); a version that stays "pending" was interrupted and is completed by the
# rerun (register_candidate finds it by its key). Versions without the tag predate it: done.
REGISTRATION_TAG = "registration"


class RegistryError(IncrementalError, RuntimeError):
    """A registry operation cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class Registration:
    """A candidate's registration: its version, the decision carried out (a stale approval becomes
    a rejection), the reasons, the champion afterwards; `reused`: the same inputs' version, found again."""

    version: str
    decision: str
    reasons: tuple[str, ...]
    champion: str | None
    reused: bool


def candidate_key(interval_start: datetime, parent_version: str | None, data_hash: str) -> str:
    """The idempotency key of a candidate: the same inputs never make a second version."""
    raw = f"{interval_start.isoformat()}|{parent_version or BASE}|{data_hash}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


@contextmanager
def _registry_lock(settings: Settings) -> Iterator[None]:
    """The compare-and-set's lock, in the lake that every worker reaches (`incremental.data.lake_lock`:
    `flock` on a local lake, a conditional-PUT lease on an object store)."""
    with lake_lock.lock(settings.lake, "registry"):
        yield


def _ensure_model(client: mlflow.MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(
                name, description="Search ranker cross-encoder; alias `champion` is what production serves."
            )
        except MlflowException as again:  # created concurrently
            if again.error_code != "RESOURCE_ALREADY_EXISTS":
                raise


def find_by_key(settings: Settings, key: str) -> ModelVersion | None:
    client = tracking.configure(settings)
    found = client.search_model_versions(f"name = {_q(settings.model_name)} and tags.candidate_key = {_q(key)}")
    return min(found, key=lambda v: int(v.version)) if found else None


def find_processed(
    settings: Settings, interval_start: datetime, partition_sha256: str, parent_version: str | None
) -> ModelVersion | None:
    """The version an hourly run already made from this very partition that reprocessing should
    reuse, if any: one that was approved (the hour is in the champion's lineage: never train on
    it twice), else one trained from `parent_version` (the current champion: the same inputs).

    A version rejected because it was trained from an older champion (stale, or gated against a
    champion that has since moved) is not reused: the hour is retrained from the current one.
    A version whose registration was interrupted is not reused either: the rerun completes it.
    """
    client = tracking.configure(settings)
    try:
        found = client.search_model_versions(
            f"name = {_q(settings.model_name)} and tags.interval_start = {_q(interval_start.isoformat())}"
            f" and tags.partition_sha256 = {_q(partition_sha256)}"
        )
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    done = sorted((v for v in found if v.tags.get(REGISTRATION_TAG, "done") == "done"), key=lambda v: int(v.version))
    approved = [v for v in done if v.tags.get("decision") == "approved" or v.tags.get("override") == "promoted"]
    same_parent = [v for v in done if v.tags.get("parent_version") == (parent_version or BASE)]
    reusable = approved or same_parent
    return reusable[0] if reusable else None


def champion_periods(version: ModelVersion) -> list[list[str | None]]:
    """When the version was the champion: [start, end or None] pairs, as its tag records them."""
    return json.loads(version.tags.get("champion_periods", "[]"))


def _move_champion(client: mlflow.MlflowClient, name: str, to_version: str, when: str) -> str | None:
    """Point the alias at `to_version`, closing the old champion's period and opening the new one."""
    current = tracking.champion_version(client, name)
    if current == to_version:
        return current
    if current is not None:
        old = client.get_model_version(name, current)
        periods = champion_periods(old)
        if periods and periods[-1][1] is None:
            periods[-1][1] = when
        client.set_model_version_tag(name, current, "champion_periods", json.dumps(periods))
    new = client.get_model_version(name, to_version)
    opened = [*champion_periods(new), [when, None]]
    client.set_model_version_tag(name, to_version, "champion_periods", json.dumps(opened))
    client.set_registered_model_alias(name, ALIAS, to_version)
    return current


def stale_reason(expected: str | None, parent: str | None, champion_now: str | None) -> str:
    """Why an approved candidate is rejected after all: the champion is no longer `expected`, the
    one it was trained from (`parent`) or judged against. Both places that check say it so."""
    how = "trained from" if (expected or BASE) == (parent or BASE) else "judged against"
    return (f"stale: {how} version {expected or BASE} but the champion is now {champion_now or 'none'}; "
            "retrain from the current champion")


def register_candidate(
    settings: Settings,
    *,
    model_uri: str,
    run_id: str,
    interval_start: datetime,
    interval_end: datetime,
    parent_version: str | None,
    data_hash: str,
    approved: bool,
    reasons: list[str],
    metrics: Mapping[str, float | None],
    airflow_run_id: str | None = None,
    partition_sha256: str | None = None,
    anchor_sha256: str | None = None,
    expected_champion: str | None | object = SAME_AS_PARENT,
    extra_tags: dict[str, str] | None = None,
) -> Registration:
    """Register the candidate (or find it again) and, if approved, promote it compare-and-set.

    The champion must still be `expected_champion` (by default the parent it was trained from;
    for a drift episode's shadow chain, the champion it was compared with). `extra_tags` (the
    mode, drift evidence, changed slices) are recorded on the version.
    """
    expected = parent_version if expected_champion is SAME_AS_PARENT else cast("str | None", expected_champion)
    client = tracking.configure(settings)
    name = settings.model_name
    key = candidate_key(interval_start, parent_version, data_hash)
    with _registry_lock(settings):
        existing = find_by_key(settings, key)
        if existing is not None and existing.tags.get(REGISTRATION_TAG, "done") != "done":
            return _complete(client, settings, existing, expected)
        if existing is not None:
            return Registration(version=str(existing.version), decision=existing.tags.get("decision", ""),
                                reasons=tuple(json.loads(existing.tags.get("reasons", "[]"))),
                                champion=tracking.champion_version(client, name), reused=True)
        decision, reasons = ("approved" if approved else "rejected"), list(reasons)
        champion_now = tracking.champion_version(client, name)
        if approved and champion_now != expected:
            decision = "rejected"
            reasons.append(stale_reason(expected, parent_version, champion_now))
        _ensure_model(client, name)
        tags = {
            "candidate_key": key,
            "decision": decision,
            "reasons": json.dumps(reasons),
            "interval": f"{iso_hour(interval_start)}/{iso_hour(interval_end)}",
            "interval_start": interval_start.isoformat(),
            "parent_version": parent_version or BASE,
            "data_hash": data_hash,
            "airflow_run_id": airflow_run_id or "",
            "partition_sha256": partition_sha256 or "",
            "anchor_sha256": anchor_sha256 or "",
            **_lake_lineage(client, run_id),
            "registered_at": now_iso(),
            REGISTRATION_TAG: "pending",
            **{TAG_NAMES[k]: f"{v:.6g}" if v is not None else "nan" for k, v in metrics.items() if k in KEY_METRICS},
            **{k: v for k, v in (extra_tags or {}).items() if v},
        }
        version = str(mlflow.register_model(model_uri, name, tags=tags).version)
        return _complete(client, settings, client.get_model_version(name, version), expected, reused=False)


def _lake_lineage(client: mlflow.MlflowClient, run_id: str) -> dict[str, str]:
    """The lake table and its version the run's fresh hours were read at (its `lineage.*` tags)."""
    tags = client.get_run(run_id).data.tags
    return {"lake_table": tags.get("lineage.table", ""), "lake_table_version": tags.get("lineage.table_version", "")}


def _complete(client: mlflow.MlflowClient, settings: Settings, mv: ModelVersion, expected: str | None,
              *, reused: bool = False) -> Registration:
    """Carry out a registered version's decision (under the registry lock): description, and for
    an approved one the champion move, compare-and-set against the champion it was judged
    against once more (a version whose registration was interrupted while the champion moved on
    becomes stale)."""
    name, version = settings.model_name, str(mv.version)
    decision, reasons = mv.tags.get("decision", "rejected"), json.loads(mv.tags.get("reasons", "[]"))
    champion_now = tracking.champion_version(client, name)
    if decision == "approved" and champion_now != expected and champion_now != version:
        decision = "rejected"
        reasons.append(stale_reason(expected, mv.tags.get("parent_version", BASE), champion_now))
        client.set_model_version_tag(name, version, "decision", decision)
        client.set_model_version_tag(name, version, "reasons", json.dumps(reasons))
    client.update_model_version(name, version, description=_description(decision, reasons, mv.tags))
    if decision == "approved":
        _move_champion(client, name, version, now_iso())
    client.set_model_version_tag(name, version, REGISTRATION_TAG, "done")
    return Registration(version=version, decision=decision, reasons=tuple(reasons),
                        champion=tracking.champion_version(client, name), reused=reused)


def _description(decision: str, reasons: list[str], tags: dict[str, str]) -> str:
    lines = [f"**{decision.upper()}** for {tags['interval']} (parent {tags['parent_version']})", ""]
    lines += [f"- {reason}" for reason in reasons]
    return "\n".join(lines)


def _existing_version(client: mlflow.MlflowClient, name: str, version: str) -> ModelVersion:
    """The registered version, or "no such version"; any other failure (the server is down) is
    not mistaken for it."""
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise RegistryError(f"{name} has no version {version}") from None
        raise


WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def check_loadable(settings: Settings, version: str) -> None:
    """Before the alias moves to `version` by hand: its model downloads from the registry (not
    from this worker's cache: serving does not read it) and holds a ranker pyfunc: the MLmodel
    file, the pickled wrapper, the Hugging Face config and weights. A version whose artifacts are
    gone would otherwise become the champion, fail the next hour and every replica's start."""
    from mlflow.models import Model

    name = settings.model_name
    refused = f"{name} version {version} cannot be loaded, the champion was not moved"
    with tempfile.TemporaryDirectory(prefix=f"check-{version}-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=tmp))
            flavor = Model.load(str(local)).flavors.get("python_function", {})
        except (MlflowException, OSError) as exc:
            text = str(getattr(exc, "message", exc)).strip().splitlines()
            raise RegistryError(f"{refused}: {text[0] if text else type(exc).__name__}") from None
        model_dir = local / flavor.get("artifacts", {}).get("model_dir", {}).get("path", "artifacts/model_dir")
        needed = [local / flavor.get("python_model", "python_model.pkl"), model_dir / "config.json"]
        missing = [str(p.relative_to(local)) for p in needed if not p.is_file()]
        if not any((model_dir / w).is_file() for w in WEIGHTS):
            missing.append(" or ".join(str((model_dir / w).relative_to(local)) for w in WEIGHTS))
        if missing:
            raise RegistryError(f"{refused}: its model has no {', '.join(missing)}")


def promote(settings: Settings, version: str, reason: str, who: str | None = None) -> ChampionMove:
    """A person overrides the gate: `version` becomes champion, with the reason recorded."""
    reason = require_reason(reason, "a manual promotion (--reason)", RegistryError)
    client = tracking.configure(settings)
    name = settings.model_name
    with _registry_lock(settings):
        version = str(_existing_version(client, name, version).version)
        check_loadable(settings, version)
        when = now_iso()
        previous = _move_champion(client, name, version, when)
        for key, value in {
            "override": "promoted",
            "override_reason": reason,
            "override_by": who or getpass.getuser(),
            "override_at": when,
        }.items():
            client.set_model_version_tag(name, version, key, value)
    return ChampionMove(champion=version, previous=previous, reason=reason)


def rollback(settings: Settings, reason: str, to: str | None = None, who: str | None = None) -> ChampionMove:
    """Make an earlier champion the champion again (default: the one before the current)."""
    reason = require_reason(reason, "a rollback (--reason)", RegistryError)
    client = tracking.configure(settings)
    name = settings.model_name
    with _registry_lock(settings):
        current = tracking.champion_version(client, name)
        if to is None:
            earlier = [
                (periods[-1][1], str(v.version))
                for v in client.search_model_versions(f"name = {_q(name)}")
                if str(v.version) != current and (periods := champion_periods(v)) and periods[-1][1] is not None
            ]
            if not earlier:
                raise RegistryError(f"{name} has no earlier champion to roll back to")
            to = max(earlier)[1]
        _existing_version(client, name, to)
        check_loadable(settings, str(to))
        when = now_iso()
        _move_champion(client, name, str(to), when)
        for key, value in {"rollback_reason": reason, "rollback_by": who or getpass.getuser(), "rollback_at": when,
                           "rollback_from": current or ""}.items():
            client.set_model_version_tag(name, str(to), key, value)
    return ChampionMove(champion=str(to), previous=current, reason=reason)
