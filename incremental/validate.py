"""Validate one extracted hour: a Great Expectations (GX Core 1.x) suite plus hour-over-hour drift.

Pure core: `validate_frame(frame, start, end, settings, history)` -> (checks, statistics).
I/O edge: `validate_hour(lake, start, settings)` validates the hour's pending part (the first
extraction, or a delta of late or re-admitted rows) and then, by what failed:

* nothing: the part is validated (`_validation.json` lists the validated parts);
* only **row-level** rules, on at most `max_bad_row_fraction` of the part's rows: the failing
  *rows* move to `quarantine/.../rows/<part>-<sha12>/rows.parquet` with a `quarantine_reason`
  column naming every rule each row broke (plus the GX result and data docs), the other rows stay
  live (`part-N.valid.parquet`) and are validated: the hour goes on;
* more bad rows than that, or any **table-level** rule: the whole hour (or, when earlier parts of
  the hour are validated already, the whole delta part) moves to quarantine with the full GX
  result (`gx_result.json`) and GX's own data docs (`data_docs/`).

Live rows plus quarantined rows always equal the warehouse rows of the hour (`lake.row_counts`).
`readmit_hour` puts quarantined rows back (after a fix: a reviewed settings change, a repaired
source), as a new part that is validated like any other; the manifest records it.

Every check has a rule name (the GX expectation type where GX evaluates it), a column, a severity
("critical" quarantines the hour, "rows" quarantines the failing rows, "warning" is recorded
only), and how many rows failed.

| rule | level | where |
| --- | --- | --- |
| expect_table_columns_to_match_set | table | GX |
| expect_column_values_to_be_of_type (per column) | table | Arrow schema (partition) or pandas dtypes (frame) |
| expect_table_row_count_to_be_between (min_rows) | table | GX |
| expect_column_values_to_be_unique (event_id; also across the hour's parts) | table | GX (+ here) |
| expect_compound_columns_to_be_unique (event_ts, session_id, product_id, position): replayed rows | table | GX (+ here) |
| expect_column_mean_to_be_between (clicked in [min_ctr, max_ctr]): zero-click, all-clicked hours | table | GX |
| expect_session_share_to_be_at_most (session_id): one session flooding the hour | table | here |
| drift_row_count, drift_ctr, drift_category_mix | table (warning or critical) | here, from history |
| expect_bad_row_fraction_to_be_at_most (max_bad_row_fraction) | table | here |
| expect_column_values_to_not_be_null (9 columns) | row | GX, `mostly` |
| expect_column_values_to_be_in_set (clicked in {0, 1}) | row | GX, `mostly` |
| expect_column_values_to_be_between (position; event_ts; ingested_at) | row | GX, `mostly` |
| expect_column_pair_values_a_to_be_greater_than_b (ingested_at >= event_ts) | row | GX, `mostly` |
| expect_column_value_lengths_to_be_between (query [1, max]; title [0, max]) | row | GX, `mostly` |
| expect_column_values_to_not_match_regex (query: whitespace only) | row | GX, `mostly` |
| expect_column_values_to_be_valid_text (query, title; any non-Arrow text column) | row | here |

Row-level rules use GX's `mostly` = 1 - `max_bad_row_fraction`; which rows failed is computed here
with the same definitions (vectorised), and the counts are cross-checked against GX's: a
disagreement quarantines the hour (`validation_consistency`), never a silent drop. Table-level
statistics checks (row count, click-through bounds, session share, drift) apply to a first
extraction, and to a delta only when it has at least `min_rows` rows.

Drift compares with the latest `drift_window_hours` validated hours found within
`drift_lookback_hours` (a gap does not switch it off); with no history at all it is skipped and the
summary says so, while the absolute click-through bounds always apply.

**Mojibake and control characters.** Text with C0/C1 control characters other than tab and
newline (e.g. the Home Depot title `'... (6 LED\x89\xdb\xaas per Light)'`, cp1252/Mac Roman
mojibake), or lone surrogates, fails `expect_column_values_to_be_valid_text`: the *row* is
quarantined, never repaired. A repair (ftfy and the like) is a guess that would silently change
what the model trains on and break the lake == warehouse lineage; one row in a thousand is cheap
to lose, and `incremental readmit` brings such rows back after the source is fixed or the rule
is changed by review. Invalid text is checked here, not in GX: GX fingerprints the whole frame
through pandas' Arrow-backed strings, which cannot hold a lone surrogate, so such values are
replaced by U+FFFD in the copy GX sees (the data on disk is never touched).

**Data docs carry no data values.** GX's HTML data docs would render the failing values
(`partial_unexpected_list`) unescaped, so a query like `<script>...</script>` became stored XSS
wherever the docs are served: GX is asked for no value samples (`partial_unexpected_count: 0`),
the samples are in the text summary and `gx_result.json` only (as Python reprs), and the Airflow
plugin serves the docs with a sandboxing Content-Security-Policy.

Columns that are missing or of the wrong type get their schema failure and no value checks (GX
would raise on them); the hour is quarantined cleanly with a message naming the column.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import statistics
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
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
ROWS = "rows"  # the failing rows are quarantined, the hour goes on
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
REPLAY_KEY = ["event_ts", "session_id", "product_id", "position"]  # one impression; a replay repeats it
PAIR_COLUMN = "ingested_at>=event_ts"
WHITESPACE_REGEX = r"^\s+$"


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
    rows: int  # rows of the part(s) this validation looked at
    checks: tuple[Check, ...]
    path: Path  # the live folder (validated) or the quarantine folder
    data_docs: Path | None  # index.html of the GX data docs site (quarantined hour or rows)
    quarantined_rows: int = 0  # rows moved to quarantine while the hour was validated
    rows_path: Path | None = None  # where those rows went
    part: str | None = None  # the part validated now (None: nothing was pending)
    live_rows: int | None = None  # rows of the hour's validated view afterwards
    hour_validated: bool = False  # quarantined: only this part went; the hour keeps its validated parts

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.success and c.severity == CRITICAL)

    @property
    def warnings(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.success and c.severity == WARNING)

    @property
    def row_failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.success and c.severity == ROWS)

    @property
    def ok(self) -> bool:
        return self.status == "validated"

    def summary(self) -> str:
        hour = f"{self.start.astimezone(UTC):%Y-%m-%dT%H:00Z}"
        failures, warns = self.failures, self.warnings
        what = f"part {self.part}" if self.part and self.part != lk.DATA_FILE else None
        if self.status == "quarantined" and self.hour_validated:
            head = f"hour {hour}: {what or self.part} quarantined ({len(failures)} critical"
            head += f", {len(warns)} warning" + ("s" if len(warns) != 1 else "") if warns else ""
            head += f"): {self.rows} rows moved to {self.path}; the hour stays validated with its earlier parts"
        elif self.status == "quarantined":
            head = f"hour {hour} quarantined ({len(failures)} critical"
            head += f", {len(warns)} warning" + ("s" if len(warns) != 1 else "") if warns else ""
            head += f"): {self.rows} rows" + (f" of {what}" if what else "") + f" moved to {self.path}"
        else:
            head = f"hour {hour} validated: {self.rows} rows" + (f" ({what})" if what else "")
            if self.quarantined_rows:
                head += (f", {self.quarantined_rows} bad row{'s' if self.quarantined_rows != 1 else ''}"
                         f" quarantined to {self.rows_path}")
            head += f", {len(warns)} warning" + ("s" if len(warns) != 1 else "") if warns else ""
            if self.part is None:
                head += " (already validated; nothing new)"
        lines = [head]
        lines += [f"  critical: {c.message}" for c in failures]
        lines += [f"  rows: {c.message}" for c in self.row_failures]
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


def _show_bad_text(value: Any) -> str:
    """The part of a text around its first invalid character (where the problem is, not just the start)."""
    if not isinstance(value, str):
        return _show(value)
    hit = re.search(_CONTROL_OR_SURROGATE, value)
    if hit is None or hit.start() < 30:
        return _show(value)
    return "'..." + _show(value[hit.start() - 20:], 40)[1:]


def text_checks(
    frame: pd.DataFrame, typed_ok: set[str], masks: dict[tuple[str, str], np.ndarray] | None = None
) -> tuple[list[Check], pd.DataFrame]:
    """Invalid-text checks; returns them and a frame GX can fingerprint (surrogates -> U+FFFD).

    `masks`, when given, receives the failing rows of each text column checked.
    """
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
        if masks is not None and bad:
            masks[("expect_column_values_to_be_valid_text", column)] = mask.to_numpy(dtype=bool)
        if column in TEXT_COLUMNS or bad:
            if bad:
                sample = ", ".join(_show_bad_text(v) for v in series[mask].head(3))
                msg = (
                    f"expect_column_values_to_be_valid_text({column}): {bad} of {n} rows failed"
                    f" (control characters or lone surrogates), e.g. {sample}"
                )
            else:
                msg = f"{column}: no control characters or lone surrogates"
            checks.append(Check("expect_column_values_to_be_valid_text", column, ROWS, bad == 0, bad, msg))
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


def _build_suite(
    gx, start: datetime, end: datetime, settings: ValidationSettings, typed_ok: set[str], table_stats: bool = True
):
    """The GX suite. Row-level expectations carry `mostly` = 1 - max_bad_row_fraction and meta level "row"."""
    E = gx.expectations
    columns = [f.name for f in lk.SEARCH_LOG_SCHEMA]
    earliest = start - timedelta(hours=settings.allowed_lateness_hours)
    mostly = max(0.0, 1.0 - settings.max_bad_row_fraction)
    table: list[Any] = [E.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=True)]
    if table_stats:
        table.append(E.ExpectTableRowCountToBeBetween(min_value=settings.min_rows, max_value=None))
    rows: list[Any] = []
    for column in NOT_NULL_COLUMNS:
        if column in typed_ok:
            rows.append(E.ExpectColumnValuesToNotBeNull(column=column, mostly=mostly))
    wanted = {
        "clicked": lambda: E.ExpectColumnValuesToBeInSet(column="clicked", value_set=[0, 1], mostly=mostly),
        "position": lambda: E.ExpectColumnValuesToBeBetween(
            column="position", min_value=1, max_value=settings.max_position, mostly=mostly
        ),
        "event_ts": lambda: E.ExpectColumnValuesToBeBetween(
            column="event_ts", min_value=earliest, max_value=end, mostly=mostly
        ),
        "ingested_at": lambda: E.ExpectColumnValuesToBeBetween(
            column="ingested_at", min_value=start, max_value=end, strict_max=True, mostly=mostly
        ),
        "query": lambda: E.ExpectColumnValueLengthsToBeBetween(
            column="query", min_value=1, max_value=settings.max_query_chars, mostly=mostly
        ),
        "title": lambda: E.ExpectColumnValueLengthsToBeBetween(
            column="title", min_value=0, max_value=settings.max_title_chars, mostly=mostly
        ),
    }
    for column, make in wanted.items():
        if column in typed_ok:
            rows.append(make())
    if "query" in typed_ok:
        rows.append(E.ExpectColumnValuesToNotMatchRegex(column="query", regex=WHITESPACE_REGEX, mostly=mostly))
    if {"ingested_at", "event_ts"} <= typed_ok:
        rows.append(E.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="ingested_at", column_B="event_ts", or_equal=True, mostly=mostly, ignore_row_if="either_value_is_missing"
        ))
    if "event_id" in typed_ok:
        table.append(E.ExpectColumnValuesToBeUnique(column="event_id"))
    if set(REPLAY_KEY) <= typed_ok:
        table.append(E.ExpectCompoundColumnsToBeUnique(column_list=REPLAY_KEY, ignore_row_if="any_value_is_missing"))
    if table_stats and "clicked" in typed_ok:
        table.append(E.ExpectColumnMeanToBeBetween(column="clicked", min_value=settings.min_ctr, max_value=settings.max_ctr))
    suite = gx.ExpectationSuite(name=SUITE_NAME)
    for exp in table:
        exp.severity = CRITICAL
        exp.meta = {"severity": CRITICAL, "level": "table"}
        suite.add_expectation(exp)
    for exp in rows:
        exp.severity = CRITICAL
        exp.meta = {"severity": ROWS, "level": "row", "max_bad_row_fraction": settings.max_bad_row_fraction}
        suite.add_expectation(exp)
    return suite


def row_masks(
    frame: pd.DataFrame, start: datetime, end: datetime, settings: ValidationSettings, typed_ok: set[str]
) -> dict[tuple[str, str], np.ndarray]:
    """Which rows fail each row-level rule (the same definitions as the GX suite's row expectations)."""
    earliest = pd.Timestamp(start - timedelta(hours=settings.allowed_lateness_hours))
    out: dict[tuple[str, str], np.ndarray] = {}

    def arr(series: pd.Series) -> np.ndarray:
        return series.fillna(False).to_numpy(dtype=bool)

    for column in NOT_NULL_COLUMNS:
        if column in typed_ok:
            out[("expect_column_values_to_not_be_null", column)] = frame[column].isna().to_numpy(dtype=bool)
    if "clicked" in typed_ok:
        c = frame["clicked"]
        out[("expect_column_values_to_be_in_set", "clicked")] = arr(c.notna() & ~c.isin([0, 1]))
    if "position" in typed_ok:
        p = frame["position"]
        out[("expect_column_values_to_be_between", "position")] = arr(p.notna() & ((p < 1) | (p > settings.max_position)))
    if "event_ts" in typed_ok:
        t = frame["event_ts"]
        out[("expect_column_values_to_be_between", "event_ts")] = arr(t.notna() & ((t < earliest) | (t > pd.Timestamp(end))))
    if "ingested_at" in typed_ok:
        t = frame["ingested_at"]
        out[("expect_column_values_to_be_between", "ingested_at")] = arr(
            t.notna() & ((t < pd.Timestamp(start)) | (t >= pd.Timestamp(end)))
        )
    for column, low, high in (("query", 1, settings.max_query_chars), ("title", 0, settings.max_title_chars)):
        if column in typed_ok:
            n = frame[column].str.len()
            out[("expect_column_value_lengths_to_be_between", column)] = arr(n.notna() & ((n < low) | (n > high)))
    if "query" in typed_ok:  # the same pandas call GX makes, so both use the same regex engine
        q = frame["query"]
        out[("expect_column_values_to_not_match_regex", "query")] = arr(
            q.notna() & q.str.contains(WHITESPACE_REGEX, regex=True))
    if {"ingested_at", "event_ts"} <= typed_ok:
        a, b = frame["ingested_at"], frame["event_ts"]
        out[("expect_column_pair_values_a_to_be_greater_than_b", PAIR_COLUMN)] = arr(a.notna() & b.notna() & (b > a))
    return out


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
        # no value samples: GX's data docs would render them as raw HTML (stored XSS); ours are in the summary
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": 0},
    )
    return _GxRun(context, result)


def _gx_check(res: Any, rows: int, samples: dict[tuple[str, str | None], str] | None = None) -> Check:
    config = res.expectation_config
    rule = config.type
    kwargs = config.kwargs
    column = kwargs.get("column")
    if rule == "expect_column_pair_values_a_to_be_greater_than_b":
        column = f"{kwargs.get('column_A')}>={kwargs.get('column_B')}" if kwargs.get("or_equal") else (
            f"{kwargs.get('column_A')}>{kwargs.get('column_B')}")
    elif rule == "expect_compound_columns_to_be_unique":
        column = ",".join(kwargs.get("column_list") or [])
    meta = config.meta or {}
    severity = str(meta.get("severity") or getattr(config, "severity", None) or CRITICAL)
    severity = severity.split(".")[-1].lower()
    name = f"{rule}({column})" if column else rule
    result = res.result or {}
    exc = res.exception_info or {}
    if exc.get("raised_exception"):
        message = f"{name}: could not be evaluated: {exc.get('exception_message')}"
        return Check(rule, column, CRITICAL, False, None, message)
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
    elif rule == "expect_column_mean_to_be_between":
        observed = result.get("observed_value")
        shown = f"{observed:.4f}" if isinstance(observed, int | float) else str(observed)
        message = (f"{name}: click-through rate {shown}, expected in [{kwargs.get('min_value')}, "
                   f"{kwargs.get('max_value')}] (absolute bounds: a zero-click or all-clicked hour is broken logging)")
    elif unexpected is not None:
        message = f"{name}: {unexpected} of {rows} rows failed"
        bounds = _bounds(rule, kwargs)
        if bounds:
            message += f" ({bounds})"
        sample = (samples or {}).get((rule, column))
        if unexpected and sample:
            message += f", e.g. {sample}"
    else:
        message = f"{name}: observed {result.get('observed_value')}"
    success = bool(res.success) if severity != ROWS else not unexpected
    return Check(rule, column, severity, success, unexpected, message)


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
    if rule == "expect_compound_columns_to_be_unique":
        return "the same impression more than once, every copy counted"
    if rule == "expect_column_values_to_not_match_regex":
        return f"must not match {kwargs.get('regex')!r}: whitespace only"
    if rule == "expect_column_pair_values_a_to_be_greater_than_b":
        return "an event cannot happen after it was ingested"
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
# checks computed here


def session_share_check(frame: pd.DataFrame, typed_ok: set[str], settings: ValidationSettings) -> Check:
    """One session holding a large share of the hour's rows: a bot or a logging loop, not traffic."""
    rule, limit = "expect_session_share_to_be_at_most", settings.max_session_share
    if "session_id" not in typed_ok or len(frame) < max(settings.min_rows, 1):
        return Check(rule, "session_id", CRITICAL, True, None, f"{rule}(session_id): skipped: too few rows")
    counts = frame["session_id"].value_counts(dropna=True)
    if counts.empty:
        return Check(rule, "session_id", CRITICAL, True, None, f"{rule}(session_id): no sessions")
    top, share = int(counts.iloc[0]), float(counts.iloc[0]) / len(frame)
    ok = share <= limit
    return Check(rule, "session_id", CRITICAL, ok, 0 if ok else top,
                 f"{rule}(session_id): session {_show(counts.index[0])} holds {top} of {len(frame)} rows "
                 f"({share:.1%}; limit {limit:.0%})")


def cross_part_checks(frame: pd.DataFrame, earlier: pd.DataFrame, typed_ok: set[str]) -> list[Check]:
    """A delta must not repeat what the hour's validated parts hold (event ids, impressions)."""
    out = []
    if "event_id" in typed_ok and "event_id" in earlier.columns:
        hit = frame["event_id"].isin(set(earlier["event_id"].dropna())).to_numpy(dtype=bool)
        n = int(hit.sum())
        sample = ", ".join(_show(v) for v in frame["event_id"][hit].head(3))
        out.append(Check("expect_column_values_to_be_unique_across_parts", "event_id", CRITICAL, n == 0, n,
                         f"expect_column_values_to_be_unique_across_parts(event_id): {n} of {len(frame)} rows reuse "
                         f"an event_id of the hour's validated parts" + (f", e.g. {sample}" if n else "")))
    if set(REPLAY_KEY) <= typed_ok and set(REPLAY_KEY) <= set(earlier.columns):
        hit = pd.MultiIndex.from_frame(frame[REPLAY_KEY]).isin(pd.MultiIndex.from_frame(earlier[REPLAY_KEY]))
        n = int(np.asarray(hit).sum())
        out.append(Check("expect_compound_columns_to_be_unique_across_parts", ",".join(REPLAY_KEY), CRITICAL, n == 0, n,
                         f"expect_compound_columns_to_be_unique_across_parts({','.join(REPLAY_KEY)}): {n} of "
                         f"{len(frame)} rows repeat an impression of the hour's validated parts"))
    return out


def _samples(frame: pd.DataFrame, masks: dict[tuple[str, str], np.ndarray]) -> dict[tuple[str, str], str]:
    out = {}
    for (rule, column), mask in masks.items():
        if not mask.any():
            continue
        rows = frame[mask].head(3)
        if column == PAIR_COLUMN:
            out[(rule, column)] = ", ".join(
                f"event_ts {e} > ingested_at {i}" for e, i in zip(rows["event_ts"], rows["ingested_at"], strict=True))
        elif column in frame.columns and rule != "expect_column_values_to_not_be_null":
            out[(rule, column)] = ", ".join(_show(v) for v in rows[column])
    return out


# ---------------------------------------------------------------------------------------------
# the pure core


@dataclass
class _Outcome:
    checks: list[Check]
    stats: dict[str, Any]
    gx: _GxRun | None
    bad: np.ndarray  # per row: failed at least one row-level rule
    reasons: np.ndarray  # per row: the rules it failed, ";"-separated ("" when none)


def _validate(
    frame: pd.DataFrame,
    start: datetime,
    end: datetime,
    settings: ValidationSettings,
    history: Sequence[dict],
    type_checks: list[Check] | None = None,
    docs_dir: Path | None = None,
    *,
    table_stats: bool = True,
    earlier: pd.DataFrame | None = None,
) -> _Outcome:
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    n = len(frame)
    types = schema_checks_frame(frame) if type_checks is None else type_checks
    typed_ok = {c.column for c in types if c.success and c.column in frame.columns}
    masks = row_masks(frame, start, end, settings, typed_ok)
    text, gx_frame = text_checks(frame, typed_ok, masks)
    gx_frame = _for_gx(gx_frame, typed_ok)
    samples = _samples(frame, masks)
    run = _run_gx(gx_frame, lambda gx: _build_suite(gx, start, end, settings, typed_ok, table_stats), docs_dir)
    gx_checks = [_gx_check(r, n, samples) for r in run.result.results]
    extra: list[Check] = []
    for c in gx_checks:  # GX and the row masks must agree on every row-level rule
        key = (c.rule, c.column)
        if c.severity == ROWS and key in masks and c.unexpected is not None and c.unexpected != int(masks[key].sum()):
            extra.append(Check("validation_consistency", c.column, CRITICAL, False, None,
                               f"validation_consistency: {c.name}: GX counts {c.unexpected} failing rows, the row "
                               f"mask {int(masks[key].sum())}: the hour is quarantined rather than guess"))
    if table_stats:
        extra.append(session_share_check(frame, typed_ok, settings))
    if earlier is not None and len(earlier):
        extra += cross_part_checks(frame, earlier, typed_ok)
    stats = statistics_of(frame, typed_ok)
    if table_stats:
        drift = drift_checks(stats, history, settings)
    else:
        note = f"skipped: a delta of {n} rows (fewer than min_rows {settings.min_rows}) has no hour statistics"
        drift = [Check(rule, None, WARNING, True, None, f"{rule}: {note}") for rule in DRIFT_RULES]

    bad = np.zeros(n, dtype=bool)
    reasons = np.full(n, "", dtype=object)
    for (rule, column), mask in masks.items():
        if mask.any():
            bad |= mask
            name = f"{rule}({column})"
            reasons[mask] = np.where(reasons[mask] == "", name, reasons[mask] + ";" + name)
    n_bad = int(bad.sum())
    limit = settings.max_bad_row_fraction
    # a delta is judged with the hour's validated rows: a few late rows, one of them bad, are not "10% bad"
    of = n + (len(earlier) if earlier is not None else 0)
    over = n_bad > limit * of
    fraction = Check(
        "expect_bad_row_fraction_to_be_at_most", None, CRITICAL, not over, n_bad,
        f"expect_bad_row_fraction_to_be_at_most: {n_bad} of {of} rows ({(n_bad / of if of else 0):.2%}) failed "
        f"row-level rules (limit {limit:.2%})" + (": too many to quarantine row by row, the hour is quarantined"
                                                 if over else ""),
    )
    checks = gx_checks[:1] + types + gx_checks[1:] + text + extra + [fraction] + drift
    if over:  # too many bad rows: the row rules that failed quarantine the hour
        checks = [replace(c, severity=CRITICAL) if c.severity == ROWS and not c.success else c for c in checks]
    return _Outcome(checks, stats, run, bad, reasons)


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
    """Statistics of the latest `drift_window_hours` validated hours within `drift_lookback_hours`, oldest first."""
    out = []
    for k in range(1, settings.drift_lookback_hours + 1):
        if len(out) >= settings.drift_window_hours:
            break
        part = lk.partition(lake, start - lk.HOUR * k)
        if part.status != "validated":
            continue
        try:
            record = lk.read_json(part.path / lk.VALIDATION_FILE)  # type: ignore[operator]
        except (OSError, ValueError):
            continue
        if record.get("statistics"):
            out.append(record["statistics"])
    return out[::-1]


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


def _stored_report(start: datetime, live: Path) -> ValidationReport:
    """Nothing pending: the hour's last validation, as recorded (validating again changes nothing)."""
    record = lk.read_json(live / lk.VALIDATION_FILE)
    checks = tuple(Check(**c) for c in record.get("checks", []))
    return ValidationReport(start, "validated", int(record.get("rows", 0)), checks, live, None,
                            part=None, live_rows=record.get("live_rows"))


def validate_hour(lake: Path, start: datetime, settings: ValidationSettings) -> ValidationReport:
    """Validate the hour's pending part (first extraction or delta): validate, quarantine its bad rows, or quarantine it."""
    start = lk.parse_hour(start)
    live = lk.partition_dir(lake, start)
    hour = f"{start:%Y-%m-%dT%H:00Z}"
    if not (live / lk.MANIFEST_FILE).is_file():
        part = lk.partition(lake, start)
        if part.status == "quarantined":
            raise ValidationError(
                f"hour {hour} has no live partition: it was quarantined to {part.path}; after a fix, re-admit it "
                f"with `incremental readmit --start {start:%Y-%m-%dT%H:00} --reason TEXT`"
            )
        raise ValidationError(f"hour {hour} has no partition in {lake / 'search_logs'}: extract it first")
    good = set(lk.validated_files(live))
    pending = [p for p in lk.parts_of(lk.read_json(live / lk.MANIFEST_FILE)) if p["file"] not in good]
    if not pending:
        return _stored_report(start, live)
    report = None
    for part in pending:
        report = _validate_part(lake, start, settings, part)
        if not (live / lk.MANIFEST_FILE).is_file():
            break  # the whole hour went to quarantine
    assert report is not None
    return report


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame | None:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else None


def _validate_part(lake: Path, start: datetime, settings: ValidationSettings, part: dict[str, Any]) -> ValidationReport:
    end = start + lk.HOUR
    live = lk.partition_dir(lake, start)
    data_file = live / part["file"]
    sha = lk.sha256_file(data_file)
    if sha != part.get("sha256"):
        raise lk.LakeError(f"{data_file} does not match the sha256 in its manifest: the file changed after extraction")
    schema, frame = read_frame(data_file)
    manifest = lk.read_json(live / lk.MANIFEST_FILE)
    good = set(lk.validated_files(live))
    earlier_parts = [p for p in lk.parts_of(manifest) if p["file"] in good]
    earlier = _concat([read_frame(live / p["file"])[1] for p in earlier_parts])
    table_stats = not earlier_parts or len(frame) >= settings.min_rows
    history = _history(lake, start, settings)
    staging = Path(tempfile.mkdtemp(prefix=f"{start:%Y%m%d%H}-", dir=lk.scratch_dir(lake)))
    try:
        docs_tmp = staging / "data_docs"
        out = _validate(frame, start, end, settings, history, schema_checks_arrow(schema), docs_tmp,
                        table_stats=table_stats, earlier=earlier)
        critical = [c for c in out.checks if not c.success and c.severity == CRITICAL]
        n_bad = int(out.bad.sum())
        if not critical and earlier_parts and len(frame) and n_bad == len(frame):
            # nothing of this delta is good: it goes to quarantine as a part (the hour's identity stays)
            whole = Check("expect_part_to_have_valid_rows", None, CRITICAL, False, n_bad,
                          f"expect_part_to_have_valid_rows: all {n_bad} rows of {part['file']} failed row-level "
                          f"rules: the part is quarantined whole, the hour keeps its validated parts")
            out.checks.append(whole)
            critical = [whole]
        record: dict[str, Any] = {
            "status": "validated" if not critical else "quarantined",
            "interval_start": start.isoformat(),
            "interval_end": end.isoformat(),
            "part": part["file"],
            "part_sha256": sha,
            "rows": len(frame),
            "bad_rows": n_bad,
            "max_bad_row_fraction": settings.max_bad_row_fraction,
            "statistics": out.stats,
            "warnings": [c.as_dict() for c in out.checks if not c.success and c.severity == WARNING],
            "row_failures": [c.as_dict() for c in out.checks if not c.success and c.severity == ROWS],
            "failures": [c.as_dict() for c in critical],
            "checks": [c.as_dict() for c in out.checks],
            "gx": _gx_summary(out.gx.result) if out.gx else None,
            "validated_at": datetime.now(UTC).isoformat(),
        }
        if critical or n_bad:  # the full GX result and GX's data docs go with the data
            gx_json = out.gx.result.to_json_dict() if out.gx else {}
            lk.atomic_write_json(staging / "gx_result.json",
                                 {"gx": gx_json, "checks": record["checks"], "statistics": out.stats})
            if _build_docs(out.gx, docs_tmp) is None:
                shutil.rmtree(docs_tmp, ignore_errors=True)
        if critical:
            if earlier_parts:  # the hour keeps its validated parts; this delta goes to quarantine whole
                target = lk.quarantine_part(lake, start, part, record, staging)
            else:
                stale = live / lk.VALIDATION_FILE
                if stale.exists():  # a record for other bytes: keep it, under another name
                    stale.rename(live / f"_validation.superseded.{datetime.now(UTC):%Y%m%dT%H%M%S%f}.json")
                target = lk.quarantine(lake, start, record, staging)
            index = target / "data_docs" / "index.html"
            return ValidationReport(start, "quarantined", len(frame), tuple(out.checks), target,
                                    index if index.is_file() else None, part=part["file"],
                                    hour_validated=bool(earlier_parts))
        entry, rows_path, docs = part, None, None
        clean = frame
        if n_bad:
            table = pq.read_table(data_file)
            mask = pa.array(out.bad)
            bad_rows = table.filter(mask).append_column(
                lk.REASON_COLUMN, pa.array(out.reasons[out.bad].tolist(), pa.string()))
            rules: dict[str, int] = {}
            for reason in out.reasons[out.bad]:
                for name in reason.split(";"):
                    rules[name] = rules.get(name, 0) + 1
            report = {"status": "rows_quarantined", "interval_start": start.isoformat(), "part": part["file"],
                      "extracted_sha256": sha, "rows": n_bad, "of_rows": len(frame), "rules": rules,
                      "max_bad_row_fraction": settings.max_bad_row_fraction,
                      "row_failures": record["row_failures"], "at": record["validated_at"]}
            entry = lk.quarantine_rows(lake, start, part, table.filter(pc.invert(mask)), bad_rows, report, staging)
            rows_path = lake / entry["row_quarantine"]
            index = rows_path / "data_docs" / "index.html"
            docs = index if index.is_file() else None
            clean = frame[~out.bad]
        validated = [*earlier_parts, entry]
        view = _concat([earlier, clean]) if earlier is not None else clean
        typed = {c.column for c in out.checks if c.rule == "expect_column_values_to_be_of_type" and c.success}
        record.update({
            "parts": [p["file"] for p in validated],
            "sha256": lk.identity(validated),
            "live_rows": int(sum(int(p["rows"]) for p in validated)),
            "part_statistics": out.stats,
            "statistics": statistics_of(view, typed) if view is not None else out.stats,
        })
        lk.atomic_write_json(live / lk.VALIDATION_FILE, record)
        return ValidationReport(start, "validated", len(frame), tuple(out.checks), live, docs,
                                quarantined_rows=n_bad, rows_path=rows_path, part=part["file"],
                                live_rows=record["live_rows"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def readmit_hour(lake: Path, start: datetime, settings: ValidationSettings, reason: str) -> ValidationReport:
    """Put an hour's quarantined rows (row sets and quarantined hours/parts) back, and validate them again.

    For after a fix: a reviewed change of the rules (incremental.yaml), or a source repaired. The
    rows become a new part of the hour (kind "readmitted"); the manifest's events record when, why
    and from where; the quarantine folders are marked re-admitted (`readmitted.json`), never
    deleted. Rows that still fail are quarantined again, like any part's.
    """
    start = lk.parse_hour(start)
    hour = f"{start:%Y-%m-%dT%H:00Z}"
    if not reason or len(reason.strip()) < 10:
        raise ValidationError("readmit needs --reason: what was fixed (at least 10 characters; it is recorded)")
    live = lk.partition_dir(lake, start)
    if (live / lk.MANIFEST_FILE).is_file():
        good = set(lk.validated_files(live))
        if any(p["file"] not in good for p in lk.parts_of(lk.read_json(live / lk.MANIFEST_FILE))):
            validate_hour(lake, start, settings)  # a pending part first: readmission must not replace it
    sets, attempts = lk.row_sets(lake, start), lk.quarantine_attempts(lake, start)
    if not sets and not attempts:
        raise ValidationError(f"hour {hour} has nothing in quarantine to re-admit")
    tables = [pq.read_table(s / "rows.parquet").drop_columns([lk.REASON_COLUMN]) for s in sets]
    for attempt in attempts:
        tables += [pq.read_table(attempt / p["file"]) for p in lk.parts_of(lk.read_json(attempt / lk.MANIFEST_FILE))]
    table = pa.concat_tables(tables, promote_options="permissive")
    sources = [str(p.relative_to(lake)) for p in [*sets, *attempts]]
    manifest = lk.add_part(lake, start, table, kind="readmitted",
                           event={"event": "readmit", "reason": reason.strip(), "sources": sources})
    into = manifest["parts"][-1]["file"]
    for folder in [*sets, *attempts]:
        lk.mark_readmitted(folder, {"reason": reason.strip(), "into": f"{lk.hour_key(start)}/{into}",
                                    "at": lk.now_iso(), "rows": None})
    return validate_hour(lake, start, settings)


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
