"""The checks computed here, in pandas: column types, text, which rows fail each row-level rule,
one session's share of the hour, and uniqueness across the hour's parts.

Row-level rules use the same definitions as the GX suite's row expectations (`incremental.validation.gx_suite`),
vectorised, so that the failing *rows* are known (GX only counts them); the counts are
cross-checked against GX's by `incremental.validation.frame`.

**Mojibake and control characters.** Text with C0/C1 control characters other than tab and
newline (e.g. the Home Depot title `'... (6 LED\x89\xdb\xaas per Light)'`, cp1252/Mac Roman
mojibake), or lone surrogates, fails `expect_column_values_to_be_valid_text`: the *row* is
quarantined, never repaired. A repair (ftfy and the like) is a guess that would silently change
what the model trains on and break the lake == warehouse lineage; one row in a thousand is cheap
to lose, and `incremental readmit` brings such rows back after the source is fixed or the rule
is changed by review. Invalid text is checked here, not in GX: GX fingerprints the whole frame
through pandas' Arrow-backed strings, which cannot hold a lone surrogate, so such values are
replaced by U+FFFD in the copy GX sees (the data on disk is never touched).

Columns that are missing or of the wrong type get their schema failure and no value checks (GX
would raise on them).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from incremental.config import ValidationSettings
from incremental.data import lake as lk
from incremental.validation.report import CRITICAL, ROWS, Check

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

REPLAY_KEY = ["event_ts", "session_id", "product_id", "position"]  # one impression; a replay repeats it
PAIR_COLUMN = "ingested_at>=event_ts"
WHITESPACE_REGEX = r"^\s+$"


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
# row-level rules: which rows fail


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


# ---------------------------------------------------------------------------------------------
# hour-level checks computed here, and value samples for the messages


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


def value_samples(frame: pd.DataFrame, masks: dict[tuple[str, str], np.ndarray]) -> dict[tuple[str, str | None], str]:
    out: dict[tuple[str, str | None], str] = {}
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
