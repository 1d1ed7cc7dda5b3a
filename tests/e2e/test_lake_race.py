"""Two writers on two machines racing on one hour of the lake's Delta table on S3 (moto's server).

Each writer is a process of its own with its own home (nothing shared but the bucket), and each
commits straight to the table, past the hour lock (which only saves duplicate work): the table's
commit protocol (a create-only conditional PUT of `_delta_log/<n>.json`) is what must keep the hour
whole. Overwrites of the hour (what validation, quarantine and re-admission commit): one commit wins
each round, the other is refused cleanly (`CommitConflict`) or lands after it, whole; the hour never
holds a mixture, a doubled set, or rows of a refused writer. Appends (extraction, late rows) commute:
both land, nothing lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest

from incremental.data import table
from incremental.data.storage import ObjectPath
from incremental.hours import parse_hour

ROOT = Path(__file__).resolve().parents[2]
HOUR = "2026-05-01T07:00:00+00:00"
ROWS = 200
WRITER = r"""
import json, sys, time
import pyarrow as pa
from incremental.data import table
from incremental.hours import parse_hour
from incremental.data.storage import root

lake, name, mode, start_at = root(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
hour = parse_hour(sys.argv[5])
n = int(sys.argv[6])
rows = pa.table({f.name: pa.nulls(n, f.type) for f in table.SEARCH_LOG_SCHEMA}).set_column(
    0, "event_id", pa.array([f"{name}-{i}" for i in range(n)]))
rows = table.with_status(rows, hour, table.VALIDATED)
while time.time() < start_at:
    time.sleep(0.001)
try:
    if mode == "overwrite":  # what it read of the hour (nothing of it here), then its commit replacing that
        read = table.open_table(lake)
        version = table.overwrite_hour(lake, hour, rows, "race", {"writer": name}, keep_validated=False, read=read)
    else:
        version = table.append(lake, hour, rows, "race", {"writer": name})
    print(json.dumps({"writer": name, "committed": version}))
except table.CommitConflict as exc:
    print(json.dumps({"writer": name, "refused": str(exc)}))
"""


@pytest.fixture
def lake_uri(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    env = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    bucket = f"race-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/lake"


def race(lake_uri: str, mode: str, tmp_path: Path, rounds: int) -> list[list[dict]]:
    """`rounds` rounds of two writer processes committing to the hour at the same instant."""
    outcomes = []
    for r in range(rounds):
        start_at = time.time() + 2.0  # both processes are up and waiting by then
        procs = []
        for name in (f"a{r}", f"b{r}"):
            home = tmp_path / f"home-{name}"  # each its own home: nothing shared but the bucket
            env = {**os.environ, "PYTHONPATH": str(ROOT), "INCREMENTAL_HOME": str(home)}
            procs.append(subprocess.Popen([sys.executable, "-c", WRITER, lake_uri, name, mode, str(start_at), HOUR,
                                           str(ROWS)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
        results = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
        outcomes.append(results)
    return outcomes


def hour_rows(lake_uri: str) -> list[str]:

    dt = table.open_table(ObjectPath.from_uri(lake_uri))
    rows = table.read_rows(dt, parse_hour(HOUR), [table.VALIDATED, table.EXTRACTED, table.QUARANTINED])
    return rows.column("event_id").to_pylist()


def test_two_writers_overwriting_one_hour_never_leave_a_mixture(lake_uri: str, tmp_path: Path) -> None:
    outcomes = race(lake_uri, "overwrite", tmp_path, rounds=4)
    refused = 0
    for results in outcomes:
        committed = [r for r in results if "committed" in r]
        refused += len(results) - len(committed)
        assert committed, results  # never both refused: one commit wins
        for r in results:
            assert "committed" in r or "another writer changed it first" in r["refused"], r
    # the hour holds exactly one writer's rows: the last commit's, whole
    ids = hour_rows(lake_uri)
    writers = {i.rsplit("-", 1)[0] for i in ids}
    assert len(writers) == 1 and len(ids) == ROWS == len(set(ids)), writers
    last = outcomes[-1]
    winner = max((r for r in last if "committed" in r), key=lambda r: r["committed"])
    assert writers == {winner["writer"]}
    # every commit is one version; a refused writer left none (nothing half-written)
    dt = table.open_table(ObjectPath.from_uri(lake_uri))
    assert dt is not None
    assert dt.version() + 1 == sum(1 for results in outcomes for r in results if "committed" in r)
    print(f"overwrite race: {refused} of {2 * len(outcomes)} commits refused")


def test_two_writers_appending_to_one_hour_both_land(lake_uri: str, tmp_path: Path) -> None:
    outcomes = race(lake_uri, "append", tmp_path, rounds=2)
    assert all("committed" in r for results in outcomes for r in results), outcomes  # appends commute
    ids = hour_rows(lake_uri)
    assert len(ids) == len(set(ids)) == 4 * ROWS  # nothing lost, nothing twice
