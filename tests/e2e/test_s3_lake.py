"""The lake on object storage: `INCREMENTAL_LAKE=s3://bucket/lake` against an S3-compatible server.

The server is moto's standalone one (`moto.server.ThreadedMotoServer`), started by the test on a
free loopback port: real HTTP, real S3 requests through pyarrow's S3FileSystem and boto3, nothing
mocked in-process. The data plane runs through the pipeline's own functions (simulate ->
`extract_step` -> `validate_step`), and the partitions are read back as training and replay read
them. Nothing of the lake may land on the local disk.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pyarrow as pa
import pytest

from incremental import pipeline
from incremental.config import Settings, load_settings
from incremental.data import files, lake, lake_lock, storage, table
from incremental.data import quarantine as lake_quarantine
from incremental.data.extract import warehouse_count, write_rows
from incremental.data.warehouse import Warehouse
from incremental.hours import HOUR, Hour, iso_hour
from incremental.judge import anchor, score_cache
from incremental.model import replay
from incremental.sim.simulate import simulate

T0 = Hour(2026, 4, 1, 0, tzinfo=UTC)
RATE = 2000  # 10 damaged rows per fault and hour: 0.5%, under max_bad_row_fraction (1%): row quarantine
SEED = 7


@pytest.fixture
def s3_settings(home: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose lake is s3://<a fresh bucket>/lake on the local server (standard AWS variables)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    monkeypatch.setenv("INCREMENTAL_LAKE", f"s3://{bucket}/lake")
    return load_settings()


def _keys(settings: Settings) -> set[str]:
    root = settings.lake
    assert isinstance(root, storage.ObjectPath)
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=root.bucket, Prefix="lake/")
    return {o["Key"].removeprefix("lake/") for page in pages for o in page.get("Contents", [])}


def test_the_settings_name_an_object_store_lake(s3_settings: Settings, home: Path) -> None:
    assert isinstance(s3_settings.lake, storage.ObjectPath)
    assert str(s3_settings.lake).startswith("s3://lake-") and str(s3_settings.lake).endswith("/lake")
    assert isinstance(load_settings({"INCREMENTAL_HOME": str(home)}).lake, Path)  # the embedded default: a folder


def test_the_data_plane_runs_on_s3_and_reads_back(s3_settings: Settings, home: Path) -> None:
    settings = s3_settings
    warehouse = Warehouse(settings.warehouse_url)
    good, rows_bad, outage, after = (T0 + timedelta(hours=i) for i in range(4))
    simulate(warehouse, good, good + HOUR, rate=RATE, seed=SEED)
    simulate(warehouse, rows_bad, rows_bad + HOUR, rate=RATE, seed=SEED, faults=["null_query"])
    simulate(warehouse, outage, outage + HOUR, rate=RATE, seed=SEED, faults=["empty_hour"])  # arrives later
    simulate(warehouse, after, after + HOUR, rate=RATE, seed=SEED)

    results = {}
    for hour in (good, rows_bad, outage, after):
        extracted = pipeline.extract_step(settings, hour)
        assert extracted.rows == warehouse_count(warehouse, hour)
        assert extracted.lake_key == lake.hour_key(hour).join(("records/search_logs/", ""))
        results[hour] = pipeline.validate_step(settings, hour)

    # a clean hour, an hour with bad rows (quarantined row by row), an outage (the whole hour
    # quarantined: an empty hour, staged beside the table, moved whole), and the hour after it
    assert results[good].status == "validated", results[good].summary
    assert results[rows_bad].status == "validated" and results[rows_bad].quarantined_rows == 10
    assert results[outage].status == "quarantined", results[outage].summary
    assert results[after].status == "validated", results[after].summary
    assert results[outage].lake_key.startswith("quarantine/search_logs/" + lake.hour_key(outage) + "/")
    assert str(results[rows_bad].quarantined_rows_key).startswith("quarantine/search_logs/")

    keys = _keys(settings)
    commits = {k for k in keys if k.startswith("search_logs/_delta_log/") and k.endswith(".json")}
    assert len(commits) == 6  # good, rows_bad, after: extract + validate each; the outage: staged, no commit
    for hour in (good, rows_bad, after):
        assert f"records/search_logs/{lake.hour_key(hour)}/{files.VALIDATION_FILE}" in keys
        assert f"records/search_logs/{lake.hour_key(hour)}/{files.PENDING_VALIDATION_FILE}" not in keys  # published
        assert any(k.startswith(f"search_logs/hour={iso_hour(hour).replace(':', '%3A')}/status=validated/")
                   for k in keys)
    assert any(k.startswith(f"search_logs/hour={iso_hour(rows_bad).replace(':', '%3A')}/status=quarantined/")
               for k in keys)
    assert f"staging/search_logs/{lake.hour_key(outage)}/{lake.STAGED_FILE}" not in keys  # moved whole
    assert f"{results[outage].lake_key}/{lake.QUARANTINED_ROWS_FILE}" in keys
    assert f"{results[outage].lake_key}/gx_result.json" in keys
    assert f"{results[outage].lake_key}/data_docs/index.html" in keys
    assert not (home / "lake").exists(), "the lake is on S3: nothing of it may be on the local disk"

    # read back as training, replay and monitoring read it: every row of the warehouse accounted for
    for hour in (good, rows_bad, outage, after):
        assert lake_quarantine.row_counts(settings.lake, hour)["total"] == warehouse_count(warehouse, hour)
    for hour in (good, after):
        part = lake.partition(settings.lake, hour)
        assert part.status == "validated" and isinstance(part.path, storage.ObjectPath)
        assert lake.read_partition(part).num_rows == warehouse_count(warehouse, hour)
    bad_part = lake.partition(settings.lake, rows_bad)
    assert lake.read_partition(bad_part).num_rows == warehouse_count(warehouse, rows_bad) - 10
    assert lake.partition(settings.lake, outage).status == "quarantined"
    frame, lineage = replay.sample(settings.lake, after + HOUR, fresh_rows=500, fraction=0.5, replay_hours=4,
                                   holdout_fraction=0.2, seed=1)
    assert len(frame) == 500 and [p["hour"] for p in lineage["partitions"]] == [
        h.isoformat() for h in (good, rows_bad, after)]

    # re-extracting commits nothing new; late rows are one append, validated on their own
    assert pipeline.extract_step(settings, after).delta_rows == 0
    lineage_sha = lake.partition(settings.lake, after).manifest["sha256"]
    late_hour = after + HOUR
    simulate(warehouse, late_hour, late_hour + HOUR, rate=RATE, seed=SEED, faults=["late_rows_for_trained_hour"])
    delta = pipeline.extract_step(settings, after)
    assert delta.delta_rows is not None and delta.delta_rows > 0
    assert pipeline.validate_step(settings, after).validated
    grown = lake.partition(settings.lake, after)
    assert grown.manifest["sha256"] != lineage_sha and grown.version == 7 and grown.pending_parts == 0
    assert lake.read_partition(grown).num_rows == warehouse_count(warehouse, after)

    # the anchor (forgetting benchmark) is frozen from the validated hours into the lake, and read back
    info = anchor.freeze(settings.lake, good, after + HOUR, size=300, seed=1, reason="s3 test")
    frame, loaded = anchor.load(settings.lake)
    assert len(frame) == info.rows == loaded.rows == 300 and loaded.sha256 == info.sha256
    assert any(k.startswith("anchor_set/_delta_log/") for k in _keys(settings))  # the anchor's own Delta table
    scores = score_cache.cached_scores(settings.lake, "3", info.sha256, lambda: [0.5] * 300, rows=300)
    again = score_cache.cached_scores(settings.lake, "3", info.sha256, lambda: pytest.fail("not cached"), rows=300)
    assert list(again) == list(scores)
    refreshed = anchor.freeze(settings.lake, good, after + HOUR, size=200, seed=2, reason="refresh", refresh=True)
    assert anchor.current(settings.lake).sha256 == refreshed.sha256
    assert [r["sha256"] for r in anchor.history(settings.lake)] == [info.sha256]
    assert not (home / "lake").exists()


def test_a_data_file_the_log_does_not_list_is_not_part_of_the_hour(s3_settings: Settings) -> None:
    """A writer that died after uploading its data file but before its commit leaves an object in
    the table's folder: readers go through the log, so the hour does not change."""
    settings = s3_settings
    rows = pa.Table.from_pylist([{"event_id": "e1", "event_ts": T0, "ingested_at": T0, "session_id": "s",
                                  "user_id": "u", "query": "q", "product_id": "p", "position": 1, "clicked": 0,
                                  "title": "t", "brand": "b", "category": "c", "price": 1.0}],
                                schema=lake.SEARCH_LOG_SCHEMA)
    manifest = write_rows(settings.lake, T0, rows)
    assert manifest["version"] == 0
    hour_folder = table.table_path(settings.lake) / f"hour={iso_hour(T0)}" / "status=extracted"
    files.write_parquet_atomic(hour_folder / "part-00000-orphan.parquet", table.with_status(rows, T0, table.EXTRACTED))
    found = lake.partition(settings.lake, T0)
    assert found.status == "extracted" and found.version == 0 and lake.read_partition(found).num_rows == 1


def test_the_lake_lock_is_a_conditional_put_and_excludes(s3_settings: Settings) -> None:
    settings = s3_settings
    inside, overlaps, lock_key = [0], [0], "lake/_locks/registry.lock"

    def worker() -> None:
        for _ in range(3):
            with lake_lock.lock(settings.lake, "registry", timeout=60):
                inside[0] += 1
                overlaps[0] += inside[0] > 1
                assert lock_key in {f"lake/{k}" for k in _keys(settings)}
                time.sleep(0.02)
                inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [0]
    assert "_locks/registry.lock" not in _keys(settings)  # released: deleted

    # held by another worker: we wait, and give up after the timeout
    client = boto3.client("s3")
    bucket = settings.lake.bucket  # type: ignore[union-attr]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    client.put_object(Bucket=bucket, Key=lock_key, Body=f'{{"owner": "other", "expires_at": "{future}"}}'.encode())
    with pytest.raises(lake_lock.LockTimeout), lake_lock.lock(settings.lake, "registry", timeout=0.5):
        pass
    # a lease past its expiry (its holder died) is broken, and the lock is taken
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    client.put_object(Bucket=bucket, Key=lock_key, Body=f'{{"owner": "dead", "expires_at": "{past}"}}'.encode())
    with lake_lock.lock(settings.lake, "registry", timeout=10):
        body = client.get_object(Bucket=bucket, Key=lock_key)["Body"].read().decode()
        assert '"dead"' not in body


def test_the_registry_lock_lives_in_the_lake_when_it_is_on_s3(s3_settings: Settings, home: Path) -> None:
    """Workers that share no disk share the lake: the promotion compare-and-set locks there."""
    from incremental.registry import champion as registry

    with registry._registry_lock(s3_settings):
        assert "_locks/registry.lock" in _keys(s3_settings)
    assert "_locks/registry.lock" not in _keys(s3_settings)
    assert not (home / "registry.lock").exists()


def test_the_drift_record_state_and_alerts_live_in_the_lake(s3_settings: Settings, home: Path) -> None:
    """The monitor task and the train task may run on machines that share no disk: the drift
    rule's record, the episode state and the alert log are objects in the lake."""
    from incremental.judge import drift, prequential

    settings = s3_settings
    for i, auc in enumerate((0.8, 0.79, 0.81)):
        prequential.append_record(settings, prequential.make_record(T0 + i * HOUR, "1", {"rows": 100, "auc": auc}))
    assert [r["auc"] for r in prequential.records(settings)] == [0.8, 0.79, 0.81]  # appended, none lost
    state = drift.load_state(settings)
    state.mode, state.declared_at = drift.ADAPT, "2026-01-01T02:00Z"
    drift.save_state(settings, state)
    drift.alert(settings, "page", "a person must look")
    assert drift.load_state(settings).mode == drift.ADAPT
    assert {"_drift/prequential.jsonl", "_drift/state.json", "_drift/alerts.jsonl"} <= _keys(settings)
    assert not list(home.rglob("*.jsonl")) and not (home / "drift").exists()


def test_a_missing_bucket_is_named(s3_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCREMENTAL_LAKE", "s3://no-such-bucket-here/lake")
    settings = load_settings()
    with pytest.raises((storage.StoreError, FileNotFoundError), match="no-such-bucket-here"):
        write_rows(settings.lake, T0, lake.SEARCH_LOG_SCHEMA.empty_table())
