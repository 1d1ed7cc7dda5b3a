"""Settings: one typed, frozen object built from the environment and a reviewed YAML file.

Where things live comes from the environment (so Airflow connections, docker-compose and the
CLI can point the same code at other storage); how the pipeline behaves (thresholds, training
knobs) comes from `incremental.yaml`, reviewed like code. Every field has its default here, equal
to the reviewed file's value (`tests/unit/test_settings_file.py` fails when they disagree); an
unknown key in the YAML file is an error, never silently ignored, and so is a missing file: the
settings never fall back to code defaults without the file that was reviewed.

| variable | default |
| --- | --- |
| `INCREMENTAL_HOME` | `./var` |
| `INCREMENTAL_WAREHOUSE_URL` | `duckdb:///$INCREMENTAL_HOME/warehouse.duckdb` (any SQLAlchemy URL) |
| `INCREMENTAL_LAKE` | `$INCREMENTAL_HOME/lake` (a path, or `s3://bucket/prefix`: see `incremental.data.storage`) |
| `INCREMENTAL_MLFLOW_URI` | `sqlite:///$INCREMENTAL_HOME/mlflow.db` (artifacts in `$INCREMENTAL_HOME/mlartifacts`) |
| `INCREMENTAL_BASE_MODEL` | `minilm` (or `tiny`, or a local Hugging Face directory) |
| `INCREMENTAL_MODEL_NAME` | `search-ranker` |
| `INCREMENTAL_CONFIG` | `incremental.yaml` at the repository root (it must exist) |
| `INCREMENTAL_ALERT_WEBHOOK` | unset (an http(s) URL: drift alerts and pages are POSTed to it; also `alert_webhook()`) |
| `INCREMENTAL_MLFLOW_UI_URL` | `http://127.0.0.1:5000` (where a person's browser reaches MLflow's UI: links) |
| `INCREMENTAL_SERVE_URLS` | unset (comma-separated base URLs of the serving replicas the deploy DAG reloads) |
| `INCREMENTAL_DAG_START` | `2026-01-01T00:00:00+00:00` (the DAGs' `start_date`; also `dag_start()`, read at parse time) |

This module is the only one of the package, the DAGs and the plugin that reads the environment
for a setting (what else reads it: the AWS_* variables, read by the AWS clients themselves, and
the tests' fault hooks, which live under `tests/`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from incremental.data.storage import ObjectPath, root
from incremental.errors import IncrementalError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = REPO_ROOT / "incremental.yaml"
DEFAULT_MLFLOW_UI_URL = "http://127.0.0.1:5000"
DEFAULT_DAG_START = datetime(2026, 1, 1, tzinfo=UTC)


class _Section(BaseModel):
    # Every number is bounded where it is declared (Field gt/ge/le) and no setting may be nan or
    # inf, so nonsense fails on loading with the key's name, not later with none.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ValidationSettings(_Section):
    """Rules of the Great Expectations suite and the hour-over-hour drift checks."""

    min_rows: int = Field(50, ge=0)  # an hour with fewer rows is quarantined (an outage, not a quiet hour)
    allowed_lateness_hours: float = Field(48.0, ge=0.0)  # event_ts may be at most this much older than the interval
    max_position: int = Field(100, ge=1)  # positions are 1-based ranks on a results page
    max_query_chars: int = Field(200, ge=1)
    max_title_chars: int = Field(2_000, ge=1)
    # row-level rules (nulls, ranges, lengths, text) quarantine the failing rows while they are at
    # most this share of the part's rows; above it the whole hour is quarantined
    max_bad_row_fraction: float = Field(0.01, ge=0.0, le=1.0)
    # absolute bounds, always on (drift needs history; these do not)
    min_ctr: float = Field(0.001, ge=0.0, le=1.0)  # click-through rate below this: broken click logging
    max_ctr: float = Field(0.8, ge=0.0, le=1.0)  # ... above this: every impression "clicked"
    max_session_share: float = Field(0.25, gt=0.0, le=1.0)  # one session holding more of the hour: a bot/loop
    # drift: compared with the statistics of earlier validated hours
    drift_window_hours: int = Field(24, ge=1)  # how many earlier validated hours form the reference
    drift_lookback_hours: int = Field(168, ge=1)  # how far back to look for them (a gap must not switch drift off)
    drift_min_history: int = Field(3, ge=1)  # fewer earlier hours than this (within the lookback): drift checks are skipped
    volume_ratio_warning: float = Field(3.0, ge=1.0)  # rows / reference median outside [1/x, x] -> warning
    volume_ratio_critical: float = Field(20.0, ge=1.0)  # ... outside [1/x, x] -> quarantine
    ctr_change_warning: float = Field(0.05, ge=0.0, le=1.0)  # |ctr - reference ctr| above this -> warning
    ctr_change_critical: float = Field(0.30, ge=0.0, le=1.0)  # ... above this -> quarantine
    # KL divergence of the hour's category mix from the reference mix (nats; see incremental.yaml for the measured
    # figures). A warning only, never a quarantine: new categories or brands taking over an hour is the change
    # the pipeline exists to adapt to (the drift response judges it); broken logging shows in schema, volume,
    # click-through and duplicates, which quarantine on their own
    category_kl_warning: float = Field(0.10, ge=0.0)


class TrainingSettings(_Section):
    """The hourly update (and the bootstrap, which uses the same loop from the base weights)."""

    seed: int = Field(13, ge=0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    learning_rate: float = Field(1e-5, gt=0.0)  # hourly updates are gentle: a warm start, not a retrain
    bootstrap_learning_rate: float = Field(5e-5, gt=0.0)  # training from the base weights (bootstrap / full retrain)
    weight_decay: float = Field(0.01, ge=0.0)
    batch_size: int = Field(32, ge=1)
    max_steps: int = Field(100, ge=1)  # per hourly update
    bootstrap_steps: int = Field(300, ge=1)  # for `incremental bootstrap` / full retrain
    # ... or more: a full retrain makes at least this many passes over its window's training rows
    # (300 steps of 32 would see a tenth of 48 hours of 2,000 impressions; the reference must see all)
    bootstrap_epochs: float = Field(1.0, ge=0.0)
    warmup_fraction: float = Field(0.1, ge=0.0, le=1.0)  # linear warm-up, then linear decay to zero
    max_grad_norm: float = Field(1.0, gt=0.0)
    l2sp_strength: float = Field(0.1, ge=0.0)  # pull toward the starting (champion) weights; 0 turns it off
    replay_fraction: float = Field(0.5, ge=0.0, lt=1.0)  # share of the training set drawn from earlier validated hours; 0 turns it off
    replay_hours: int = Field(48, ge=0)  # how far back replay looks
    # a warm-started update (not a first model or a retrain from the base weights) leaves the
    # word-piece embeddings as they are: 11.7M of minilm-l2's 15.5M weights, most of them rows of
    # words the hour never shows (measured: the same truth NDCG@10, 25% less training time)
    freeze_word_embeddings: bool = True
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0)  # by hash of session_id: the gate's rows, never trained on
    # early stopping judges on its own sessions, taken from the training side (a second hash of
    # session_id): the gate never compares on the rows that chose the candidate's weights
    early_stopping_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    eval_every: int = Field(50, ge=1)  # steps between early-stopping evaluations
    early_stopping_patience: int = Field(2, ge=1)  # evaluations without improvement before stopping
    # what early stopping watches on its rows: "loss" (the training objective) or "auc" (click AUC, the
    # ranking): benchmarks/early_stopping_bench.py measures both on a full retrain
    early_stopping_metric: Literal["loss", "auc"] = "loss"
    # clicks are position-biased: "pbm" trains on P(click) = examination[position] x P(relevant), with
    # the examination curve estimated from the logs (incremental.model.propensity); "none": plain BCE on clicks
    position_bias: Literal["pbm", "none"] = "none"
    # weak supervision: the training label is this share P(click | BM25) and the rest the click
    # (incremental.model.weak_labels); 0 trains on clicks alone. Early stopping and the gate judge clicks
    bm25_label_weight: float = Field(0.5, ge=0.0, le=1.0)
    propensity_hours: int = Field(24, ge=1)  # validated hours, up to the update's last, the curve is fitted on
    checkpoint_every: int = Field(50, ge=1)  # steps between checkpoints
    max_length: int = Field(64, ge=4)  # tokens per (query, product text) pair; batches are padded dynamically
    # training's forward pass in bfloat16 (weights, optimizer and loss stay float32) where the hardware
    # has it natively (`ranker.native_bf16`: CUDA, or a CPU with AVX-512 BF16 / AMX); the gate scores in float32
    bf16_autocast: bool = True


class GateSettings(_Section):
    """Promotion thresholds, read by `incremental.judge.gate.decide` (see its docstring for each check).

    The core is relative: the candidate against the champion on the same fresh holdout, with a
    paired bootstrap interval over sessions. Value thresholds are sanity floors: they judge the
    first model alone, and afterwards never block a candidate that is at least as good as the
    champion on the same fresh rows. Forgetting limits protect the anchor slices that have not
    changed (`incremental.judge.drift`). A drop is champion minus candidate (positive = worse).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # a nan/inf threshold means nothing

    # sanity floors (the first model: value checks only)
    # fresh holdout ROC AUC at least this: chance. A first model is judged against a lexical floor fitted on
    # its own hours (`holdout_vs_lexical_floor`), not by a constant tuned on one data set
    min_holdout_auc: float = Field(0.5, ge=0.0, le=1.0)
    max_holdout_logloss: float = Field(0.69, gt=0.0)  # fresh holdout log loss at most this (ln 2 = 0.693: a coin)
    max_holdout_ece: float = Field(0.15, gt=0.0, le=1.0)  # calibration error on the fresh holdout at most this
    min_holdout_rows: int = Field(1, ge=1)  # a holdout with fewer rows rejects (an empty one always does)
    # relative: candidate minus champion on the same fresh holdout, paired bootstrap over sessions
    # and products ("sessions": products held fixed; the A/A benchmark measures both, see
    # docs/benchmarks.md). The frozen anchor's intervals resample its sessions only.
    # "sessions" by default: the two-way interval holds its level but, on an hour's 20-50 holdout
    # sessions, it no longer rejected the poisoned hour of tests/e2e/test_gate_minilm.py
    bootstrap_units: Literal["sessions", "sessions_and_products"] = "sessions"
    bootstrap_samples: int = Field(1000, ge=100)
    confidence: float = Field(0.9, gt=0.5, lt=1.0)  # of the two-sided interval
    max_holdout_ndcg_deficit: float = Field(0.0, ge=0.0)  # reject when the interval's upper end < -this
    max_holdout_auc_deficit: float = Field(0.0, ge=0.0)  # ... the same for AUC
    # forgetting: on the anchor rows of the slices that have not changed
    max_anchor_auc_drop: float = Field(0.02, ge=0.0)  # anchor AUC may fall at most this below the champion's
    max_worst_category_auc_drop: float = Field(0.05, ge=0.0)  # ... and in the worst category at most this
    min_category_rows: int = Field(100, ge=1)  # per-category AUC on fewer rows is noise (SE ~0.07 at 100 rows, 15% CTR)
    # ... and, summed over updates, the mean per-category anchor AUC of the protected categories may
    # fall at most this below the anchor's baseline (the champion when it was frozen or rolled)
    max_cumulative_auc_drop: float = Field(0.01, ge=0.0)
    # transient versus sustained: a candidate trained on an hour where the champion's own
    # prequential metric fell (`incremental.judge.drift`) is held back in normal mode; on an hour the
    # drift rule has no verdict on (a late hour, too few earlier hours), its holdout AUC against its anchor AUC
    hold_anomalous_hours: bool = True


class AdaptSettings(_Section):
    """How updates train during a drift episode (mode `adapt`): faster, replaying what still holds."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    learning_rate: float = Field(5e-5, gt=0.0)  # re-warmed: the bootstrap's rate, not the gentle hourly one
    max_steps: int = Field(100, ge=1)
    replay_fraction: float = Field(0.5, ge=0.0, lt=1.0)
    # replay window; the changed slices' rows from before the drift are left out (`replay.Stale`)
    replay_hours: int = Field(48, ge=1)
    l2sp_strength: float = Field(0.1, ge=0.0)  # the hourly pull: the stable slices must not move
    # the catch-up retrains the champion at the bootstrap rate: at least this many passes over what still holds
    catch_up_passes: float = Field(1.0, gt=0.0)
    # processes (GPUs) of the worker the catch-up trains on: 1 in the hourly task, more under torchrun (DDP)
    catch_up_processes: int = Field(1, ge=1, le=16)


class DriftSettings(_Section):
    """The drift rule and response (`incremental.judge.drift`): when to adapt, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    overall_auc_drop: float = Field(0.05, gt=0.0)  # champion's prequential AUC this far below its reference: anomalous
    slice_auc_drop: float = Field(0.15, gt=0.0)  # ... for one category (noisier: fewer rows)
    slice_min_rows: int = Field(100, ge=1)  # a category with fewer rows in an hour is not judged that hour
    sustained_hours: int = Field(3, ge=2)  # K: anomalous this many measurements in a row = changed (drift)
    reference_hours: int = Field(12, ge=1)  # the reference is the median over this many earlier measurements
    min_reference_hours: int = Field(3, ge=1)  # fewer earlier measurements: no verdict
    catch_up_hours: int = Field(3, ge=1)  # W: the catch-up is judged on, and the rolled anchor samples, the last W validated hours
    page_after_hours: int = Field(24, ge=1)  # no promotion this long after the drift was declared: page a person
    settle_hours: int = Field(3, ge=1)  # after a promotion: this many adapt candidates in a row no better than the champion end the episode
    adapt: AdaptSettings = Field(default_factory=AdaptSettings)


class Tuning(_Section):
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)


SECTIONS = tuple(Tuning.model_fields)
MODELS_KEY = "models"  # per base model: sections merged over the file's when that model is the base


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into `base`, section by section, key by key (a new dict)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


class Settings(_Section):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, arbitrary_types_allowed=True)

    home: Path
    warehouse_url: str
    lake: Path | ObjectPath  # a local folder (the default), or a prefix on object storage (s3://bucket/prefix)
    mlflow_uri: str
    mlflow_artifacts: Path
    base_model: str = "minilm"
    model_name: str = "search-ranker"
    config_file: Path | None = None
    alert_webhook: str | None = Field(None, repr=False)  # an http(s) URL (`webhook_url`); may hold a password
    mlflow_ui_url: str = DEFAULT_MLFLOW_UI_URL  # MLflow's UI as a person's browser reaches it (no trailing /)
    serve_urls: tuple[str, ...] = ()  # base URLs of the serving replicas (no trailing /)
    dag_start: datetime = DEFAULT_DAG_START  # the DAGs' start_date (aware, UTC unless it says otherwise)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)

    def with_training(self, **overrides: object) -> Settings:
        """A copy with some training settings replaced (manual-run overrides), still validated."""
        try:
            training = TrainingSettings(**{**self.training.model_dump(), **overrides})
        except ValidationError as exc:
            raise SettingsError(f"training overrides {overrides}: {_problems(exc, 'training.')}") from None
        return self.model_copy(update={"training": training})


class SettingsError(IncrementalError, ValueError):
    """The configuration is wrong; the message names the key."""


def load_tuning(path: Path | None, base_model: str | None = None) -> Tuning:
    """The file's sections, with `models.<base_model>` merged over them when it has one (every
    model's entry is checked, whichever is the base)."""
    if path is None:
        return Tuning()
    if not path.is_file():
        raise SettingsError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SettingsError(f"{path}: not valid YAML{at}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} cannot be read: {exc}") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: the top level must be a mapping of sections")
    models = raw.pop(MODELS_KEY, None) or {}
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise SettingsError(f"{path}: {MODELS_KEY} must map a base model to sections ({', '.join(SECTIONS)})")
    for name, sections in models.items():
        _tuning(path, merge(raw, sections), where=f"{MODELS_KEY}.{name}: ")
    return _tuning(path, merge(raw, models.get(base_model, {})))


def _tuning(path: Path, raw: dict[str, Any], where: str = "") -> Tuning:
    try:
        return Tuning(**raw)
    except ValidationError as exc:
        raise SettingsError(f"{path}: {where}{_problems(exc)}") from None


def _problems(exc: ValidationError, prefix: str = "") -> str:
    """Pydantic's errors as `section.key: what is wrong`, one after the other."""
    return "; ".join(f"{prefix}{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())


def reviewed_config_file(env: Mapping[str, str]) -> Path:
    """The reviewed YAML file: `INCREMENTAL_CONFIG`, else `incremental.yaml` at the repository root.

    It must exist: without it the pipeline would run on whatever the code defaults are.
    """
    config = env.get("INCREMENTAL_CONFIG")
    path = Path(config) if config else DEFAULT_CONFIG_FILE
    if not path.is_file():
        if config:
            raise SettingsError(f"config file {path} does not exist (named by INCREMENTAL_CONFIG)")
        raise SettingsError(f"config file {path} does not exist: the reviewed settings ship with the repository; "
                            "restore it, or set INCREMENTAL_CONFIG to a reviewed YAML file")
    return path


def _http_url(name: str, value: str) -> str:
    """`value` if it is an http(s) URL with a host; else a SettingsError naming the variable."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed "[" of an IPv6 address
        host = None
    if not host or parts.scheme.lower() not in ("http", "https"):
        raise SettingsError(f"{name} {value!r} is not an http(s) URL with a host")
    return value


def mlflow_ui_url(value: str | None) -> str:
    """`INCREMENTAL_MLFLOW_UI_URL`: where a person's browser reaches MLflow's UI, which may differ
    from the tracking URI the code writes to (links: `incremental.registry.links`). Not checked: a path
    (`/mlflow`, behind the same proxy as Airflow) is a fine link too."""
    return value.rstrip("/") if value else DEFAULT_MLFLOW_UI_URL


def serve_urls(value: str | None) -> tuple[str, ...]:
    """`INCREMENTAL_SERVE_URLS`: the serving replicas' base URLs, comma-separated."""
    urls = (u.strip() for u in (value or "").split(","))
    return tuple(_http_url("INCREMENTAL_SERVE_URLS", u).rstrip("/") for u in urls if u)


def dag_start(env: Mapping[str, str] | None = None) -> datetime:
    """`INCREMENTAL_DAG_START`, the first hour the DAGs know about (UTC unless it names an offset).

    The one setting the DAG files need when they are parsed, where loading the whole settings
    (the reviewed file) would make every DAG fail to import on a configuration error that only
    the tasks should report: it has this reader of its own, which `load_settings` uses too."""
    value = (os.environ if env is None else env).get("INCREMENTAL_DAG_START")
    if not value:
        return DEFAULT_DAG_START
    try:
        start = datetime.fromisoformat(value)
    except ValueError:
        raise SettingsError(f"INCREMENTAL_DAG_START {value!r} is not an ISO date and time "
                            "(e.g. 2026-01-01T00:00:00+00:00)") from None
    return start if start.tzinfo is not None else start.replace(tzinfo=UTC)


def webhook_url(value: str | None) -> str | None:
    """`INCREMENTAL_ALERT_WEBHOOK` checked when the settings load: an http(s) URL with a host, or
    unset. Anything else would fail only when the first alert is sent (`unknown url type`),
    in the middle of an hour."""
    if not value:
        return None
    try:
        return _http_url("INCREMENTAL_ALERT_WEBHOOK", value)
    except SettingsError as e:
        raise SettingsError(f"{e} (e.g. https://hooks.example.com/services/...)") from None


def alert_webhook(env: Mapping[str, str] | None = None) -> str | None:
    """`INCREMENTAL_ALERT_WEBHOOK` alone (checked as `webhook_url`), which `load_settings` uses too:
    a failed task's alert is sent even when the rest of the settings cannot be loaded (that may
    be why the task failed)."""
    return webhook_url((os.environ if env is None else env).get("INCREMENTAL_ALERT_WEBHOOK"))


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    home = Path(env.get("INCREMENTAL_HOME", "var")).absolute()
    config_file = reviewed_config_file(env)
    base_model = env.get("INCREMENTAL_BASE_MODEL", "minilm")
    tuning = load_tuning(config_file, base_model)
    return Settings(
        home=home,
        warehouse_url=env.get("INCREMENTAL_WAREHOUSE_URL", f"duckdb:///{home / 'warehouse.duckdb'}"),
        lake=root(env.get("INCREMENTAL_LAKE", str(home / "lake"))),
        mlflow_uri=env.get("INCREMENTAL_MLFLOW_URI", f"sqlite:///{home / 'mlflow.db'}"),
        mlflow_artifacts=home / "mlartifacts",
        base_model=base_model,
        model_name=env.get("INCREMENTAL_MODEL_NAME", "search-ranker"),
        config_file=config_file,
        alert_webhook=alert_webhook(env),
        mlflow_ui_url=mlflow_ui_url(env.get("INCREMENTAL_MLFLOW_UI_URL")),
        serve_urls=serve_urls(env.get("INCREMENTAL_SERVE_URLS")),
        dag_start=dag_start(env),
        validation=tuning.validation,
        training=tuning.training,
        gate=tuning.gate,
        drift=tuning.drift,
    )
