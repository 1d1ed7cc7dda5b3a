"""The validation suite: good hours pass, every kind of bad hour is quarantined whole with a message
naming the rule, later hours keep flowing, drift warns or quarantines, nothing is deleted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from incremental.config import ValidationSettings
from incremental.data import files, table
from incremental.data import lake as lk
from incremental.data.extract import write_rows
from incremental.hours import HOUR, Hour
from incremental.validation.frame import validate_frame
from incremental.validation.report import CRITICAL, WARNING, ValidationError
from incremental.validation.validate import to_frame, validate_hour

START = Hour(2026, 1, 1, 5, tzinfo=UTC)
ROWS = 80
CATEGORIES = ["shoes", "electronics", "bags", "home"]


def good_frame(
    start: datetime = START, rows: int = ROWS, ctr: float = 0.1, seed: int = 0, categories=CATEGORIES
) -> pd.DataFrame:
    """A valid hour, typed exactly like a partition read back by `to_frame`."""
    rng = np.random.default_rng(seed)
    ingested = [start + timedelta(seconds=int(s)) for s in rng.integers(0, 3600, rows)]
    clicks = np.zeros(rows, dtype=np.int32)
    clicks[: round(rows * ctr)] = 1
    rng.shuffle(clicks)
    return pd.DataFrame(
        {
            "event_id": [f"{start:%Y%m%d%H}-{i}" for i in range(rows)],
            "event_ts": pd.to_datetime([t - timedelta(seconds=30) for t in ingested], utc=True).as_unit("us"),
            "ingested_at": pd.to_datetime(ingested, utc=True).as_unit("us"),
            "session_id": [f"s{i // 5}" for i in range(rows)],
            "user_id": [f"u{i % 7}" for i in range(rows)],
            "query": [["red shoes", "usb cable", "laptop bag"][i % 3] for i in range(rows)],
            "product_id": [f"p{i % 20}" for i in range(rows)],
            "position": pd.array((np.arange(rows) % 10 + 1).astype(np.int32), dtype="Int32"),
            "clicked": pd.array(clicks, dtype="Int32"),
            "title": [f"Product {i % 20} title" for i in range(rows)],
            "brand": ["acme"] * rows,
            "category": [categories[i % len(categories)] for i in range(rows)],
            "price": np.round(rng.uniform(1, 100, rows), 2),
        }
    )


def _as_contract(table: pa.Table) -> pa.Table:
    """Cast each column to the contract's type where only the physical flavour differs
    (large_string -> string, int64 -> int32); a column broken on purpose keeps its type."""
    for i, name in enumerate(table.column_names):
        if name not in lk.SEARCH_LOG_SCHEMA.names:
            continue
        found, want = table.schema.field(i).type, lk.SEARCH_LOG_SCHEMA.field(name).type
        same_family = (
            (pa.types.is_large_string(found) and pa.types.is_string(want))
            or (pa.types.is_integer(found) and pa.types.is_integer(want))
            or (pa.types.is_null(found))
        )
        if same_family and not found.equals(want):
            table = table.set_column(i, pa.field(name, want), table.column(i).cast(want))
    return table


def write_hour(lake: Path, frame: pd.DataFrame | pa.Table, start: datetime = START) -> Path:
    """Put an hour's rows into the lake like the extractor does (the table, or staged when they cannot be its rows)."""
    rows = frame if isinstance(frame, pa.Table) else _as_contract(pa.Table.from_pandas(frame, preserve_index=False))
    write_rows(lake, start, rows)
    return lk.partition_dir(lake, start)


def hour_rows(lake: Path, start: datetime = START) -> pa.Table:
    """What the lake holds of the hour, as extracted: the table's rows (every status), else the staged file."""
    staged = lk.staged_file(lake, start)
    if staged is not None:
        return lk.read_parquet(staged)
    return table.read_rows(table.open_table(lake), start, [table.EXTRACTED, table.VALIDATED, table.QUARANTINED])


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def settings() -> ValidationSettings:
    return ValidationSettings()


def failed(checks, rule: str, column: str | None = None):
    return [c for c in checks if not c.success and c.rule == rule and (column is None or c.column == column)]


# ------------------------------------------------------------------------------------------------


def test_good_hour_is_validated(lake: Path, settings: ValidationSettings) -> None:
    folder = write_hour(lake, good_frame())
    report = validate_hour(lake, START, settings)
    assert report.status == "validated", report.summary()
    assert report.rows == ROWS and not report.failures and report.data_docs is None
    assert report.path == folder
    record = json.loads((folder / files.VALIDATION_FILE).read_text())
    assert record["status"] == "validated"
    assert record["sha256"] == lk.partition(lake, START).manifest["sha256"]
    assert record["version"] == lk.partition(lake, START).version == 1  # the extraction, then the validation
    assert record["statistics"]["rows"] == ROWS
    assert record["statistics"]["ctr"] == pytest.approx(0.1)
    assert sum(record["statistics"]["category_mix"].values()) == pytest.approx(1.0)
    assert record["gx"]["success"] is True
    assert lk.partition(lake, START).status == "validated"
    # drift needs history: skipped, and said so
    assert "skipped" in report.summary() and "drift_row_count" in report.summary()


BAD_HOURS = {
    # name: (mutation of the good frame, rule, column, unexpected rows)
    "null query": (
        lambda f: f.assign(query=f["query"].where(f.index != 3, None)),
        "expect_column_values_to_not_be_null",
        "query",
        1,
    ),
    "clicked null": (
        lambda f: f.assign(clicked=f["clicked"].where(f.index != 4, pd.NA)),
        "expect_column_values_to_not_be_null",
        "clicked",
        1,
    ),
    "clicked 2 or -1": (
        lambda f: f.assign(clicked=f["clicked"].where(f.index != 4, 2).where(f.index > 1, -1)),
        "expect_column_values_to_be_in_set",
        "clicked",
        3,
    ),
    "position 0 or negative": (
        lambda f: f.assign(position=f["position"].where(f.index != 0, 0).where(f.index != 1, -5)),
        "expect_column_values_to_be_between",
        "position",
        2,
    ),
    "event_ts in the future or beyond lateness": (
        lambda f: f.assign(
            event_ts=f["event_ts"]
            .where(f.index != 5, pd.Timestamp(START + timedelta(hours=3)))
            .where(f.index != 6, pd.Timestamp(START - timedelta(hours=49)))
        ),
        "expect_column_values_to_be_between",
        "event_ts",
        2,
    ),
    "duplicate event_id": (
        lambda f: f.assign(event_id=f["event_id"].where(f.index != 1, f["event_id"][0])),
        "expect_column_values_to_be_unique",
        "event_id",
        2,
    ),
    "empty query": (
        lambda f: f.assign(query=f["query"].where(f.index != 2, "")),
        "expect_column_value_lengths_to_be_between",
        "query",
        1,
    ),
    "100 kB title": (
        lambda f: f.assign(title=f["title"].where(f.index != 2, "x" * 100_000)),
        "expect_column_value_lengths_to_be_between",
        "title",
        1,
    ),
    "control characters": (
        lambda f: f.assign(
            title=f["title"].where(f.index != 7, "bad\x00title"), query=f["query"].where(f.index != 8, "q\x1b[31m")
        ),
        "expect_column_values_to_be_valid_text",
        "title",
        1,
    ),
    "wrong type": (
        lambda f: f.assign(position=f["position"].astype(str)),
        "expect_column_values_to_be_of_type",
        "position",
        None,
    ),
    "missing column": (lambda f: f.drop(columns=["title"]), "expect_table_columns_to_match_set", None, None),
    "empty hour": (lambda f: f.iloc[0:0], "expect_table_row_count_to_be_between", None, None),
}


@pytest.mark.parametrize("case", list(BAD_HOURS))
def test_bad_hour_is_quarantined_and_the_next_hour_flows(lake: Path, settings: ValidationSettings, case: str) -> None:
    mutate, rule, column, unexpected = BAD_HOURS[case]
    write_hour(lake, mutate(good_frame()))
    extracted = hour_rows(lake)
    report = validate_hour(lake, START, settings)

    assert report.status == "quarantined", report.summary()
    hits = failed(report.failures, rule, column)
    assert hits, report.summary()
    if unexpected is not None:
        assert hits[0].unexpected == unexpected
    assert hits[0].severity == CRITICAL
    summary = report.summary()
    assert summary.startswith("hour 2026-01-01T05:00Z quarantined (")
    assert hits[0].name in summary
    if unexpected is not None:
        assert f"{unexpected} of {len(mutate(good_frame()))} rows failed" in summary
    # quarantined whole, nothing deleted: the table's rows of the hour (each naming the rules it
    # broke), or the staged file of rows the table cannot hold; the GX result and GX's data docs beside
    assert report.path.parent == lk.quarantine_root(lake, START)
    if (report.path / lk.QUARANTINED_ROWS_FILE).is_file():
        assert lk.read_parquet(report.path / lk.QUARANTINED_ROWS_FILE).equals(extracted)
        assert lk.staged_file(lake, START) is None
    else:
        held = table.read_rows(table.open_table(lake), START, [table.QUARANTINED], columns=table.TABLE_SCHEMA.names)
        assert held.select(lk.SEARCH_LOG_SCHEMA.names).equals(extracted)
        assert all(rule in reason for reason in held[table.REASON_COLUMN].to_pylist())
    gx_result = json.loads((report.path / "gx_result.json").read_text())
    assert gx_result["gx"]["results"] and any(c["rule"] == rule and not c["success"] for c in gx_result["checks"])
    assert report.data_docs is not None and report.data_docs.is_file()
    assert json.loads((report.path / "quarantine.json").read_text())["status"] == "quarantined"
    assert lk.partition(lake, START).status == "quarantined"
    # the hour is gone from the live lake: validating it again (a backfill reprocessing it) gives the
    # recorded verdict, where the hour is, and moves nothing
    again = validate_hour(lake, START, settings)
    assert (again.status, again.path, again.data_docs) == ("quarantined", report.path, report.data_docs)
    assert failed(again.failures, rule, column) and str(report.path) in again.summary()
    assert sorted(lk.quarantine_root(lake, START).iterdir()) == [report.path]

    # the next good hour still validates
    nxt = START + HOUR
    write_hour(lake, good_frame(nxt, seed=1), nxt)
    assert validate_hour(lake, nxt, settings).status == "validated"


def test_quarantine_keeps_html_data_docs_naming_the_expectation(lake: Path, settings: ValidationSettings) -> None:
    frame = good_frame()
    frame.loc[[3, 9, 11], "query"] = None
    write_hour(lake, frame)
    report = validate_hour(lake, START, settings)
    assert report.data_docs is not None
    pages = list(report.data_docs.parent.rglob("*.html"))
    assert len(pages) >= 2  # the index and the validation result page
    text = "\n".join(p.read_text() for p in pages)
    assert "query" in text and "null" in text.lower()
    assert "expect_column_values_to_not_be_null(query): 3 of 80 rows failed" in report.summary()


def test_empty_hour_keeps_its_manifest(lake: Path, settings: ValidationSettings) -> None:
    write_hour(lake, good_frame().iloc[0:0])
    report = validate_hour(lake, START, settings)
    assert report.status == "quarantined" and report.rows == 0
    assert lk.read_parquet(report.path / lk.QUARANTINED_ROWS_FILE).num_rows == 0
    assert "0 rows, expected at least 50" in report.summary()


def test_lone_surrogates_fail_at_frame_level(settings: ValidationSettings) -> None:
    frame = good_frame()
    frame["query"] = frame["query"].astype(object)
    frame["title"] = frame["title"].astype(object)
    frame.loc[4, "query"] = "bad \ud800 query"
    frame.loc[5, "title"] = "\udfff"
    checks, stats = validate_frame(frame, START, START + HOUR, settings)
    assert failed(checks, "expect_column_values_to_be_valid_text", "query")[0].unexpected == 1
    assert failed(checks, "expect_column_values_to_be_valid_text", "title")[0].unexpected == 1
    assert stats["rows"] == ROWS
    # nothing else is blamed for it (2 bad rows of 80 are over max_bad_row_fraction: the hour, not the rows)
    assert {c.rule for c in checks if not c.success} == {
        "expect_column_values_to_be_valid_text", "expect_bad_row_fraction_to_be_at_most"}


def test_tab_and_newline_are_valid_text(settings: ValidationSettings) -> None:
    frame = good_frame()
    frame.loc[1, "title"] = "two\tcolumns\nand lines"
    checks, _ = validate_frame(frame, START, START + HOUR, settings)
    assert all(c.success for c in checks), [c.message for c in checks if not c.success]


def test_sql_metacharacters_pass_unchanged(lake: Path, settings: ValidationSettings) -> None:
    frame = good_frame()
    nasty = "'; DROP TABLE search_logs; -- \" OR 1=1 /* % _ \\ */"
    frame.loc[0, "query"] = nasty
    frame.loc[1, "title"] = "Robert'); DROP TABLE students;--"
    write_hour(lake, frame)
    report = validate_hour(lake, START, settings)
    assert report.status == "validated", report.summary()
    back = to_frame(lk.read_partition(lk.partition(lake, START)))
    assert back.loc[0, "query"] == nasty and back.loc[1, "title"] == "Robert'); DROP TABLE students;--"


def test_revalidating_is_idempotent(lake: Path, settings: ValidationSettings) -> None:
    folder = write_hour(lake, good_frame())
    first = validate_hour(lake, START, settings)
    version = lk.partition(lake, START).version
    record1 = files.read_json(folder / files.VALIDATION_FILE)
    second = validate_hour(lake, START, settings)
    record2 = files.read_json(folder / files.VALIDATION_FILE)
    assert first.status == second.status == "validated"
    assert first.checks == second.checks
    record1.pop("validated_at"), record2.pop("validated_at")
    assert record1 == record2
    assert lk.partition(lake, START).version == version == 1  # nothing pending: nothing committed
    assert sorted(p.name for p in folder.iterdir()) == [files.VALIDATION_FILE]


def test_a_refused_commit_leaves_no_record(lake: Path, settings: ValidationSettings,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The hour's record is written before its commit (pending): a commit refused takes it back."""
    folder = write_hour(lake, good_frame())

    def refused(*args, **kwargs):
        raise table.CommitConflict("another writer changed it first")

    monkeypatch.setattr(table, "overwrite_hour", refused)
    with pytest.raises(table.CommitConflict):
        validate_hour(lake, START, settings)
    assert list(folder.glob("*")) == [] and lk.partition(lake, START).status == "extracted"


def test_missing_hour_is_a_clear_error(lake: Path, settings: ValidationSettings) -> None:
    with pytest.raises(ValidationError, match="no partition"):
        validate_hour(lake, START, settings)


def test_wrong_timestamp_unit_in_parquet_is_a_schema_fault(lake: Path, settings: ValidationSettings) -> None:
    table = pa.Table.from_pandas(good_frame(), preserve_index=False).cast(lk.SEARCH_LOG_SCHEMA)
    table = table.set_column(
        1, pa.field("event_ts", pa.timestamp("ns", tz="UTC")), table["event_ts"].cast(pa.timestamp("ns", tz="UTC"))
    )
    write_hour(lake, table)
    report = validate_hour(lake, START, settings)
    assert report.status == "quarantined"
    (hit,) = failed(report.failures, "expect_column_values_to_be_of_type", "event_ts")
    assert "expected timestamp[us, tz=UTC]" in hit.message


# ------------------------------------------------------------------------------------------------
# drift


def _history(lake: Path, settings: ValidationSettings, hours: int = 3) -> datetime:
    for k in range(hours, 0, -1):
        start = START - HOUR * k
        write_hour(lake, good_frame(start, seed=k), start)
        assert validate_hour(lake, start, settings).status == "validated"
    return START


@pytest.mark.parametrize(
    ("frame", "rule", "severity", "status"),
    [
        (lambda: good_frame(ctr=0.2), "drift_ctr", WARNING, "validated"),
        (lambda: good_frame(ctr=0.6), "drift_ctr", CRITICAL, "quarantined"),
        (lambda: good_frame(rows=ROWS * 5), "drift_row_count", WARNING, "validated"),
        (
            lambda: good_frame(categories=["shoes", "shoes", "shoes", "bags"]),
            "drift_category_mix",
            WARNING,
            "validated",
        ),
        # all in a category never seen: a mix shift is drift for the drift response, not bad data
        (lambda: good_frame(categories=["garden"]), "drift_category_mix", WARNING, "validated"),
    ],
    ids=["ctr-warning", "ctr-critical", "volume-warning", "category-warning", "category-all-new"],
)
def test_drift(lake: Path, settings: ValidationSettings, frame, rule: str, severity: str, status: str) -> None:
    _history(lake, settings)
    write_hour(lake, frame())
    report = validate_hour(lake, START, settings)
    assert report.status == status, report.summary()
    bad = [c for c in report.checks if not c.success]
    assert [(c.rule, c.severity) for c in bad] == [(rule, severity)], report.summary()
    assert f"{severity}: {rule}" in report.summary()
    if status == "validated":
        record = files.read_json(lk.partition_dir(lake, START) / files.VALIDATION_FILE)
        assert [w["rule"] for w in record["warnings"]] == [rule]


def test_volume_drift_critical_and_pure_core(settings: ValidationSettings) -> None:
    history = [
        {"rows": 5_000, "ctr": 0.1, "category_mix": {"shoes": 0.25, "electronics": 0.25, "bags": 0.25, "home": 0.25}}
    ] * 4
    checks, _ = validate_frame(good_frame(rows=ROWS), START, START + HOUR, settings, history)
    (hit,) = [c for c in checks if not c.success]
    assert (hit.rule, hit.severity) == ("drift_row_count", CRITICAL)
    assert "reference median 5000" in hit.message
    # too little history: skipped, not failed
    checks, _ = validate_frame(good_frame(rows=ROWS), START, START + HOUR, settings, history[:2])
    assert all(c.success for c in checks)
    assert any("skipped" in c.message for c in checks if c.rule == "drift_row_count")


def test_an_overwrite_waits_for_no_other_hour_but_refuses_a_change_of_its_own(lake: Path) -> None:
    """delta-rs judges a conflict on the whole table: a commit of another hour between the read and
    the overwrite must not refuse it (two hours validated at once, found by the PostgreSQL fault
    test); a commit of the same hour must."""
    later = START + HOUR
    write_hour(lake, good_frame())
    write_hour(lake, good_frame(), later)
    read = table.open_table(lake)
    rows, others = (table.read_rows(read, h, [table.EXTRACTED]) for h in (START, later))
    table.overwrite_hour(lake, later, table.with_status(others, later, table.QUARANTINED), "quarantine", {},
                         keep_validated=False, read=table.open_table(lake))  # another hour's overwrite in between
    version = table.overwrite_hour(lake, START, table.with_status(rows, START, table.VALIDATED), "validate", {},
                                   keep_validated=False, read=read)
    assert version == table.open_table(lake).version() == 3
    assert table.read_rows(table.open_table(lake), START, [table.VALIDATED]).num_rows == ROWS
    assert table.read_rows(table.open_table(lake), later, [table.QUARANTINED]).num_rows == ROWS  # untouched

    read = table.open_table(lake)  # the same hour changes between the read and the overwrite: refused
    table.overwrite_hour(lake, later, table.with_status(others, later, table.EXTRACTED), "readmit", {},
                         keep_validated=False, read=table.open_table(lake))
    with pytest.raises(table.CommitConflict, match="another writer changed it first"):
        table.overwrite_hour(lake, later, table.with_status(others, later, table.VALIDATED), "validate", {},
                             keep_validated=False, read=read)
