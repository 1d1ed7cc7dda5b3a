"""Bad input, end to end on real parts: simulator -> warehouse (DuckDB; PostgreSQL for a few) ->
extraction -> GX validation -> lake and quarantine.

Every kind of bad input has its expected outcome, naming the rule: the failing *rows* go to
quarantine and the hour goes on (row-level rules, under `max_bad_row_fraction`), or the *hour*
goes (table-level rules, or too many bad rows). Whatever happens, nothing is lost: live rows plus
quarantined rows equal the warehouse rows of each hour. Also: late rows become a separately
validated append (validated rows are never changed), quarantined rows can be re-admitted after a
fix, a failed quarantine does not leave the hour stuck, and no data value reaches the HTML data
docs unescaped.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from incremental.config import Settings, load_settings
from incremental.data import lake, table
from incremental.data import quarantine as lake_quarantine
from incremental.data.extract import extract_hour, warehouse_count
from incremental.data.warehouse import Warehouse
from incremental.hours import HOUR, Hour, hours, iso_hour
from incremental.sim.simulate import simulate
from incremental.validation.report import ValidationReport
from incremental.validation.validate import readmit_hour, validate_hour

T0 = Hour(2026, 6, 1, 0, tzinfo=UTC)
RATE = 2000  # the simulator damages 10 rows per fault and hour: 0.5%, under max_bad_row_fraction (1%)
SEED = 7

# row-level: the rows go to quarantine, the hour is validated. fault -> the rule its rows must name
ROW_FAULTS = {
    "null_query": "expect_column_values_to_not_be_null(query)",
    "bad_label": "expect_column_values_to_be_in_set(clicked)",
    "bad_position": "expect_column_values_to_be_between(position)",
    "bad_event_ts": "expect_column_values_to_be_between(event_ts)",
    "empty_query": "expect_column_value_lengths_to_be_between(query)",
    "huge_title": "expect_column_value_lengths_to_be_between(title)",
    "invalid_text": "expect_column_values_to_be_valid_text(query)",
    "whitespace_query": "expect_column_values_to_not_match_regex(query)",
    "mojibake_title": "expect_column_values_to_be_valid_text(title)",
    "event_after_ingest": "expect_column_pair_values_a_to_be_greater_than_b(ingested_at>=event_ts)",
    "unknown_product": "expect_column_values_to_not_be_null(title)",
    "null_session": "expect_column_values_to_not_be_null(session_id)",
    "long_query": "expect_column_value_lengths_to_be_between(query)",
    "position_too_high": "expect_column_values_to_be_between(position)",
    "null_event_ts": "expect_column_values_to_not_be_null(event_ts)",
    "xss_query": "expect_column_value_lengths_to_be_between(query)",
}
# table-level: the whole hour is quarantined. fault -> the rule its quarantine must name
HOUR_FAULTS = {
    "duplicate_event_id": "expect_column_values_to_be_unique(event_id)",
    "empty_hour": "expect_table_row_count_to_be_between",
    "zero_clicks": "expect_column_mean_to_be_between(clicked)",
    "all_clicked": "expect_column_mean_to_be_between(clicked)",
    "session_flood": "expect_session_share_to_be_at_most(session_id)",
    "replayed_rows": "expect_compound_columns_to_be_unique(event_ts,session_id,product_id,position)",
}
# other bad hours made with the simulator: name -> (fault, rate, rule)
OTHER_HOURS = {
    "too_many_bad_rows": ("null_query", 300, "expect_bad_row_fraction_to_be_at_most"),  # 10 of ~300 rows
    "volume_collapse": (None, 10, "drift_row_count"),  # ~70 rows (with late arrivals) after hours of 2,000
}


def quarantined(root: Path, hour: datetime) -> pa.Table:
    """The hour's quarantined rows in the lake's table, with their `quarantine_reason`."""
    return table.read_rows(table.open_table(root), hour, [table.QUARANTINED], columns=table.TABLE_SCHEMA.names)


def by_event_id(rows: pa.Table) -> pa.Table:
    return rows.sort_by("event_id")


@dataclass
class Run:
    settings: Settings
    warehouse: Warehouse
    hours: dict[str, datetime] = field(default_factory=dict)
    reports: dict[str, ValidationReport] = field(default_factory=dict)
    damaged: dict[str, set[str]] = field(default_factory=dict)


def settings_for(home: Path, **env: str) -> Settings:
    return load_settings({"INCREMENTAL_HOME": str(home), "INCREMENTAL_BASE_MODEL": "tiny", **env})


def simulate_hours(warehouse: Warehouse, plan: list[tuple[str, str | None, int]], t0: datetime) -> tuple[
        dict[str, datetime], dict[str, set[str]]]:
    hours, damaged = {}, {}
    for i, (name, fault, rate) in enumerate(plan):
        hour = t0 + timedelta(hours=i)
        summary = simulate(warehouse, hour, hour + HOUR, rate=rate, seed=SEED, faults=[fault] if fault else [])
        hours[name] = hour
        damaged[name] = set(summary["faults"].get(fault, {}).get(iso_hour(hour), [])) if fault else set()
    return hours, damaged


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """About 30 hours through the data plane, each with one kind of bad input (three good hours first)."""
    settings = settings_for(tmp_path_factory.mktemp("bad-input") / "var")
    warehouse = Warehouse(settings.warehouse_url)
    plan = [(f"good{i}", None, RATE) for i in range(3)]
    plan += [(f, f, RATE) for f in ROW_FAULTS]
    plan += [("sql_metacharacters", "sql_metacharacters", RATE)]
    for fault in HOUR_FAULTS:
        plan += [(fault, fault, RATE), (f"after_{fault}", None, RATE)]
    plan += [(name, fault, rate) for name, (fault, rate, _) in OTHER_HOURS.items()]
    plan += [("last", None, RATE)]
    hours, damaged = simulate_hours(warehouse, plan, T0)
    out = Run(settings, warehouse, hours, {}, damaged)
    for name, hour in hours.items():
        extract_hour(warehouse, settings.lake, hour)
        out.reports[name] = validate_hour(settings.lake, hour, settings.validation)
    return out


# --- row-level ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", list(ROW_FAULTS))
def test_row_fault_quarantines_the_rows_and_the_hour_goes_on(run: Run, fault: str) -> None:
    report, rule = run.reports[fault], ROW_FAULTS[fault]
    assert report.status == "validated", report.summary()
    assert report.quarantined_rows >= 2 and rule in report.summary(), report.summary()
    bad = quarantined(run.settings.lake, report.start).to_pylist()
    assert len(bad) == report.quarantined_rows and (report.rows_path / "quarantine.json").is_file()
    assert all(r[lake.REASON_COLUMN] for r in bad)  # every quarantined row names its rule(s)
    assert any(rule in r[lake.REASON_COLUMN] for r in bad)
    quarantined_ids = {r["event_id"] for r in bad}
    assert quarantined_ids <= run.damaged[fault]  # no good row was quarantined
    if fault != "xss_query":  # half of those queries are valid (stored as plain text), half too long
        assert quarantined_ids == run.damaged[fault]  # every damaged row was
    part = lake.partition(run.settings.lake, report.start)
    assert part.status == "validated"
    live = lake.read_partition(part)
    assert not quarantined_ids & set(live.column("event_id").to_pylist())
    assert live.num_rows + len(bad) == warehouse_count(run.warehouse, report.start)
    assert report.data_docs is not None and report.data_docs.is_file()


def test_mojibake_title_row_is_quarantined_not_repaired(run: Run) -> None:
    report = run.reports["mojibake_title"]
    bad = quarantined(run.settings.lake, report.start).to_pylist()
    assert all("\x89\xdb\xaa" in r["title"] for r in bad)  # kept exactly as it arrived
    assert "expect_column_values_to_be_valid_text(title)" in report.summary()


def test_sql_metacharacters_are_plain_data(run: Run) -> None:
    report = run.reports["sql_metacharacters"]
    assert report.status == "validated" and report.quarantined_rows == 0, report.summary()
    queries = lake.read_partition(lake.partition(run.settings.lake, report.start)).column("query").to_pylist()
    assert any("DROP TABLE" in q for q in queries)


# --- table-level ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", list(HOUR_FAULTS))
def test_hour_fault_quarantines_the_hour_and_the_next_hour_validates(run: Run, fault: str) -> None:
    report = run.reports[fault]
    assert report.status == "quarantined", report.summary()
    assert HOUR_FAULTS[fault] in {c.name for c in report.failures}, report.summary()
    assert HOUR_FAULTS[fault] in report.summary()
    assert lake.partition(run.settings.lake, report.start).status == "quarantined"
    assert (report.path / "gx_result.json").is_file() and (report.path / lake.QUARANTINE_FILE).is_file()
    assert report.data_docs is not None and report.data_docs.is_file()
    counts = lake_quarantine.row_counts(run.settings.lake, report.start)
    assert counts["live"] == 0 and counts["quarantined"] == warehouse_count(run.warehouse, report.start)
    after = run.reports[f"after_{fault}"]
    assert after.status == "validated", after.summary()


@pytest.mark.parametrize("name", list(OTHER_HOURS))
def test_other_bad_hours_are_quarantined(run: Run, name: str) -> None:
    report = run.reports[name]
    assert report.status == "quarantined", report.summary()
    assert OTHER_HOURS[name][2] in {c.rule for c in report.failures}, report.summary()
    if name == "too_many_bad_rows":  # the row rule is named too, escalated to the hour
        assert "expect_column_values_to_not_be_null(query)" in {c.name for c in report.failures}


def test_all_clicked_hour_fails_drift_too(run: Run) -> None:
    report = run.reports["all_clicked"]
    assert "drift_ctr" in {c.rule for c in report.failures}, report.summary()


# --- nothing is lost ------------------------------------------------------------------------------
def test_live_plus_quarantined_rows_equal_the_warehouse_rows_of_every_hour(run: Run) -> None:
    for name, hour in run.hours.items():
        counts = lake_quarantine.row_counts(run.settings.lake, hour)
        assert counts["total"] == warehouse_count(run.warehouse, hour), (name, counts)
    # re-extracting everything adds nothing (the lake already holds every row) and changes no byte
    before = {h: lake.partition(run.settings.lake, h).manifest.get("sha256") for h in run.hours.values()}
    for name, hour in run.hours.items():
        assert extract_hour(run.warehouse, run.settings.lake, hour).get("delta_rows") == 0, name
        validate_hour(run.settings.lake, hour, run.settings.validation) if lake.partition(
            run.settings.lake, hour).status != "quarantined" else None
    after = {h: lake.partition(run.settings.lake, h).manifest.get("sha256") for h in run.hours.values()}
    assert before == after
    for hour in run.hours.values():
        assert lake_quarantine.row_counts(run.settings.lake, hour)["total"] == warehouse_count(run.warehouse, hour)


# --- XSS ------------------------------------------------------------------------------------------
XSS_MARKERS = ("<script>alert(", "onerror=alert(", "<img src=x")


def _docs_text(report: ValidationReport) -> str:
    assert report.data_docs is not None
    return "\n".join(p.read_text() for p in report.data_docs.parent.rglob("*.html"))


def test_xss_never_reaches_the_data_docs(tmp_path: Path) -> None:
    """Script in queries and event ids of a quarantined hour (failing rows, so GX reports them): the data
    docs hold none of it. (Written with an UPDATE in the warehouse, so the test runs on any version.)"""
    import duckdb

    settings = settings_for(tmp_path / "var")
    warehouse = Warehouse(settings.warehouse_url)
    summary = simulate(warehouse, T0, T0 + HOUR, rate=300, seed=3)
    hour_key = iso_hour(T0)
    assert summary["per_hour"][hour_key] > 100
    with duckdb.connect(warehouse.duckdb_path) as con:
        ids = [r[0] for r in con.execute(
            "SELECT event_id FROM search_impressions WHERE ingested_at < ? ORDER BY event_id LIMIT 12",
            [T0 + HOUR]).fetchall()]
        for i, event_id in enumerate(ids[:6]):  # too long: fails the length rule, so GX lists the value
            con.execute("UPDATE search_impressions SET query = ? WHERE event_id = ?",
                        ['<script>alert("xss")</script>' + "x" * 300 if i % 2 else
                         '<img src=x onerror=alert(document.cookie)>' * 6, event_id])
        for event_id in ids[6:9]:  # duplicated event ids that are themselves HTML
            con.execute("UPDATE search_impressions SET event_id = ? WHERE event_id = ?",
                        ['<script>alert("id")</script>', event_id])
    extract_hour(warehouse, settings.lake, T0)
    report = validate_hour(settings.lake, T0, settings.validation)
    assert report.status == "quarantined", report.summary()
    assert "expect_column_value_lengths_to_be_between(query)" in report.summary()
    text = _docs_text(report)
    assert "expect_column_value_lengths_to_be_between" in text or "query" in text  # the docs do say what failed
    for marker in XSS_MARKERS:
        assert marker not in text, marker
    # the data itself is kept as it arrived
    stored = quarantined(settings.lake, T0).column("event_id").to_pylist()
    assert '<script>alert("id")</script>' in stored


def test_row_level_xss_docs_are_clean_too(run: Run) -> None:
    text = _docs_text(run.reports["xss_query"])
    for marker in XSS_MARKERS:
        assert marker not in text, marker


def test_data_docs_are_served_sandboxed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin's data docs app on the API server's origin: a sandboxing CSP, no script sources."""
    pytest.importorskip("airflow")
    from fastapi.testclient import TestClient

    plugins = Path(__file__).resolve().parents[2] / "plugins"
    monkeypatch.setenv("INCREMENTAL_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    sys.path.insert(0, str(plugins))
    try:
        import search_ranker_plugin as plugin
    finally:
        sys.path.remove(str(plugins))
    docs = tmp_path / "lake" / "quarantine" / "x" / "data_docs"
    docs.mkdir(parents=True)
    (docs / "index.html").write_text("<html><body>docs</body></html>")
    plugin._data_docs_app.cache_clear()
    app = plugin._data_docs_app()
    for dependency in list(app.router.dependencies):  # the API server's login check: not what is tested here
        app.dependency_overrides[dependency.dependency] = lambda: None
    response = TestClient(app).get("/data-docs/quarantine/x/data_docs/index.html")
    assert response.status_code == 200 and "docs" in response.text
    csp = response.headers["content-security-policy"]
    assert csp.startswith("sandbox") and "script-src 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert TestClient(app).get("/data-docs/../../etc/passwd").status_code == 404
    plugin._data_docs_app.cache_clear()


# --- late rows: an append, validated on their own; validated rows never change ----------------------
def test_late_rows_for_a_trained_hour_are_validated_on_their_own(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "var")
    warehouse = Warehouse(settings.warehouse_url)
    hour = T0 + timedelta(hours=1)
    simulate(warehouse, T0, hour + HOUR, rate=RATE, seed=SEED)
    for h in (T0, hour):
        extract_hour(warehouse, settings.lake, h)
        assert validate_hour(settings.lake, h, settings.validation).status == "validated"
    before = lake.partition(settings.lake, hour)
    lineage_sha = before.manifest["sha256"]  # what a model trained on the hour records (with the version)
    trained_on = lake.read_partition(before)

    nxt = hour + HOUR  # rows of `hour` that reach the warehouse only now
    summary = simulate(warehouse, nxt, nxt + HOUR, rate=RATE, seed=SEED, faults=["late_rows_for_trained_hour"])
    late = set(summary["faults"]["late_rows_for_trained_hour"][iso_hour(nxt)])
    assert lake.partition(settings.lake, hour).manifest["sha256"] == lineage_sha  # nothing changes until extracted

    manifest = extract_hour(warehouse, settings.lake, hour)
    assert manifest["delta_rows"] == len(late) and manifest["version"] == before.version + 1  # one append
    pending = lake.partition(settings.lake, hour)
    assert pending.status == "validated" and pending.pending_parts == 1  # training sees the validated rows only
    assert pending.manifest["sha256"] == lineage_sha and lake.read_partition(pending).equals(trained_on)
    report = validate_hour(settings.lake, hour, settings.validation)
    assert report.status == "validated" and report.part == "rows extracted since" and report.rows == len(late), \
        report.summary()

    after = lake.partition(settings.lake, hour)
    assert after.manifest["sha256"] != lineage_sha and after.version == before.version + 2  # downstream sees new data
    rows = lake.read_partition(after)
    assert late <= set(rows.column("event_id").to_pylist())
    assert rows.num_rows == before.manifest["rows"] + len(late) == warehouse_count(warehouse, hour)
    old = rows.filter(pc.is_in(rows["event_id"], trained_on["event_id"]))
    assert by_event_id(old).equals(by_event_id(trained_on))  # the validated rows are unchanged
    # what a model trained on is still there, by time travel to the version it read
    assert lake.read_partition(before).equals(trained_on)
    # and again: nothing new, nothing committed, still validated
    assert extract_hour(warehouse, settings.lake, hour)["delta_rows"] == 0
    assert validate_hour(settings.lake, hour, settings.validation).part is None
    assert lake.partition(settings.lake, hour).version == after.version


def test_replayed_rows_into_a_validated_hour_quarantine_the_delta_only(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "var")
    warehouse = Warehouse(settings.warehouse_url)
    simulate(warehouse, T0, T0 + HOUR, rate=RATE, seed=SEED)
    extract_hour(warehouse, settings.lake, T0)
    assert validate_hour(settings.lake, T0, settings.validation).status == "validated"
    validated = lake.partition(settings.lake, T0).manifest["sha256"]
    simulate(warehouse, T0, T0 + HOUR, rate=RATE, seed=SEED)  # the same rows, loaded twice
    assert extract_hour(warehouse, settings.lake, T0)["delta_rows"] > 0
    report = validate_hour(settings.lake, T0, settings.validation)
    assert report.status == "quarantined", report.summary()
    assert "expect_column_values_to_be_unique_across_parts(event_id)" in {c.name for c in report.failures}
    part = lake.partition(settings.lake, T0)
    assert part.status == "validated" and part.manifest["sha256"] == validated and part.pending_parts == 0
    assert lake_quarantine.row_counts(settings.lake, T0)["total"] == warehouse_count(warehouse, T0)


# --- schema -------------------------------------------------------------------------------------
def test_schema_change_in_the_warehouse_quarantines_the_hour(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "var")
    warehouse = Warehouse(settings.warehouse_url)
    simulate(warehouse, T0, T0 + HOUR, rate=300, seed=SEED)
    import duckdb

    with duckdb.connect(warehouse.duckdb_path) as con:
        con.execute("DROP INDEX search_impressions_ingested_at")
        con.execute("ALTER TABLE search_impressions ALTER position TYPE VARCHAR")
    extract_hour(warehouse, settings.lake, T0)
    report = validate_hour(settings.lake, T0, settings.validation)
    assert report.status == "quarantined"
    assert "expect_column_values_to_be_of_type(position)" in {c.name for c in report.failures}, report.summary()
    assert lake_quarantine.row_counts(settings.lake, T0)["total"] == warehouse_count(warehouse, T0)


# --- drift never switches off -----------------------------------------------------------------------
def test_drift_checks_look_past_a_gap(tmp_path: Path) -> None:
    """Three validated hours, a 30-hour gap, then an all-clicked hour: drift compares with the hours before the gap."""
    settings = settings_for(tmp_path / "var")
    warehouse = Warehouse(settings.warehouse_url)
    simulate(warehouse, T0, T0 + timedelta(hours=3), rate=500, seed=SEED)
    for h in hours(T0, T0 + timedelta(hours=3)):
        extract_hour(warehouse, settings.lake, h)
        assert validate_hour(settings.lake, h, settings.validation).status == "validated"
    late = T0 + timedelta(hours=33)
    simulate(warehouse, late, late + HOUR, rate=500, seed=SEED, faults=["all_clicked"])
    extract_hour(warehouse, settings.lake, late)
    report = validate_hour(settings.lake, late, settings.validation)
    assert report.status == "quarantined"
    drift = [c for c in report.checks if c.rule == "drift_ctr"]
    # the reference is the three hours before the gap (the message names how many hours it pooled)
    assert drift and not drift[0].success and "over 3 hours" in drift[0].message, report.summary()
    assert "skipped" not in drift[0].message


# --- recovery and re-admission -----------------------------------------------------------------------
def test_a_failed_quarantine_does_not_leave_the_hour_stuck(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "var")
    warehouse = Warehouse(settings.warehouse_url)
    simulate(warehouse, T0, T0 + HOUR, rate=300, seed=SEED, faults=["duplicate_event_id"])
    extract_hour(warehouse, settings.lake, T0)
    blocker = lake.quarantine_root(settings.lake, T0)
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")  # the move to quarantine fails (a real OSError, not a mock)
    version = lake.partition(settings.lake, T0).version
    with pytest.raises(OSError):
        validate_hour(settings.lake, T0, settings.validation)
    part = lake.partition(settings.lake, T0)
    assert part.status == "extracted" and part.version == version  # nothing committed, nothing half-done
    blocker.unlink()
    report = validate_hour(settings.lake, T0, settings.validation)  # works again, no hand-deleting
    assert report.status == "quarantined" and report.data_docs is not None and report.data_docs.is_file()
    assert lake_quarantine.row_counts(settings.lake, T0)["total"] == warehouse_count(warehouse, T0)


def test_quarantined_rows_are_readmitted_after_a_fix(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from incremental.cli import EXIT_QUARANTINED, main

    home = tmp_path / "var"
    settings = settings_for(home)
    warehouse = Warehouse(settings.warehouse_url)
    simulate(warehouse, T0, T0 + HOUR, rate=RATE, seed=SEED, faults=["long_query"])
    simulate(warehouse, T0 + HOUR, T0 + 2 * HOUR, rate=300, seed=SEED, faults=["zero_clicks"])
    for h in (T0, T0 + HOUR):
        extract_hour(warehouse, settings.lake, h)
        validate_hour(settings.lake, h, settings.validation)
    assert lake_quarantine.row_counts(settings.lake, T0)["quarantined_rows"] == 10
    sha = lake.partition(settings.lake, T0).manifest["sha256"]

    # the fix: a reviewed change of the rule (longer queries are fine), then re-admission through the CLI
    config = tmp_path / "reviewed.yaml"
    config.write_text("validation:\n  max_query_chars: 5000\n")
    env = {"INCREMENTAL_HOME": str(home), "INCREMENTAL_CONFIG": str(config)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(["partitions", "--start", T0.isoformat(), "--end", (T0 + 2 * HOUR).isoformat()]) == 0
        first, second = capsys.readouterr().out.splitlines()[1:3]
        assert first.split()[1:4] == ["validated", str(warehouse_count(warehouse, T0) - 10), "10"], first
        assert second.split()[1] == "quarantined" and second.split()[2] == str(warehouse_count(warehouse, T0 + HOUR))
        assert main(["readmit", "--start", T0.isoformat(), "--reason", "max_query_chars raised to 5000 (review #12)"]) == 0
        out = capsys.readouterr().out
        assert "validated: 10 rows (re-admitted rows)" in out, out
        # a whole quarantined hour with nothing fixed: validated again, quarantined again, exit 1, nothing lost
        assert main(["readmit", "--start", (T0 + HOUR).isoformat(), "--reason", "checking the zero-click hour again"]) == EXIT_QUARANTINED
        assert "expect_column_mean_to_be_between(clicked)" in capsys.readouterr().out
        assert main(["partitions", "--start", T0.isoformat(), "--end", (T0 + 2 * HOUR).isoformat()]) == 0
        listing = capsys.readouterr().out
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    part = lake.partition(settings.lake, T0)
    assert part.manifest["sha256"] != sha and part.pending_parts == 0
    counts = lake_quarantine.row_counts(settings.lake, T0)
    assert counts["quarantined"] == 0 and counts["live"] == warehouse_count(warehouse, T0)
    commits = table.hour_versions(table.open_table(settings.lake), T0)
    assert [c["event"] for c in commits] == ["extract", "validate", "readmit"]  # one commit each
    event = commits[-1]
    sources = json.loads(event["sources"])
    assert event["reason"].startswith("max_query_chars raised") and sources
    assert (settings.lake / sources[0] / lake.READMITTED_FILE).is_file()  # marked, not deleted
    assert lake_quarantine.row_counts(settings.lake, T0 + HOUR)["total"] == warehouse_count(warehouse, T0 + HOUR)
    assert "validated" in listing and "quarantined" in listing


# --- PostgreSQL -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["mojibake_title", "xss_query", "event_after_ingest", "replayed_rows"])
def test_on_postgresql(fault: str, tmp_path: Path, postgres_url: str) -> None:
    settings = settings_for(tmp_path / "var", INCREMENTAL_WAREHOUSE_URL=postgres_url)
    warehouse = Warehouse(settings.warehouse_url)
    hours, _ = simulate_hours(warehouse, [("good", None, RATE), (fault, fault, RATE)], T0)
    reports = {}
    for name, hour in hours.items():
        extract_hour(warehouse, settings.lake, hour)
        reports[name] = validate_hour(settings.lake, hour, settings.validation)
        assert lake_quarantine.row_counts(settings.lake, hour)["total"] == warehouse_count(warehouse, hour)
    assert reports["good"].status == "validated"
    if fault in ROW_FAULTS:
        assert reports[fault].status == "validated" and reports[fault].quarantined_rows >= 2
        assert ROW_FAULTS[fault] in reports[fault].summary()
    else:
        assert reports[fault].status == "quarantined"
        assert HOUR_FAULTS[fault] in reports[fault].summary()


def test_readmitting_rows_that_still_fail_changes_nothing_downstream(tmp_path: Path) -> None:
    """Re-admission without a fix: the rows fail again, go back to quarantine as a part; the hour's
    validated parts and identity (what models were trained on) stay as they were."""
    settings = settings_for(tmp_path / "var")
    warehouse = Warehouse(settings.warehouse_url)
    simulate(warehouse, T0, T0 + HOUR, rate=RATE, seed=SEED, faults=["mojibake_title"])
    extract_hour(warehouse, settings.lake, T0)
    assert validate_hour(settings.lake, T0, settings.validation).quarantined_rows == 10
    before = lake.partition(settings.lake, T0).manifest["sha256"]
    report = readmit_hour(settings.lake, T0, settings.validation, "no fix yet: checking the rule still holds")
    assert report.status == "quarantined" and report.hour_validated, report.summary()
    assert "expect_part_to_have_valid_rows" in {c.rule for c in report.failures}
    assert "the hour stays validated" in report.summary()
    part = lake.partition(settings.lake, T0)
    assert part.status == "validated" and part.manifest["sha256"] == before and part.pending_parts == 0
    counts = lake_quarantine.row_counts(settings.lake, T0)
    assert counts["quarantined"] == 10 and counts["total"] == warehouse_count(warehouse, T0)
    with pytest.raises(Exception, match="at least 10 characters"):
        readmit_hour(settings.lake, T0, settings.validation, "meh")
