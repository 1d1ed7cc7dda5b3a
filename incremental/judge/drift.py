"""Drift: the episode the slice-change rule starts and ends, its state, and its alerts.

Adapting and not forgetting pull against each other (DESIGN.md, "Adapting versus forgetting").
This module, with the record and the rule it reads, decides from data which of the two an hour
calls for.

1. **Prequential record** (`incremental.judge.prequential`). Before anything trains on a
   validated hour, the champion scores all of its rows (test-then-train), one line per hour.
   The rule reads these alone. After a bootstrap, or after a drift episode, it waits for
   ``min_reference_hours`` of them before it judges anything. The champion's scores on its own
   training window's holdout sessions are no fair reference: early stopping chose its weights on
   them and they share its hours, so they run high. Tried: with the fast preset, the first
   steady hour after the bootstrap fell 0.07 AUC below such a reference and a false drift was
   declared on the second.
2. **The rule** (`assess`, pure, in `incremental.judge.drift_rule`). For the series ``overall`` and each category with at least
   ``slice_min_rows`` rows in an hour, the *reference* is the median of that series over the
   ``reference_hours`` measurements before the last ``sustained_hours`` (K). The hour is
   *anomalous* on a series when the champion's AUC fell more than the threshold
   (``overall_auc_drop`` / ``slice_auc_drop``) below the reference, and more than two standard
   errors of that hour's AUC (Hanley & McNeil; so a small slice must fall further before it
   counts: a poisoned hour followed by a noisy one is not a drift); the series has *changed*
   when that held for its last K measurements in a row, this hour included. A median
   reference is not moved by one bad hour, and a single anomalous hour is never "changed".
   A category the hourly rule does not call changed is also judged on its last K hours pooled
   against its reference hours pooled (`_pooled_verdict`), so the slices a drift starves (too
   few rows an hour, or too few clicks for one hour to say anything) still get a verdict,
   changed or in line, when the episode starts; pooled verdicts never hold an hour back or
   declare a drift on their own. Tried without: the medium benchmark's unchanged
   categories fell to about 20 rows an hour, were never judged, and lost 0.10 anchor AUC; and a
   changed category thin in the drift's first hour was only "anomalous 2h in a row" when the
   drift was declared, so its contradicted rows were replayed and protected.
3. **The episode** (`DriftState`, in ``<lake>/_drift/state.json``). ``normal``: gentle hourly
   updates; a candidate trained on an anomalous hour is held back (rejected, with the
   evidence): one poisoned hour looks like the first hour of a drift, and only the next hours
   can tell them apart. When a series has changed (sustained drift), the episode starts:
   mode ``adapt`` (faster updates, see `DriftSettings.adapt`), the anchor set rolls to recent
   holdout sessions (keeping the old rows of the slices measured stable), a catch-up retrain
   of the champion on what still holds (`retrain.catch_up_step`) runs through the same
   gate, and an alert says so. Rejected candidates of the episode are not
   thrown away: the next update warm-starts from the last one (the shadow chain). A promotion
   does not end the episode: one adapted model is rarely the end of adapting (tried: the medium
   benchmark's episode ended at its first promotion, gentle updates followed, replayed the
   contradicted rows and were rejected 3 times in 5). The episode ends when, after at least one
   promotion, the champion has *recovered* (no series anomalous against the reference from
   before the drift) or has *settled* (``settle_hours`` adapt candidates in a row no better than
   it on their fresh holdout: fast updates have nothing more to add). Either way the changed
   slices' rows from before the drift stay out of replay for good (``retired``: the traffic
   contradicted them) and the reference restarts from the champion's own record.
   No promotion within ``page_after_hours``: a page for a person.

Alerts are JSON lines in ``<lake>/_drift/alerts.jsonl`` (``level``: ``alert`` or ``page``) and log
lines ``ALERT search-ranker: ...``; ``$INCREMENTAL_ALERT_WEBHOOK`` gets them too when set.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from incremental.config import DriftSettings, Settings
from incremental.data import files, lake_lock, storage
from incremental.data.storage import LakePath
from incremental.errors import DamagedStateError, redact_url
from incremental.hours import HOUR, Hour, parse_hour
from incremental.judge.drift_rule import Assessment, DriftContext, Episode, Observed

if TYPE_CHECKING:
    from incremental.model.replay import StaleRule

log = logging.getLogger(__name__)
NORMAL, ADAPT = "normal", "adapt"
DRIFT_DIR = "_drift"  # in the lake: every worker reads and writes the one record, state and alert log
STATE_FILE = "state.json"
ALERTS_FILE = "alerts.jsonl"


def drift_dir(settings: Settings) -> LakePath:
    return settings.lake / DRIFT_DIR


def append_line(settings: Settings, name: str, entry: Mapping[str, object],
                check: Callable[[Any], str | None] | None = None) -> None:
    """One JSON line more in ``<lake>/_drift/<name>``: read, add, publish, under the lake lock
    (an object store has no append; two workers must not lose each other's line). A torn last
    line is set aside first (`files.append_jsonl`); with `check`, a damaged file is refused, never
    built on."""
    with lake_lock.lock(settings.lake, "drift"):
        files.append_jsonl(drift_dir(settings) / name, entry, check)


# --- the episode ----------------------------------------------------------------------------------
@dataclass
class DriftState:
    mode: str = NORMAL
    since: str | None = None  # the reference starts here (the start of the current champion's run)
    declared_at: str | None = None
    stale_champion: str | None = None  # the champion when the episode was declared
    changed_slices: list[str] = field(default_factory=list)
    stable_slices: list[str] = field(default_factory=list)  # measured and in line when it was declared
    began: str | None = None  # the first measured hour of the drift
    evidence: list[str] = field(default_factory=list)
    catch_up: str | None = None  # "pending" | "approved" | "rejected" | None
    shadow_version: str | None = None  # the last rejected candidate of the episode: the next update starts here
    promoted: list[str] = field(default_factory=list)  # versions promoted during the episode
    flat_hours: int = 0  # adapt candidates in a row, since the last promotion, no better than the champion
    paged: bool = False
    retired: list[StaleRule] = field(default_factory=list)  # `stale_rules` of ended episodes: never replayed again
    last: dict[str, Any] = field(default_factory=dict)  # the last hour's assessment
    episodes: list[Episode] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def load_state(settings: Settings) -> DriftState:
    """The drift state (a fresh one when there is none), checked field by field: an unknown key,
    a missing or wrong-typed value or an unknown mode is `DamagedStateError` naming the file."""
    path = drift_dir(settings) / STATE_FILE
    if not storage.is_file(path):
        return DriftState()
    payload = files.read_json(path)
    problem = _check_state(payload)
    if problem:
        raise DamagedStateError(f"{path} is damaged: {problem}")
    return DriftState(**payload)


def no_catch_up(state: DriftState) -> str | None:
    """Why no catch-up retrain is due (None: a drift was declared and its catch-up has not run).
    Most hours have none: the DAG's `catch_up` task asks this before it loads the training code."""
    if state.mode != ADAPT or state.catch_up != "pending":
        return f"mode {state.mode}, catch-up {state.catch_up or 'not needed'}"
    return None


_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "mode": (str,), "since": (str, type(None)), "declared_at": (str, type(None)),
    "stale_champion": (str, type(None)), "changed_slices": (list,), "stable_slices": (list,),
    "began": (str, type(None)), "evidence": (list,), "catch_up": (str, type(None)),
    "shadow_version": (str, type(None)), "promoted": (list,), "flat_hours": (int,), "paged": (bool,),
    "retired": (list,), "last": (dict,), "episodes": (list,),
}


def _check_state(payload: dict[str, Any]) -> str | None:
    unknown = sorted(set(payload) - set(_STATE_TYPES))
    if unknown:
        return f"unknown key(s) {', '.join(map(repr, unknown))}"
    for key, value in payload.items():
        if not isinstance(value, _STATE_TYPES[key]) or (key == "flat_hours" and isinstance(value, bool)):
            return f"'{key}' has the wrong type: {value!r:.80}"
    if payload.get("mode", NORMAL) not in (NORMAL, ADAPT):
        return f"'mode' must be {NORMAL!r} or {ADAPT!r}, found {payload['mode']!r:.80}"
    for key in ("retired", "episodes"):
        if not all(isinstance(e, dict) for e in payload.get(key, [])):
            return f"'{key}' must be a list of objects"
    for key in ("changed_slices", "stable_slices", "evidence", "promoted"):
        if not all(isinstance(e, str) for e in payload.get(key, [])):
            return f"'{key}' must be a list of strings"
    return None


def save_state(settings: Settings, state: DriftState) -> None:
    files.atomic_write_json(drift_dir(settings) / STATE_FILE, state.to_dict())


@contextmanager
def changing_state(settings: Settings) -> Iterator[DriftState]:
    """The drift state, read and written back under the lake's `drift` lock: the way it changes.
    Monitor (the episode moves on an hour), register (a candidate of an episode was decided) and
    the catch-up run on different workers; a read-modify-write without the lock lost the other's
    change when two met."""
    with lake_lock.lock(settings.lake, "drift"):
        state = load_state(settings)
        yield state
        save_state(settings, state)


def declare(state: DriftState, assessment: Assessment, champion: str | None = None) -> None:
    state.mode, state.declared_at, state.stale_champion = ADAPT, assessment.hour, champion
    state.changed_slices, state.stable_slices = assessment.changed_slices, assessment.stable_slices
    state.began = assessment.began
    state.evidence = assessment.evidence()
    state.catch_up, state.shadow_version, state.paged = "pending", None, False
    state.promoted, state.flat_hours = [], 0


def drift_began(state: DriftState, s: DriftSettings) -> str | None:
    """The episode's first anomalous measured hour (with a quarantined hour in the streak, earlier
    than K - 1 hours before the declaration; that is the fallback for a state without it)."""
    if state.declared_at is None:
        return None
    return state.began or f"{parse_hour(state.declared_at) - (s.sustained_hours - 1) * HOUR}"


def stale_rules(state: DriftState, s: DriftSettings) -> list[StaleRule]:
    """What replay (and the catch-up) leave out, for the current episode and every earlier one:
    the changed slices' rows from before the drift began; when the whole traffic changed and no
    single slice did, the rows of every category but those measured stable (`replay.Stale`).
    A category too thin to judge is replayed when some slice was judged changed: its knowledge is
    kept unless the data contradict it (tried: leaving it out, the catch-up forgot the unchanged
    categories, whose traffic the drift had thinned below `slice_min_rows`)."""
    rules = list(state.retired)
    if state.mode == ADAPT:
        began = drift_began(state, s)
        assert began is not None  # adapt mode: a drift was declared
        rules.append({"categories": sorted(state.changed_slices), "before": began} if state.changed_slices
                     else {"all_but": sorted(state.stable_slices), "before": began})
    return rules


def end_episode(state: DriftState, hour: Hour, how: str, s: DriftSettings) -> None:
    """The champion recovered or settled: back to normal, the reference restarts after `hour`."""
    state.retired = stale_rules(state, s)
    state.episodes.append({"declared_at": state.declared_at, "ended_at": f"{hour}", "how": how,
                           "promoted": list(state.promoted), "replaced": state.stale_champion,
                           "changed_slices": state.changed_slices, "stable_slices": state.stable_slices,
                           "evidence": state.evidence})
    next_hour = f"{hour + HOUR}"
    state.mode, state.since, state.declared_at, state.stale_champion = NORMAL, next_hour, None, None
    state.changed_slices, state.evidence, state.catch_up, state.shadow_version = [], [], None, None
    state.promoted, state.flat_hours, state.paged, state.stable_slices, state.began = [], 0, False, [], None


def hours_in_episode(state: DriftState, hour: Hour) -> float:
    if state.declared_at is None:
        return 0.0
    return (hour - parse_hour(state.declared_at)).total_seconds() / 3600


def observe(settings: Settings, assessment: Assessment, hour: Hour, champion: str | None = None) -> Observed:
    """Move the episode on by one hour's assessment (declare, recover, page), saved under the lock,
    and say what holds now."""
    with changing_state(settings) as state:
        return _moved_on(settings, state, assessment, hour, champion)


def _moved_on(settings: Settings, state: DriftState, assessment: Assessment, hour: Hour,
              champion: str | None) -> Observed:
    state.last = dict(assessment.to_dict())
    declared_now = ended_now = False
    if state.mode == NORMAL and assessment.changed:
        declare(state, assessment, champion)
        declared_now = True
        alert(settings, "alert", f"sustained drift declared at {assessment.hour}: {', '.join(assessment.changed)} "
              f"changed for {settings.drift.sustained_hours}h in a row; adapt mode, rolling anchor and a "
              f"catch-up retrain on what still holds (judged on the last {settings.drift.catch_up_hours} validated hours)",
              hour=assessment.hour, evidence=assessment.evidence())
    elif state.mode == ADAPT and state.promoted and assessment.verdicts and not assessment.anomalous:
        declared = state.declared_at
        end_episode(state, hour, "recovered", settings.drift)  # the assessment's hour
        ended_now = True
        alert(settings, "alert", f"drift episode declared at {declared} ended at {assessment.hour}: the champion "
              f"(version {champion}) recovered, its prequential AUC is back in line with the reference on every "
              "series", hour=assessment.hour)
    elif state.mode == ADAPT:
        state.changed_slices = sorted(set(state.changed_slices) | set(assessment.changed_slices))
        waited = hours_in_episode(state, hour)
        if not state.paged and not state.promoted and waited >= settings.drift.page_after_hours:
            state.paged = True
            alert(settings, "page", f"drift declared at {state.declared_at}: no candidate has passed the gate in "
                  f"{waited:.0f}h; the champion is stale, a person must look", hour=assessment.hour,
                  evidence=state.evidence)
    return {"mode": state.mode, "declared_now": declared_now, "ended_now": ended_now,
            "declared_at": state.declared_at, "anomalous": assessment.evidence() if assessment.anomalous else [],
            "changed_slices": state.changed_slices, "assessment": assessment.to_dict()}


def context(state: DriftState, hour: Hour, s: DriftSettings) -> DriftContext:
    """What the update and the gate read for `hour`: mode, this hour's anomalies, changed slices,
    and the stale rules replay applies."""
    last = state.last if state.last.get("hour") == f"{hour}" else {}
    return {"mode": state.mode, "anomalous": last.get("evidence", []) if last.get("anomalous") else [],
            "changed_slices": list(state.changed_slices) if state.mode == ADAPT else [],
            "declared_at": state.declared_at, "evidence": list(state.evidence),
            "stale": stale_rules(state, s), "judged": bool(last.get("judged", True))}


def after_decision(settings: Settings, hour: Hour, version: str | None, decision: str, kind: str,
                   improved: bool = False, forgot: bool = False) -> None:
    """A candidate of an episode was decided. Promoted: the shadow chain restarts from it; rejected:
    the next update warm-starts from it, unless it failed a forgetting check (`forgot`): breaking
    what still holds is no progress to keep, the next update starts from the champion again
    (tried: a catch-up rejected for losing 0.17 anchor AUC on the stable categories became the
    start of the next adapt update, which lost as much). `improved`: its fresh holdout says
    significantly better than the champion; after a promotion, `settle_hours` hourly candidates
    in a row that are not end the episode (settled)."""
    if version is None or load_state(settings).mode != ADAPT:
        return
    with changing_state(settings) as state:
        _decided(settings, state, hour, version, decision, kind, improved, forgot)


def _decided(settings: Settings, state: DriftState, hour: Hour, version: str, decision: str, kind: str,
             improved: bool, forgot: bool) -> None:
    if state.mode != ADAPT:  # the episode ended while this candidate was judged
        return
    approved = decision == "approved"
    if approved:
        state.promoted.append(version)
        alert(settings, "alert", f"drift episode declared at {state.declared_at}: version {version} ({kind}) "
              "passed the relative gate and is the champion; adapting goes on until it recovers or settles",
              hour=f"{hour}")
    state.shadow_version = None if approved or forgot else version
    if kind == "catch_up":
        state.catch_up = decision
    elif state.promoted:
        state.flat_hours = 0 if improved else state.flat_hours + 1
        if state.flat_hours >= settings.drift.settle_hours:
            declared = state.declared_at
            end_episode(state, hour, "settled", settings.drift)
            alert(settings, "alert", f"drift episode declared at {declared} ended at {hour}: "
                  f"{settings.drift.settle_hours} adapt candidates in a row were no better than the champion "
                  "(settled); back to normal updates", hour=f"{hour}")


def alert(settings: Settings, level: str, message: str, **details: object) -> dict[str, object]:
    """Record an alert (``alert``: for the record; ``page``: a person must look) and log it."""
    message = redact_url(message)
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "level": level, "message": message, **details}
    append_line(settings, ALERTS_FILE, entry)
    log.warning("ALERT search-ranker (%s): %s", level, message)
    if settings.alert_webhook:
        post_alert(settings.alert_webhook, entry)
    return entry


def post_alert(url: str, payload: Mapping[str, object]) -> None:
    """POST an alert as JSON to a webhook (also the Airflow failure callback's); a user and
    password in the URL go as HTTP basic auth (urllib would take them for part of the host). One
    that cannot be delivered is logged, password hidden, and never raised: it must not fail the
    hour (nor, since `paged` would not be saved, every retry of it)."""
    import base64
    import urllib.request
    from urllib.parse import unquote, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        headers = {"Content-Type": "application/json"}
        if parts.username is not None or parts.password is not None:
            user_pass = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(user_pass.encode()).decode()
            parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
        request = urllib.request.Request(urlunsplit(parts), data=json.dumps(payload).encode(), headers=headers,
                                         method="POST")
        urllib.request.urlopen(request, timeout=5).close()
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("could not POST the alert to %s: %s", redact_url(url), redact_url(str(exc)))
