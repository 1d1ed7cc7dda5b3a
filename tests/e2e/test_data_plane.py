"""The data plane end to end on real parts: simulator -> warehouse -> extraction -> GX validation.

Each fault kind is injected into one hour of a real warehouse (DuckDB, and the machine's
PostgreSQL) and must come out quarantined with a message naming its rule, while the next good
hour still validates; SQL metacharacters must come through as plain data.
"""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from incremental.config import Settings
from incremental.data import lake
from incremental.data.extract import extract_hour, warehouse_count
from incremental.data.warehouse import Warehouse
from incremental.hours import HOUR, Hour, hours
from incremental.sim.simulate import simulate
from incremental.validation.validate import validate_hour

T0 = Hour(2026, 4, 1, 0, tzinfo=UTC)
# fault -> the rule (and column) its quarantine message must name
EXPECTED_RULE = {
    "null_query": "expect_column_values_to_not_be_null(query)",
    "bad_label": "expect_column_values_to_be_in_set(clicked)",
    "bad_position": "expect_column_values_to_be_between(position)",
    "bad_event_ts": "expect_column_values_to_be_between(event_ts)",
    "duplicate_event_id": "expect_column_values_to_be_unique(event_id)",
    "empty_query": "expect_column_value_lengths_to_be_between(query)",
    "huge_title": "expect_column_value_lengths_to_be_between(title)",
    "invalid_text": "expect_column_values_to_be_valid_text(query)",
    "empty_hour": "expect_table_row_count_to_be_between",
}


def run_hours(warehouse: Warehouse, settings: Settings, faults: list[str | None], rate: int) -> list:
    """Simulate the hours one by one (a fault in some), then extract and validate each."""
    hours = [T0 + timedelta(hours=i) for i in range(len(faults))]
    for hour, fault in zip(hours, faults, strict=True):
        simulate(warehouse, hour, hour + HOUR, rate=rate, seed=5, faults=[fault] if fault else [])
    reports = []
    for hour in hours:
        manifest = extract_hour(warehouse, settings.lake, hour)
        assert manifest["rows"] == warehouse_count(warehouse, hour)
        reports.append(validate_hour(settings.lake, hour, settings.validation))
    return reports


@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
def test_every_fault_is_quarantined_and_the_next_hour_validates(
    backend: str, settings: Settings, request: pytest.FixtureRequest
) -> None:
    url = settings.warehouse_url if backend == "duckdb" else request.getfixturevalue("postgres_url")
    warehouse = Warehouse(url)
    faults: list[str | None] = [None, None, None]
    for fault in [*EXPECTED_RULE, "sql_metacharacters"]:
        faults += [fault, None]
    reports = run_hours(warehouse, settings, faults, rate=300)

    for i, (fault, report) in enumerate(zip(faults, reports, strict=True)):
        if fault is None or fault == "sql_metacharacters":
            assert report.status == "validated", f"hour {i} ({fault or 'good'}):\n{report.summary()}"
            continue
        assert report.status == "quarantined", f"hour {i} ({fault}) was not quarantined"
        summary = report.summary()
        assert EXPECTED_RULE[fault] in summary, summary
        assert lake.partition(settings.lake, report.start).status == "quarantined"
        assert (report.path / lake.QUARANTINE_FILE).is_file() and (report.path / "gx_result.json").is_file()
        assert report.data_docs is not None and report.data_docs.is_file()

    # SQL metacharacters: stored, extracted and validated as plain data
    meta_hour = reports[faults.index("sql_metacharacters")].start
    queries = lake.read_partition(lake.partition(settings.lake, meta_hour)).column("query").to_pylist()
    assert any("DROP TABLE" in q for q in queries)
    assert warehouse_count(warehouse, meta_hour) == len(queries)


def test_a_day_at_5000_per_hour_extracts_exactly_and_reproducibly(settings: Settings) -> None:
    """24 hours at 5,000 impressions/hour: each partition holds the warehouse's count; re-extraction is identical."""
    warehouse = Warehouse(settings.warehouse_url)
    simulate(warehouse, T0, T0 + timedelta(hours=24), rate=5000, seed=11, scenario="drift")
    total_in_partitions = 0
    for hour in hours(T0, T0 + timedelta(hours=24)):
        manifest = extract_hour(warehouse, settings.lake, hour)
        assert manifest["rows"] == warehouse_count(warehouse, hour)
        total_in_partitions += manifest["rows"]
        report = validate_hour(settings.lake, hour, settings.validation)
        assert report.status == "validated", report.summary()
    late = warehouse_count(warehouse, T0 + timedelta(hours=24))  # late arrivals beyond the day
    assert total_in_partitions > 0.95 * 24 * 5000 and total_in_partitions + late >= 0.99 * 24 * 5000
    first_sha = extract_hour(warehouse, settings.lake, T0 + timedelta(hours=7))
    again = extract_hour(warehouse, settings.lake, T0 + timedelta(hours=7))  # the same rows: the same sha256,
    assert again["sha256"] == first_sha["sha256"] and again["delta_rows"] == 0  # nothing committed
    assert again["version"] == lake.partition(settings.lake, T0 + timedelta(hours=7)).version
    assert lake.partition(settings.lake, T0 + timedelta(hours=7)).status == "validated"


def test_cli_names_the_failed_rule_and_exits_non_zero(settings: Settings, capsys: pytest.CaptureFixture) -> None:
    from incremental.cli import EXIT_QUARANTINED, main

    assert main(["warehouse", "init"]) == 0
    for h in range(4):
        hour = (T0 + timedelta(hours=h)).isoformat()
        end = (T0 + timedelta(hours=h + 1)).isoformat()
        fault = ["--fault", "null_query"] if h == 3 else []
        assert main(["simulate", "--start", hour, "--end", end, "--rate", "200", "--seed", "1", *fault]) == 0
    assert main(["extract", "--start", T0.isoformat(), "--end", (T0 + timedelta(hours=4)).isoformat()]) == 0
    capsys.readouterr()
    code = main(["validate", "--start", T0.isoformat(), "--end", (T0 + timedelta(hours=4)).isoformat()])
    out, err = capsys.readouterr()
    assert code == EXIT_QUARANTINED
    assert "expect_column_values_to_not_be_null(query)" in out and "quarantined" in err
    main(["partitions", "--start", T0.isoformat(), "--end", (T0 + timedelta(hours=5)).isoformat()])
    listing = capsys.readouterr().out
    assert listing.count("validated") == 3 and "quarantined" in listing and "missing" in listing
    # validating it again (a re-run, a backfill) gives its recorded verdict, exit 1 again, and says where it is
    assert main(["validate", "--start", (T0 + timedelta(hours=3)).isoformat()]) == EXIT_QUARANTINED
    out, err = capsys.readouterr()
    assert "expect_column_values_to_not_be_null(query)" in out and "quarantine" in err
