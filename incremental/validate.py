"""Validate one extracted hour: a Great Expectations (GX Core 1.x) suite plus hour-over-hour drift.

Pure core: `validate_frame(frame, start, end, settings, history)` -> (checks, statistics).
I/O edge: `validate_hour(lake, start, settings)` reads the live partition, validates it, and either
writes `_validation.json` beside it (the hour is then *validated* for `lake.partition()`) or moves it
to quarantine with the full GX result (`gx_result.json`) and GX's own data docs (`data_docs/`).

Every check has a rule name (the GX expectation type where GX evaluates it), a column, a severity
("critical" quarantines the hour, "warning" is recorded only), and how many rows failed.

| rule | severity | where |
| --- | --- | --- |
| expect_table_columns_to_match_set | critical | GX |
| expect_column_values_to_be_of_type (per column) | critical | Arrow schema (partition) or pandas dtypes (frame) |
| expect_table_row_count_to_be_between (min_rows) | critical | GX |
| expect_column_values_to_not_be_null (9 columns) | critical | GX |
| expect_column_values_to_be_in_set (clicked in {0, 1}) | critical | GX |
| expect_column_values_to_be_between (position; event_ts; ingested_at) | critical | GX |
| expect_column_values_to_be_unique (event_id) | critical | GX |
| expect_column_value_lengths_to_be_between (query [1, max]; title [0, max]) | critical | GX |
| expect_column_values_to_be_valid_text (query, title; any non-Arrow text column) | critical | here |
| drift_row_count, drift_ctr, drift_category_mix | warning or critical | here, from history |

Invalid text (C0/C1 control characters other than tab and newline, lone surrogates) is checked
here, not in GX: GX fingerprints the whole frame through pandas' Arrow-backed strings, which
cannot hold a lone surrogate, so such values are replaced by U+FFFD in the copy GX sees (the
data on disk is never touched; a Parquet file cannot hold them anyway).

Columns that are missing or of the wrong type get their schema failure and no value checks (GX
would raise on them); the hour is quarantined cleanly with a message naming the column.
"""

from __future__ import annotations

import logging
import math
import os
import re
import statistics
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from incremental import lake as lk
from incremental.config import ValidationSettings

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TQDM_DISABLE", "1")

CRITICAL = "critical"
WARNING = "warning"
SUITE_NAME = "search_logs_hour"

NOT_NULL_COLUMNS = (
    "event_id",
    "event_ts",
    "ingested_at",
    "session_id",
    "query",
    "product_id",
    "position",
    "clicked",
    "title",
)
TEXT_COLUMNS = ("query", "title")

# C0 controls except \t and \n, DEL, C1 controls; the second form adds lone surrogates (Python re only:
# RE2 / Arrow strings are valid UTF-8 and cannot hold surrogates).
_CONTROL = "[\x00-\x08\x0b-\x1f\x7f-\x9f]"
_CONTROL_OR_SURROGATE = "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]"
_SURROGATE_RE = re.compile("[\ud800-\udfff]")

DRIFT_RULES = ("drift_row_count", "drift_ctr", "drift_category_mix")


class ValidationError(RuntimeError):
    """The hour cannot be validated at all (no live partition)."""


@dataclass(frozen=True)
class Check:
    rule: str
    column: str | None
    severity: str  # "critical" | "warning"
    success: bool
    unexpected: int | None  # rows that failed, where the rule counts rows
    message: str

    @property
    def name(self) -> str:
        return f"{self.rule}({self.column})" if self.column else self.rule

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "column": self.column,
            "severity": self.severity,
            "success": self.success,
            "unexpected": self.unexpected,
            "message": self.message,
        }


@dataclass(frozen=True)
class ValidationReport:
    start: datetime
    status: str  # "validated" | "quarantined"
    rows: int
    checks: tuple[Check, ...]
    path: Path  # the live folder (validated) or the quarantine folder
    data_docs: Path | None  # index.html of the GX data docs site (quarantined hours)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.success and c.severity == CRITICAL)

    @property
    def warnings(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.success and c.severity == WARNING)

    @property
    def ok(self) -> bool:
        return self.status == "validated"

    def summary(self) -> str:
        hour = f"{self.start.astimezone(UTC):%Y-%m-%dT%H:00Z}"
        failures, warns = self.failures, self.warnings
        if self.status == "quarantined":
            head = f"hour {hour} quarantined ({len(failures)} critical"
            head += f", {len(warns)} warning" + ("s" if len(warns) != 1 else "") if warns else ""
            head += f"): {self.rows} rows moved to {self.path}"
        else:
            head = f"hour {hour} validated: {self.rows} rows"
            head += f", {len(warns)} warning" + ("s" if len(warns) != 1 else "") if warns else ""
        lines = [head]
        lines += [f"  critical: {c.message}" for c in failures]
        lines += [f"  warning: {c.message}" for c in warns]
        lines += [
            f"  note: {c.message}"
            for c in self.checks
            if c.success and c.message.startswith(tuple(f"{r}: skipped" for r in DRIFT_RULES))
        ]
        if self.data_docs is not None:
            lines.append(f"  data docs: {self.data_docs}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# schema


def _arrow_type_name(t: pa.DataType) -> str:
    return str(t)


def _dtype_matches(series: pd.Series, expected: pa.DataType) -> bool:
    dtype = series.dtype
    if pa.types.is_string(expected) or pa.types.is_large_string(expected):
        if isinstance(dtype, pd.StringDtype):
            return True
        if pd.api.types.is_object_dtype(dtype):  # hand-made frames: every non-null value must be a str
            values = series.dropna()
            return bool(values.map(type).eq(str).all()) if len(values) else True
        return False
    if pa.types.is_timestamp(expected):
        return isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) in ("UTC", "utc")
    if pa.types.is_integer(expected):
        return getattr(dtype, "type", None) is expected.to_pandas_dtype()  # int32 or nullable Int32
    if pa.types.is_floating(expected):
        return getattr(dtype, "type", None) is expected.to_pandas_dtype()
    return False


def _type_check(column: str, expected: pa.DataType, found: str | None) -> Check:
    if found is None:
        return Check("expect_column_values_to_be_of_type", column, CRITICAL, True, None, f"{column}: {expected}")
    return Check(
        "expect_column_values_to_be_of_type",
        column,
        CRITICAL,
        False,
        None,
        f"expect_column_values_to_be_of_type({column}): expected {expected}, found {found}",
    )


def schema_checks_frame(frame: pd.DataFrame) -> list[Check]:
    """Per-column type checks of a pandas frame against `SEARCH_LOG_SCHEMA` (present columns only)."""
    out = []
    for field in lk.SEARCH_LOG_SCHEMA:
        if field.name in frame.columns:
            series = frame[field.name]
            if isinstance(series, pd.DataFrame):  # duplicated column name
                out.append(_type_check(field.name, field.type, "a duplicated column"))
                continue
            ok = _dtype_matches(series, field.type)
            out.append(_type_check(field.name, field.type, None if ok else str(series.dtype)))
    return out


def schema_checks_arrow(schema: pa.Schema) -> list[Check]:
    """Per-column type checks of a Parquet/Arrow schema against `SEARCH_LOG_SCHEMA`, exactly."""
    out = []
    for field in lk.SEARCH_LOG_SCHEMA:
        idx = schema.get_field_index(field.name)
        if idx >= 0:
            found = schema.field(idx).type
            out.append(
                _type_check(field.name, field.type, None if found.equals(field.type) else _arrow_type_name(found))
            )
    return out


# ---------------------------------------------------------------------------------------------
# text


def _is_arrow_string(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow"


def _invalid_text_mask(series: pd.Series) -> pd.Series:
    if _is_arrow_string(series):
        arr = pa.chunked_array([series.array]) if not hasattr(series.array, "_pa_array") else series.array._pa_array
        hits = pc.match_substring_regex(arr, _CONTROL)
        return pd.Series(hits.fill_null(False).to_numpy(zero_copy_only=False), index=series.index)
    values = series.astype(object)
    rx = re.compile(_CONTROL_OR_SURROGATE)
    return values.map(lambda v: isinstance(v, str) and rx.search(v) is not None).astype(bool)


def _show(value: Any, limit: int = 40) -> str:
    if not isinstance(value, str):
        return str(value)
    text = value
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def text_checks(frame: pd.DataFrame, typed_ok: set[str]) -> tuple[list[Check], pd.DataFrame]:
    """Invalid-text checks; returns them and a frame GX can fingerprint (surrogates -> U+FFFD)."""
    checks: list[Check] = []
    gx_frame = frame
    n = len(frame)
    for column in frame.columns:
        series = frame[column]
        if isinstance(series, pd.DataFrame) or not (
            isinstance(series.dtype, pd.StringDtype) or pd.api.types.is_object_dtype(series.dtype)
        ):
            continue
        arrow = _is_arrow_string(series)
        if column not in TEXT_COLUMNS and arrow:
            continue  # valid UTF-8 by construction; control characters are only checked in free text
        if column in TEXT_COLUMNS and column not in typed_ok:
            continue
        mask = (
            _invalid_text_mask(series)
            if column in TEXT_COLUMNS
            else series.astype(object)
            .map(lambda v: isinstance(v, str) and _SURROGATE_RE.search(v) is not None)
            .astype(bool)
        )
        bad = int(mask.sum())
        if column in TEXT_COLUMNS or bad:
            if bad:
                sample = ", ".join(_show(v) for v in series[mask].head(3))
                msg = (
                    f"expect_column_values_to_be_valid_text({column}): {bad} of {n} rows failed"
                    f" (control characters or lone surrogates), e.g. {sample}"
                )
            else:
                msg = f"{column}: no control characters or lone surrogates"
            checks.append(Check("expect_column_values_to_be_valid_text", column, CRITICAL, bad == 0, bad, msg))
        if not arrow and bad:
            if gx_frame is frame:
                gx_frame = frame.copy()
            gx_frame[column] = series.astype(object).map(
                lambda v: _SURROGATE_RE.sub("\ufffd", v) if isinstance(v, str) else v
            )
    return checks, gx_frame


# ---------------------------------------------------------------------------------------------
# GX


_gx_ready = False


def _quiet_gx() -> None:
    global _gx_ready
    if _gx_ready:
        return
    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context", "posthog"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"great_expectations(\..*)?")
    _gx_ready = True


def _context(docs_dir: Path | None = None):
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    _quiet_gx()
    # GX fingerprints a pandas batch (md5 of every value, ~2 s per million rows) when it is under
    # HASH_THRESHOLD bytes; nothing here uses that fingerprint (the partition's sha256 is ours).
    from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0
    sites = {}
    if docs_dir is not None:
        sites["local_site"] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.absolute())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        data_docs_sites=sites,
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def _build_suite(gx, start: datetime, end: datetime, settings: ValidationSettings, typed_ok: set[str]):
    E = gx.expectations
    columns = [f.name for f in lk.SEARCH_LOG_SCHEMA]
    earliest = start - timedelta(hours=settings.allowed_lateness_hours)
    exps: list[Any] = [
        E.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=True),
        E.ExpectTableRowCountToBeBetween(min_value=settings.min_rows, max_value=None),
    ]
    for column in NOT_NULL_COLUMNS:
        if column in typed_ok:
            exps.append(E.ExpectColumnValuesToNotBeNull(column=column))
    wanted = {
        "clicked": lambda: E.ExpectColumnValuesToBeInSet(column="clicked", value_set=[0, 1]),
        "position": lambda: E.ExpectColumnValuesToBeBetween(
            column="position", min_value=1, max_value=settings.max_position
        ),
        "event_ts": lambda: E.ExpectColumnValuesToBeBetween(column="event_ts", min_value=earliest, max_value=end),
        "ingested_at": lambda: E.ExpectColumnValuesToBeBetween(
            column="ingested_at", min_value=start, max_value=end, strict_max=True
        ),
        "event_id": lambda: E.ExpectColumnValuesToBeUnique(column="event_id"),
        "query": lambda: E.ExpectColumnValueLengthsToBeBetween(
            column="query", min_value=1, max_value=settings.max_query_chars
        ),
        "title": lambda: E.ExpectColumnValueLengthsToBeBetween(
            column="title", min_value=0, max_value=settings.max_title_chars
        ),
    }
    for column, make in wanted.items():
        if column in typed_ok:
            exps.append(make())
    suite = gx.ExpectationSuite(name=SUITE_NAME)
    for exp in exps:
        exp.severity = CRITICAL
        exp.meta = {"severity": CRITICAL}
        suite.add_expectation(exp)
    return suite


def _for_gx(frame: pd.DataFrame, typed_ok: set[str]) -> pd.DataFrame:
    """The frame GX sees: 32-bit and nullable integers as int64 (float64 when nulls are present).

    GX's pandas `column_values.between` is vectorised only for int64/float64 columns and maps a
    Python function over every value otherwise (8 s per million rows for an int32 column).
    """
    out = frame
    for column in ("position", "clicked"):
        if column in typed_ok and frame[column].dtype != "int64":
            series = frame[column]
            cast = series.astype("float64") if series.isna().any() else series.astype("int64")
            if out is frame:
                out = frame.copy(deep=False)
            out[column] = cast
    return out


@dataclass
class _GxRun:
    context: Any
    result: Any  # ExpectationSuiteValidationResult


def _run_gx(frame: pd.DataFrame, suite_factory, docs_dir: Path | None) -> _GxRun:
    import great_expectations as gx

    context = _context(docs_dir)
    suite = context.suites.add(suite_factory(gx))
    source = context.data_sources.add_pandas("lake")
    asset = source.add_dataframe_asset("search_logs_hour")
    batch = asset.add_batch_definition_whole_dataframe("hour")
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="hour", data=batch, suite=suite))
    result = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
    )
    return _GxRun(context, result)


def _gx_check(res: Any, rows: int) -> Check:
    config = res.expectation_config
    rule = config.type
    kwargs = config.kwargs
    column = kwargs.get("column")
    severity = str(getattr(config, "severity", None) or (config.meta or {}).get("severity") or CRITICAL)
    severity = severity.split(".")[-1].lower()
    name = f"{rule}({column})" if column else rule
    result = res.result or {}
    exc = res.exception_info or {}
    if exc.get("raised_exception"):
        message = f"{name}: could not be evaluated: {exc.get('exception_message')}"
        return Check(rule, column, severity, False, None, message)
    unexpected = result.get("unexpected_count")
    if rule == "expect_table_row_count_to_be_between":
        observed = result.get("observed_value")
        message = f"{name}: {observed} rows, expected at least {kwargs.get('min_value')}"
    elif rule == "expect_table_columns_to_match_set":
        details = result.get("details", {}).get("mismatched", {})
        parts = []
        if details.get("missing"):
            parts.append(f"missing {sorted(details['missing'])}")
        if details.get("unexpected"):
            parts.append(f"unexpected {sorted(details['unexpected'])}")
        message = f"{name}: " + ("; ".join(parts) if parts else "exact column set")
    elif unexpected is not None:
        message = f"{name}: {unexpected} of {rows} rows failed"
        bounds = _bounds(rule, kwargs)
        if bounds:
            message += f" ({bounds})"
        sample = result.get("partial_unexpected_list") or []
        if unexpected and sample and rule != "expect_column_values_to_not_be_null":
            message += ", e.g. " + ", ".join(_show(v) for v in sample[:3])
    else:
        message = f"{name}: observed {result.get('observed_value')}"
    return Check(rule, column, severity, bool(res.success), unexpected, message)


def _bounds(rule: str, kwargs: dict[str, Any]) -> str:
    if rule == "expect_column_values_to_be_in_set":
        return f"allowed {list(kwargs.get('value_set', []))}"
    if rule in ("expect_column_values_to_be_between", "expect_column_value_lengths_to_be_between"):
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        what = "length" if "lengths" in rule else "value"
        fmt = lambda v: v.isoformat() if isinstance(v, datetime) else str(v)  # noqa: E731
        hi_op = "<" if kwargs.get("strict_max") else "<="
        return f"{what} in [{fmt(lo)}, {fmt(hi)}]" if hi_op == "<=" else f"{fmt(lo)} <= {what} < {fmt(hi)}"
    if rule == "expect_column_values_to_be_unique":
        return "duplicated values, every copy counted"
    return ""


# ---------------------------------------------------------------------------------------------
# statistics and drift


def statistics_of(frame: pd.DataFrame, typed_ok: set[str] | None = None) -> dict[str, Any]:
    """rows, clicks, ctr, category mix (shares) of a frame; what the schema allows."""
    typed_ok = set(frame.columns) if typed_ok is None else typed_ok
    rows = int(len(frame))
    stats: dict[str, Any] = {"rows": rows, "clicks": None, "ctr": None, "category_mix": None}
    if "clicked" in typed_ok and "clicked" in frame.columns:
        clicked = pd.to_numeric(frame["clicked"], errors="coerce")
        clicks = int(clicked.clip(0, 1).fillna(0).sum())
        stats["clicks"] = clicks
        stats["ctr"] = clicks / rows if rows else None
    if "category" in typed_ok and "category" in frame.columns and rows:
        shares = frame["category"].astype(object).fillna("<null>").value_counts(normalize=True)
        stats["category_mix"] = {str(k): round(float(v), 6) for k, v in sorted(shares.items())}
    return stats


def _tvd(p: dict[str, float], q: dict[str, float]) -> float:
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys)


def _grade(value: float, warning: float, critical: float) -> str | None:
    if value > critical:
        return CRITICAL
    if value > warning:
        return WARNING
    return None


def drift_checks(stats: dict[str, Any], history: Sequence[dict[str, Any]], settings: ValidationSettings) -> list[Check]:
    """Volume, CTR and category mix against earlier validated hours' statistics."""
    history = [h for h in history if h and h.get("rows")]
    if len(history) < settings.drift_min_history:
        note = f"skipped: {len(history)} earlier validated hour(s), need {settings.drift_min_history}"
        return [Check(rule, None, WARNING, True, None, f"{rule}: {note}") for rule in DRIFT_RULES]
    out = []
    # volume: ratio to the reference median, symmetric (x or 1/x)
    ref_rows = statistics.median(h["rows"] for h in history)
    rows = stats["rows"]
    ratio = (rows / ref_rows) if rows else math.inf
    factor = max(ratio, 1 / ratio) if ratio not in (0, math.inf) else math.inf
    grade = _grade(factor, settings.volume_ratio_warning, settings.volume_ratio_critical)
    limit = settings.volume_ratio_critical if grade == CRITICAL else settings.volume_ratio_warning
    out.append(
        Check(
            "drift_row_count",
            None,
            grade or WARNING,
            grade is None,
            None,
            f"drift_row_count: {rows} rows vs reference median {ref_rows:g} over {len(history)} hours"
            f" (x{ratio:.2f}; {grade + ' limit' if grade else 'warning limit'} x{limit:g} either way)",
        )
    )
    # click-through rate: absolute change vs the reference median
    ctrs = [h["ctr"] for h in history if h.get("ctr") is not None]
    if stats.get("ctr") is None or not ctrs:
        out.append(
            Check("drift_ctr", "clicked", WARNING, True, None, "drift_ctr: skipped: no click-through rate to compare")
        )
    else:
        ref_ctr = statistics.median(ctrs)
        change = abs(stats["ctr"] - ref_ctr)
        grade = _grade(change, settings.ctr_change_warning, settings.ctr_change_critical)
        limit = settings.ctr_change_critical if grade == CRITICAL else settings.ctr_change_warning
        out.append(
            Check(
                "drift_ctr",
                "clicked",
                grade or WARNING,
                grade is None,
                None,
                f"drift_ctr(clicked): ctr {stats['ctr']:.4f} vs reference median {ref_ctr:.4f}"
                f" (change {change:.4f}; {grade or 'warning'} limit {limit:g})",
            )
        )
    # category mix: total variation distance to the pooled reference mix
    mixes = [(h["rows"], h["category_mix"]) for h in history if h.get("category_mix")]
    if not stats.get("category_mix") or not mixes:
        out.append(
            Check(
                "drift_category_mix",
                "category",
                WARNING,
                True,
                None,
                "drift_category_mix: skipped: no category mix to compare",
            )
        )
    else:
        total = sum(n for n, _ in mixes)
        ref: dict[str, float] = {}
        for n, mix in mixes:
            for k, v in mix.items():
                ref[k] = ref.get(k, 0.0) + v * n / total
        tvd = _tvd(stats["category_mix"], ref)
        grade = _grade(tvd, settings.category_shift_warning, settings.category_shift_critical)
        limit = settings.category_shift_critical if grade == CRITICAL else settings.category_shift_warning
        out.append(
            Check(
                "drift_category_mix",
                "category",
                grade or WARNING,
                grade is None,
                None,
                f"drift_category_mix(category): total variation distance {tvd:.3f} from the reference mix"
                f" ({grade or 'warning'} limit {limit:g})",
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# the pure core


@dataclass
class _Outcome:
    checks: list[Check]
    stats: dict[str, Any]
    gx: _GxRun | None


def _validate(
    frame: pd.DataFrame,
    start: datetime,
    end: datetime,
    settings: ValidationSettings,
    history: Sequence[dict],
    type_checks: list[Check] | None = None,
    docs_dir: Path | None = None,
) -> _Outcome:
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    types = schema_checks_frame(frame) if type_checks is None else type_checks
    typed_ok = {c.column for c in types if c.success and c.column in frame.columns}
    text, gx_frame = text_checks(frame, typed_ok)
    gx_frame = _for_gx(gx_frame, typed_ok)
    run = _run_gx(gx_frame, lambda gx: _build_suite(gx, start, end, settings, typed_ok), docs_dir)
    gx_checks = [_gx_check(r, len(frame)) for r in run.result.results]
    stats = statistics_of(frame, typed_ok)
    checks = gx_checks[:1] + types + gx_checks[1:] + text + drift_checks(stats, history, settings)
    return _Outcome(checks, stats, run)


def validate_frame(
    frame: pd.DataFrame,
    start: datetime,
    end: datetime,
    settings: ValidationSettings,
    history: Sequence[dict] = (),
) -> tuple[list[Check], dict]:
    """Run every check on one hour's rows; returns (checks, statistics). `history`: earlier hours' statistics."""
    out = _validate(frame, start, end, settings, history)
    return out.checks, out.stats


# ---------------------------------------------------------------------------------------------
# the I/O edge


_INT_TYPES = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
}


def read_frame(path: Path) -> tuple[pa.Schema, pd.DataFrame]:
    """The partition's Arrow schema and a pandas frame (integers as nullable dtypes, so a null stays a null)."""
    table = pq.read_table(path)
    return table.schema, table.to_pandas(types_mapper=_INT_TYPES.get)


def _history(lake: Path, start: datetime, settings: ValidationSettings) -> list[dict[str, Any]]:
    out = []
    for part in lk.validated_partitions(lake, start, settings.drift_window_hours):
        try:
            record = lk.read_json(part.path / lk.VALIDATION_FILE)  # type: ignore[operator]
        except (OSError, ValueError):
            continue
        if record.get("statistics"):
            out.append(record["statistics"])
    return out


def _gx_summary(result: Any) -> dict[str, Any]:
    stats = dict(result.statistics)
    failed = [
        {
            "expectation": r.expectation_config.type,
            "column": r.expectation_config.kwargs.get("column"),
            "unexpected_count": (r.result or {}).get("unexpected_count"),
        }
        for r in result.results
        if not r.success
    ]
    return {"success": bool(result.success), "statistics": stats, "failed": failed, "suite": SUITE_NAME}


def validate_hour(lake: Path, start: datetime, settings: ValidationSettings) -> ValidationReport:
    """Validate the live partition of the hour at `start`: write `_validation.json` or quarantine it."""
    start = lk.parse_hour(start)
    end = start + lk.HOUR
    part = lk.partition(lake, start)
    hour = f"{start:%Y-%m-%dT%H:00Z}"
    if part.status == "missing":
        raise ValidationError(f"hour {hour} has no partition in {lake / 'search_logs'}: extract it first")
    if part.status == "quarantined":
        raise ValidationError(
            f"hour {hour} has no live partition: it was quarantined to {part.path}; re-extract it to validate again"
        )
    live = part.path
    assert live is not None and part.manifest is not None
    manifest = part.manifest
    data_file = live / lk.DATA_FILE
    sha = lk.sha256_file(data_file)
    if sha != manifest.get("sha256"):
        raise lk.LakeError(f"{data_file} does not match the sha256 in its manifest: the file changed after extraction")
    schema, frame = read_frame(data_file)
    history = _history(lake, start, settings)
    with tempfile.TemporaryDirectory(prefix=".gx-docs-", dir=live) as tmp:
        docs_tmp = Path(tmp) / "data_docs"
        out = _validate(frame, start, end, settings, history, schema_checks_arrow(schema), docs_tmp)
        critical = [c for c in out.checks if not c.success and c.severity == CRITICAL]
        record = {
            "status": "validated" if not critical else "quarantined",
            "interval_start": start.isoformat(),
            "interval_end": end.isoformat(),
            "sha256": sha,
            "rows": len(frame),
            "statistics": out.stats,
            "warnings": [c.as_dict() for c in out.checks if not c.success and c.severity == WARNING],
            "failures": [c.as_dict() for c in critical],
            "checks": [c.as_dict() for c in out.checks],
            "gx": _gx_summary(out.gx.result) if out.gx else None,
            "validated_at": datetime.now(UTC).isoformat(),
        }
        if not critical:
            lk.atomic_write_json(live / lk.VALIDATION_FILE, record)
            return ValidationReport(start, "validated", len(frame), tuple(out.checks), live, None)
        # quarantine: full GX result and GX's own data docs written into the folder, then moved whole
        stale = live / lk.VALIDATION_FILE
        if stale.exists():  # a record for other bytes: keep it, under another name
            stale.rename(live / f"_validation.superseded.{datetime.now(UTC):%Y%m%dT%H%M%S%f}.json")
        gx_json = out.gx.result.to_json_dict() if out.gx else {}
        lk.atomic_write_json(
            live / "gx_result.json", {"gx": gx_json, "checks": record["checks"], "statistics": out.stats}
        )
        docs_index = _build_docs(out.gx, docs_tmp)
        if docs_index is not None:
            docs_tmp.rename(live / "data_docs")
    target = lk.quarantine(lake, start, record)
    index = target / "data_docs" / "index.html"
    return ValidationReport(
        start, "quarantined", len(frame), tuple(out.checks), target, index if index.is_file() else None
    )


def _build_docs(run: _GxRun | None, docs_dir: Path) -> Path | None:
    """GX's own data docs (a filesystem site) for the validation result held by the run's context."""
    if run is None:
        return None
    try:
        run.context.build_data_docs(site_names=["local_site"])
    except Exception as exc:  # docs are a convenience; the JSON result is the record
        logging.getLogger(__name__).warning("GX data docs could not be built: %s", exc)
        return None
    index = docs_dir / "index.html"
    return index if index.is_file() else None
