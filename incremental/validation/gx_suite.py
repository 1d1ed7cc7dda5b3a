"""The Great Expectations (GX Core 1.x) side of validation: the suite, its run through a Checkpoint,
its result as checks, and GX's own data docs (built by the checkpoint's `UpdateDataDocsAction`).

Table-level expectations carry severity "critical"; row-level ones carry GX's `mostly` = 1 -
`max_bad_row_fraction` and meta severity "rows" (which rows failed is computed by
`incremental.validation.rows`, with the same definitions); the drift expectations
(`incremental.validation.hour_drift`) come in pairs, GX severity "warning" and "critical", `meta.rule`
naming the drift rule. One result format for every run (`RESULT_FORMAT`), through one Checkpoint.

**Data docs carry no data values.** GX's HTML data docs would render the failing values
(`partial_unexpected_list`) unescaped, so a query like `<script>...</script>` became stored XSS
wherever the docs are served: GX is asked for no value samples (`partial_unexpected_count: 0`),
the samples are in the text summary and `gx_result.json` only (as Python reprs), the category
column reaches GX as codes (its KL chart embeds values raw in a `<script>`: see `incremental.validation.hour_drift`),
and the Airflow plugin serves the docs with a sandboxing Content-Security-Policy.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import pandas as pd

from incremental.config import ValidationSettings
from incremental.data import lake as lk
from incremental.validation.report import CRITICAL, ROWS, Check
from incremental.validation.rows import NOT_NULL_COLUMNS, REPLAY_KEY, WHITESPACE_REGEX

SUITE_NAME = "search_logs_hour"
# one result format for every run: no value samples (GX's data docs would render them as raw HTML,
# stored XSS; ours are in the text summary and gx_result.json)
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}
DOCS_SITE = "local_site"

_gx_ready = False


def _quiet_gx() -> None:
    global _gx_ready
    if _gx_ready:
        return
    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context", "posthog"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"great_expectations(\..*)?")
    _gx_ready = True


def _context(docs_dir: Path | None = None) -> Any:  # an ephemeral GX data context
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
        sites[DOCS_SITE] = {
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


def build_suite(
    gx: Any, start: datetime, end: datetime, settings: ValidationSettings, typed_ok: set[str], table_stats: bool = True,
    drift: Sequence[Any] = (),
) -> Any:  # gx: the great_expectations module; returns a gx.ExpectationSuite
    """The GX suite. Row-level expectations carry `mostly` = 1 - max_bad_row_fraction and meta level "row";
    `drift`: the drift expectations (`hour_drift.drift_expectations`), with their own severity and meta."""
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
    for exp in drift:
        suite.add_expectation(exp)
    return suite


def for_gx(frame: pd.DataFrame, typed_ok: set[str]) -> pd.DataFrame:
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
class GxRun:
    context: Any
    result: Any  # ExpectationSuiteValidationResult
    docs: Path | None = None  # index.html of the site the checkpoint's UpdateDataDocsAction built


def run_gx(frame: pd.DataFrame, suite_factory: Any, docs_dir: Path | None) -> GxRun:  # suite_factory(gx) -> suite
    """Run the suite through a GX Checkpoint; with `docs_dir`, its UpdateDataDocsAction builds the local site.

    Docs are a convenience (the JSON result is the record): when the checkpoint fails, the hour is
    validated again by the validation definition alone, without docs, and a warning is logged.
    """
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction, ValidationAction

    context = _context(docs_dir)
    suite = context.suites.add(suite_factory(gx))
    asset = context.data_sources.add_pandas("lake").add_dataframe_asset("search_logs_hour")
    batch = asset.add_batch_definition_whole_dataframe("hour")
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="hour", data=batch, suite=suite))
    actions: list[ValidationAction] = [UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE])] if docs_dir is not None else []
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=SUITE_NAME, validation_definitions=[definition], actions=actions, result_format=RESULT_FORMAT))
    params = {"dataframe": frame}
    try:
        (result,) = checkpoint.run(batch_parameters=params).run_results.values()
    except Exception as exc:
        if not actions:
            raise
        logging.getLogger(__name__).warning("GX checkpoint failed (%s); validating without data docs", exc)
        return GxRun(context, definition.run(batch_parameters=params, result_format=RESULT_FORMAT))
    index = docs_dir / "index.html" if docs_dir is not None else None
    return GxRun(context, result, index if index is not None and index.is_file() else None)


def gx_check(res: Any, rows: int, samples: dict[tuple[str, str | None], str] | None = None) -> Check:
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


class FailedExpectation(TypedDict):
    expectation: str  # the GX expectation type
    rule: str  # the rule it checks (a drift rule has two bounds: two expectations)
    severity: str
    column: str | None
    unexpected_count: int | None


class GxSummary(TypedDict):
    """What a validation record keeps of a GX result."""

    success: bool
    statistics: dict[str, float]  # GX's own: evaluated, successful, unsuccessful expectations, percent
    failed: list[FailedExpectation]
    suite: str


def gx_summary(result: Any) -> GxSummary:
    """What the validation record keeps of a GX result: success, statistics, the failed expectations
    (with the rule each belongs to and its severity: a drift rule's warning bound fails GX's `success`
    while the hour validates)."""
    stats = dict(result.statistics)
    failed: list[FailedExpectation] = [
        {
            "expectation": r.expectation_config.type,
            "rule": (r.expectation_config.meta or {}).get("rule", r.expectation_config.type),
            "severity": (r.expectation_config.meta or {}).get("severity", CRITICAL),
            "column": r.expectation_config.kwargs.get("column"),
            "unexpected_count": (r.result or {}).get("unexpected_count"),
        }
        for r in result.results
        if not r.success
    ]
    return {"success": bool(result.success), "statistics": stats, "failed": failed, "suite": SUITE_NAME}
