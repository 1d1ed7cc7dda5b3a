"""Drift as GX expectations, and the checkpoint that runs the suite and builds the data docs.

Each drift rule is two expectations in the hour's suite (a warning bound and a critical bound,
with GX severities), read back as one check per rule with the worst grade; the suite runs through
a GX Checkpoint whose `UpdateDataDocsAction` builds the docs, which carry no data values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from great_expectations.checkpoint.actions import UpdateDataDocsAction
from test_validate import CATEGORIES, ROWS, START, good_frame, write_hour

from incremental.config import ValidationSettings
from incremental.hours import HOUR
from incremental.validation.frame import check_frame, validate_frame
from incremental.validation.gx_suite import gx_summary
from incremental.validation.hour_drift import UNSEEN_CATEGORY_WEIGHT, category_code
from incremental.validation.report import CRITICAL, DRIFT_RULES, WARNING
from incremental.validation.validate import validate_hour

END = START + HOUR
UNIFORM = {c: 1 / len(CATEGORIES) for c in CATEGORIES}


def history(hours: int = 4, rows: int = ROWS, ctr: float = 0.1, mix: dict | None = None) -> list[dict]:
    """Earlier validated hours' statistics, as `validated_history` reads them."""
    return [{"rows": rows, "clicks": round(rows * ctr), "ctr": ctr, "category_mix": mix or UNIFORM}] * hours


@pytest.fixture
def settings() -> ValidationSettings:
    return ValidationSettings()


def drift_of(checks) -> dict[str, object]:
    out = {c.rule: c for c in checks if c.rule in DRIFT_RULES}
    assert list(out) == list(DRIFT_RULES) and len([c for c in checks if c.rule in DRIFT_RULES]) == 3
    return out


CASES = {
    # name: (frame, history, rule, grade or None for a pass, text the message must hold)
    "pass": (lambda: good_frame(), history(), None, None,
             ["80 rows vs reference median 80 over 4 hours", "ctr 0.1000 vs reference median 0.1000",
              "KL divergence 0.000 from the reference mix of 4 hours (warning limit 0.1)"]),
    "volume-warning": (lambda: good_frame(rows=ROWS * 5), history(), "drift_row_count", WARNING,
                       ["400 rows vs reference median 80", "x5.00; warning limit x3 either way: rows in [27, 240]"]),
    "volume-critical": (lambda: good_frame(), history(rows=5_000), "drift_row_count", CRITICAL,
                        ["80 rows vs reference median 5000", "critical limit x20 either way: rows in [250, 100000]"]),
    "ctr-warning": (lambda: good_frame(ctr=0.2), history(), "drift_ctr", WARNING,
                    ["ctr 0.2000 vs reference median 0.1000 over 4 hours (change 0.1000; warning limit 0.05)"]),
    "ctr-critical": (lambda: good_frame(ctr=0.6), history(), "drift_ctr", CRITICAL,
                     ["ctr 0.6000 vs reference median 0.1000", "change 0.5000; critical limit 0.3"]),
    "mix-warning": (lambda: good_frame(categories=["shoes", "shoes", "shoes", "bags"]), history(),
                    "drift_category_mix", WARNING,
                    [f"KL divergence {0.75 * math.log(3):.3f}", "(warning limit 0.1)", "'shoes' 75.0% (reference 25.0%)"]),
    # an hour all in a category never seen: drift (a warning), never a quarantine on its own
    "mix-all-new": (lambda: good_frame(categories=["garden"]), history(), "drift_category_mix", WARNING,
                    [f"KL divergence {math.log(1 / UNSEEN_CATEGORY_WEIGHT):.3f}", "(warning limit 0.1)",
                     "'garden' 100.0% (reference none: a new category)"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_drift_through_gx(settings: ValidationSettings, case: str) -> None:
    frame, hist, rule, grade, texts = CASES[case]
    checks, _ = validate_frame(frame(), START, END, settings, hist)
    drift = drift_of(checks)
    assert [c.rule for c in checks if not c.success] == ([rule] if rule else [])
    for name, check in drift.items():
        if name == rule:
            assert (check.severity, check.success) == (grade, False), check.message
        else:
            assert (check.severity, check.success) == (WARNING, True), check.message
    said = " | ".join(c.message for c in drift.values())
    for text in texts:
        assert text in said


def test_each_rule_is_a_warning_and_a_critical_expectation_but_the_mix_a_warning_only(settings: ValidationSettings) -> None:
    out = check_frame(good_frame(ctr=0.2), START, END, settings, history())
    drift = [r for r in out.gx.result.results if (r.expectation_config.meta or {}).get("rule") in DRIFT_RULES]
    found = {(r.expectation_config.meta["rule"], r.expectation_config.type, str(r.expectation_config.severity.value))
             for r in drift}
    assert found == {(rule, kind, grade) for rule, kind in [
        ("drift_row_count", "expect_table_row_count_to_be_between"),
        ("drift_ctr", "expect_column_mean_to_be_between"),
    ] for grade in (WARNING, CRITICAL)} | {("drift_category_mix", "expect_column_kl_divergence_to_be_less_than", WARNING)}
    assert [(f["rule"], f["severity"]) for f in gx_summary(out.gx.result)["failed"]] == [("drift_ctr", WARNING)]
    by = {(r.expectation_config.meta["rule"], r.expectation_config.meta["severity"]): r for r in drift}
    assert by["drift_ctr", WARNING].expectation_config.kwargs["min_value"] == pytest.approx(0.05)
    assert by["drift_ctr", CRITICAL].expectation_config.kwargs["max_value"] == pytest.approx(0.4)
    assert [by["drift_ctr", g].success for g in (WARNING, CRITICAL)] == [False, True]
    assert by["drift_row_count", CRITICAL].expectation_config.kwargs["min_value"] == 4  # ceil(80 / 20)
    partition = by["drift_category_mix", WARNING].expectation_config.kwargs["partition_object"]
    assert partition["values"] == [category_code(c) for c in sorted(CATEGORIES)]  # codes, never names
    assert sum(partition["weights"]) == pytest.approx(1.0)
    # the absolute click-through bounds are their own check, not a drift one
    assert [c.rule for c in out.checks if not c.success] == ["drift_ctr"]


def test_skipped_drift_is_reported(settings: ValidationSettings) -> None:
    checks, _ = validate_frame(good_frame(ctr=0.6), START, END, settings, history(hours=2))
    for rule, check in drift_of(checks).items():
        assert check.success and check.column is None
        assert check.message == f"{rule}: skipped: 2 earlier validated hour(s), need 3"
    # history without click-through rates or mixes: those two are skipped, volume still judged
    bare = [{"rows": ROWS, "ctr": None, "category_mix": None}] * 3
    drift = drift_of(validate_frame(good_frame(ctr=0.6, categories=["garden"]), START, END, settings, bare)[0])
    assert drift["drift_ctr"].message == "drift_ctr: skipped: no click-through rate to compare"
    assert drift["drift_category_mix"].message == "drift_category_mix: skipped: no category mix to compare"
    assert drift["drift_row_count"].success and "80 rows vs reference median 80 over 3 hours" in drift["drift_row_count"].message
    # a small delta part has no hour statistics
    out = check_frame(good_frame(rows=20), START, END, settings, history(), table_stats=False)
    assert all(c.success and "skipped: a delta of 20 rows" in c.message for c in drift_of(out.checks).values())


def test_null_and_unseen_categories(settings: ValidationSettings) -> None:
    frame = good_frame()
    frame["category"] = frame["category"].astype(object)
    frame.loc[:3, "category"] = None  # 4 of 80 rows: the category "<null>" (as in statistics_of), unseen
    checks, stats = validate_frame(frame, START, END, settings, history())
    mix = drift_of(checks)["drift_category_mix"]
    assert stats["category_mix"]["<null>"] == pytest.approx(0.05)
    assert mix.success and "KL divergence" in mix.message  # 5% in one new category stays under the warning limit


def test_the_checkpoint_builds_data_docs_without_data_values(
    tmp_path: Path, settings: ValidationSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = tmp_path / "lake"
    for k in (3, 2, 1):
        write_hour(lake, good_frame(START - HOUR * k, seed=k), START - HOUR * k)
        assert validate_hour(lake, START - HOUR * k, settings).status == "validated"
    calls = []
    real = UpdateDataDocsAction.run
    monkeypatch.setattr(UpdateDataDocsAction, "run", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    frame = good_frame()
    frame.loc[[1, 2], "query"] = "<script>alert('query')</script>"
    frame.loc[[3, 4, 5], "query"] = None  # 3 of 80 rows: over max_bad_row_fraction, the hour is quarantined
    evil = "</script><script>alert('category')</script>"
    frame.loc[:19, "category"] = evil  # the KL result's chart would embed this raw in a <script>
    write_hour(lake, frame)
    report = validate_hour(lake, START, settings)
    assert report.status == "quarantined" and calls == [1], report.summary()
    assert report.data_docs == report.path / "data_docs" / "index.html" and report.data_docs.is_file()
    pages = list(report.data_docs.parent.rglob("*.html"))
    assert any("validations" in p.parts for p in pages)
    html = "\n".join(p.read_text() for p in pages)
    assert "alert(" not in html and "<script>alert" not in html
    assert category_code(evil) in html  # the chart is there, with the code
    mix = next(c for c in report.checks if c.rule == "drift_category_mix")
    assert (mix.severity, mix.success) == (WARNING, False) and repr(evil) in mix.message
    gx_result = json.loads((report.path / "gx_result.json").read_text())
    assert gx_result["category_codes"][category_code(evil)] == evil
    # no docs site (the pure core): a checkpoint without the action
    calls.clear()
    validate_frame(good_frame(), START, END, settings, history())
    assert calls == []


def test_failed_docs_action_still_validates(
    tmp_path: Path, settings: ValidationSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self, *args, **kwargs):
        raise RuntimeError("no disk")

    monkeypatch.setattr(UpdateDataDocsAction, "run", broken)
    lake = tmp_path / "lake"
    write_hour(lake, good_frame().assign(query=lambda f: f["query"].where(f.index > 2, None)))
    report = validate_hour(lake, START, settings)
    assert report.status == "quarantined" and report.data_docs is None
    assert json.loads((report.path / "gx_result.json").read_text())["gx"]["results"]
    assert not (report.path / "data_docs").exists()


def test_the_categories_gx_sees_are_codes(settings: ValidationSettings) -> None:
    out = check_frame(good_frame(categories=["shoes", "<b>x</b>"]), START, END, settings, history())
    assert set(out.codes.values()) == set(CATEGORIES) | {"<b>x</b>"}
    kl = next(r for r in out.gx.result.results if r.expectation_config.type.startswith("expect_column_kl"))
    assert set(kl.result["details"]["observed_partition"]["values"]) <= set(out.codes)
    assert pd.Series(list(out.codes)).str.fullmatch(r"category-[0-9a-f]{10}").all()
