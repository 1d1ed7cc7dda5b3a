"""Apache Iceberg (pyiceberg, SQL catalog) against Delta Lake (deltalake / delta-rs) for the lake's tables.

Standalone: imports nothing from `incremental`, needs its own environment (pyiceberg[sql-sqlite,pyarrow,s3fs],
sqlalchemy, psycopg2-binary, deltalake, pyarrow, duckdb, moto[server], boto3), e.g.

    python3 -m venv /tmp/lakevenv && /tmp/lakevenv/bin/pip install 'pyiceberg[sql-sqlite,pyarrow,s3fs]' \
        sqlalchemy psycopg2-binary deltalake pyarrow duckdb 'moto[server]' boto3
    nice -n 10 /tmp/lakevenv/bin/python benchmarks/lake_format_bench.py            # 1M-row hour
    /tmp/lakevenv/bin/python benchmarks/lake_format_bench.py --rows 50000 --rounds 3 --no-record   # quick

Each format on a local folder and on an s3:// bucket served by moto's standalone server (in its own
process, so it does not share the GIL with the writer being timed). Iceberg's catalog is SQL: SQLite in
a file (the embedded default) and, when `--postgres` answers, PostgreSQL (the production catalog).
Delta's commits on S3 are delta-rs 1.x's default: a create-only conditional PUT (`If-None-Match: *`) of
`_delta_log/<version>.json`; no DynamoDB, no unsafe rename.

Measured: 1. write + filtered read of one hour against `pyarrow.parquet.write_table` (today's lake);
2. idempotent re-extraction (compare, then commit nothing / append only the late rows);
3. a quarantine as one commit (one `rows` table with a `status` column);
4. two OS processes racing on one hour (append and overwrite), N rounds, per store;
5. time travel, byte-identical (sha256 of a canonical sorted Arrow IPC dump);
6. an outside reader: DuckDB (its iceberg/delta extensions, and through Arrow).
Results: `benchmarks/results/lake_format.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

RESULTS = Path(__file__).resolve().parent / "results"
BUCKET = "lake-bench"
KEY, SECRET, REGION = "testing", "testing", "us-east-1"
HOUR = datetime(2026, 1, 1, 10, tzinfo=UTC)
SCHEMA = pa.schema(
    [
        pa.field("impression_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("query", pa.string()),
        pa.field("product_id", pa.string()),
        pa.field("title", pa.string()),
        pa.field("category", pa.string()),
        pa.field("position", pa.int32()),
        pa.field("clicked", pa.bool_()),
        pa.field("event_time", pa.timestamp("us", tz="UTC")),
        pa.field("hour", pa.timestamp("us", tz="UTC")),
    ]
)
ROWS_SCHEMA = SCHEMA.append(pa.field("status", pa.string())).append(pa.field("quarantine_reason", pa.string()))
PARQUET_OPTIONS = {"compression": "zstd", "row_group_size": 256 * 1024}  # what incremental/data/lake.py writes


# ----------------------------------------------------------------------------------------------- data
def search_log(n: int, hour: datetime = HOUR, prefix: str = "imp", seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)

    def vocab(name: str, size: int) -> pa.Array:
        return pa.array([f"{name}-{i:06d}" for i in range(size)])

    def pick(values: pa.Array) -> pa.Array:
        return values.take(pa.array(rng.integers(0, len(values), n)))

    start_us = int(hour.timestamp() * 1_000_000)
    return pa.table(
        [
            pa.array([f"{prefix}-{i:09d}" for i in range(n)]),
            pick(vocab("session", max(n // 8, 1))),
            pick(vocab("query words", 5000)),
            pick(vocab("product", 50000)),
            pick(vocab("a product title with several words", 20000)),
            pick(vocab("category", 50)),
            pa.array(rng.integers(1, 49, n), pa.int32()),
            pa.array(rng.random(n) < 0.08),
            pa.array(start_us + rng.integers(0, 3_600_000_000, n), pa.timestamp("us", tz="UTC")),
            pa.array(np.full(n, start_us), pa.timestamp("us", tz="UTC")),
        ],
        schema=SCHEMA,
    )


def canonical_sha(table: pa.Table, schema: pa.Schema) -> str:
    """sha256 of the rows in a canonical form: the contract's column order and types, sorted by
    impression_id, written as one Arrow IPC stream (so string/large_string/string_view reads compare)."""
    t = table.select(schema.names)
    t = pa.table([pc.cast(t[c], schema.field(c).type) for c in schema.names], schema=schema)
    t = t.sort_by([("impression_id", "ascending")]).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as w:
        w.write_table(t)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


# ------------------------------------------------------------------------------------------- stores
class Store:
    """One place to put tables: a local folder or the moto bucket, with each library's settings."""

    def __init__(self, kind: str, root: str, endpoint: str | None = None, catalog_uri: str | None = None):
        self.kind, self.root, self.endpoint = kind, root.rstrip("/"), endpoint
        self.catalog_uri = catalog_uri

    def spec(self) -> dict:
        return {"kind": self.kind, "root": self.root, "endpoint": self.endpoint, "catalog_uri": self.catalog_uri}

    @property
    def delta_options(self) -> dict[str, str] | None:
        if self.kind == "local":
            return None
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_ALLOW_HTTP": "true",
        }

    def catalog(self, name: str = "lakebench"):
        from pyiceberg.catalog.sql import SqlCatalog

        props = {"uri": self.catalog_uri, "warehouse": self.root if self.kind == "s3" else f"file://{self.root}"}
        if self.kind == "s3":
            props |= {
                "s3.endpoint": self.endpoint,
                "s3.access-key-id": KEY,
                "s3.secret-access-key": SECRET,
                "s3.region": REGION,
            }
        return SqlCatalog(name, **props)

    def pa_fs(self) -> tuple[pafs.FileSystem, str]:
        if self.kind == "local":
            return pafs.LocalFileSystem(), self.root
        host = self.endpoint.split("://", 1)[1]
        return (
            pafs.S3FileSystem(endpoint_override=host, scheme="http", access_key=KEY, secret_key=SECRET, region=REGION),
            self.root.removeprefix("s3://"),
        )


def iceberg_table(store: Store, name: str, schema: pa.Schema = SCHEMA):
    cat = store.catalog()
    with contextlib.suppress(Exception):
        cat.create_namespace("lake")
    with contextlib.suppress(Exception):
        cat.drop_table(f"lake.{name}")
    tbl = cat.create_table(
        f"lake.{name}",
        schema=schema,
        location=f"{store.root if store.kind == 's3' else 'file://' + store.root}/iceberg/{name}",
        properties={"write.parquet.compression-codec": "zstd"},
    )
    with tbl.update_spec() as spec:
        spec.add_identity("hour")
    return cat.load_table(f"lake.{name}")


def hour_filter_iceberg(hour: datetime = HOUR):
    from pyiceberg.expressions import EqualTo

    return EqualTo("hour", hour.isoformat())


def hour_predicate_delta(hour: datetime = HOUR) -> str:
    return f"hour = '{hour.strftime('%Y-%m-%dT%H:%M:%SZ')}'"


def delta_writer_properties():
    from deltalake import WriterProperties

    return WriterProperties(compression="ZSTD")


def delta_uri(store: Store, name: str) -> str:
    return f"{store.root}/delta/{name}"


def delta_read_hour(uri: str, store: Store, version_: int | None = None) -> pa.Table:
    from deltalake import DeltaTable

    dt = DeltaTable(uri, version=version_, storage_options=store.delta_options)
    return dt.to_pyarrow_table(filters=[("hour", "=", HOUR)])


def timed(fn) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return round(time.perf_counter() - t0, 3), out


# ------------------------------------------------------------------------------------ 1. write speed
def bench_write(store: Store, table: pa.Table, repeats: int, label: str) -> dict:
    from deltalake import write_deltalake

    fs, base = store.pa_fs()
    out: dict[str, Any] = {}
    runs: dict[str, list] = {
        "parquet_write": [],
        "parquet_read": [],
        "iceberg_append": [],
        "iceberg_read_hour": [],
        "delta_append": [],
        "delta_read_hour": [],
    }
    for r in range(repeats):
        path = f"{base}/parquet/run{r}/part-0.parquet"
        if store.kind == "local":
            os.makedirs(os.path.dirname(path), exist_ok=True)
        s, _ = timed(lambda path=path: pq.write_table(table, path, filesystem=fs, **PARQUET_OPTIONS))
        runs["parquet_write"].append(s)
        s, back = timed(lambda path=path: pq.read_table(path, filesystem=fs))
        assert back.num_rows == table.num_rows
        runs["parquet_read"].append(s)

        tbl = iceberg_table(store, f"speed{r}")
        s, _ = timed(lambda tbl=tbl: tbl.append(table))
        runs["iceberg_append"].append(s)
        s, back = timed(
            lambda r=r: store.catalog().load_table(f"lake.speed{r}").scan(row_filter=hour_filter_iceberg()).to_arrow()
        )
        assert back.num_rows == table.num_rows
        runs["iceberg_read_hour"].append(s)

        uri = delta_uri(store, f"speed{r}")
        s, _ = timed(
            lambda uri=uri: write_deltalake(
                uri,
                table,
                partition_by=["hour"],
                mode="append",
                writer_properties=delta_writer_properties(),
                storage_options=store.delta_options,
            )
        )
        runs["delta_append"].append(s)
        s, back = timed(lambda uri=uri: delta_read_hour(uri, store))
        assert back.num_rows == table.num_rows
        runs["delta_read_hour"].append(s)
        print(f"  [{label}] run {r}: " + ", ".join(f"{k}={v[-1]}" for k, v in runs.items()), flush=True)
    out |= speed_ratios(runs)
    out["parquet_bytes"] = fs.get_file_info(f"{base}/parquet/run0/part-0.parquet").size
    return out


def speed_ratios(runs: dict[str, list[float]]) -> dict:
    """Best and median seconds of each step, and the format's speed as a ratio of plain Parquet's
    (>1: faster than today's `write_table`; the issue's goal for extraction is >= 0.8)."""
    out: dict[str, Any] = {"all_runs_seconds": runs}
    for stat, f in (("best", min), ("median", lambda v: float(np.median(v)))):
        sec = {k: round(f(v), 3) for k, v in runs.items()}
        out[f"seconds_{stat}"] = sec
        out[f"write_speed_ratio_vs_parquet_{stat}"] = {
            fmt: round(sec["parquet_write"] / sec[f"{fmt}_append"], 3) for fmt in ("iceberg", "delta")
        }
        out[f"read_speed_ratio_vs_parquet_{stat}"] = {
            fmt: round(sec["parquet_read"] / sec[f"{fmt}_read_hour"], 3) for fmt in ("iceberg", "delta")
        }
    return out


# ---------------------------------------------------------------- 2. + 3. re-extraction, quarantine
def with_status(t: pa.Table, status: str, reason: str | None = None) -> pa.Table:
    n = t.num_rows
    return t.append_column("status", pa.array([status] * n)).append_column(
        "quarantine_reason", pa.array([reason] * n, pa.string())
    )


def bench_semantics_iceberg(store: Store, n: int) -> dict:
    out: dict[str, Any] = {}
    rows = with_status(search_log(n, seed=1), "extracted")
    tbl = iceberg_table(store, "rows_sem", ROWS_SCHEMA)
    tbl.append(rows)
    tbl = store.catalog().load_table("lake.rows_sem")
    first_snapshot = tbl.current_snapshot().snapshot_id
    n_snap = lambda: len(store.catalog().load_table("lake.rows_sem").snapshots())  # noqa: E731
    n_meta = lambda: len(store.catalog().load_table("lake.rows_sem").metadata.metadata_log)  # noqa: E731

    # 2a. re-extraction with nothing new: compare first, commit nothing
    before = (n_snap(), n_meta())
    current = tbl.scan(row_filter=hour_filter_iceberg()).to_arrow()
    same = canonical_sha(current, ROWS_SCHEMA) == canonical_sha(rows, ROWS_SCHEMA)
    if not same:
        tbl.overwrite(rows, overwrite_filter=hour_filter_iceberg())
    out["rerun_unchanged_compare_first"] = {
        "content_equal": same,
        "snapshots_added": n_snap() - before[0],
        "catalog_commits_added": n_meta() - before[1],
    }
    # 2b. the same re-run without comparing: an overwrite of identical content still commits
    before = (n_snap(), n_meta())
    s, _ = timed(
        lambda: store.catalog().load_table("lake.rows_sem").overwrite(rows, overwrite_filter=hour_filter_iceberg())
    )
    out["rerun_unchanged_blind_overwrite"] = {
        "snapshots_added": n_snap() - before[0],
        "catalog_commits_added": n_meta() - before[1],
        "seconds": s,
    }
    # 2c. late rows: an append of only the rows not there yet (difference on impression_id)
    late = with_status(search_log(n // 20, prefix="late", seed=2), "extracted")
    wanted = pa.concat_tables([rows, late])
    tbl = store.catalog().load_table("lake.rows_sem")
    have = set(
        tbl.scan(row_filter=hour_filter_iceberg(), selected_fields=("impression_id",))
        .to_arrow()["impression_id"]
        .to_pylist()
    )
    new = wanted.filter(pa.array([i not in have for i in wanted["impression_id"].to_pylist()]))
    before = (n_snap(), n_meta())
    tbl.append(
        new, snapshot_properties={"lake.hour": HOUR.isoformat(), "lake.rows-sha256": canonical_sha(wanted, ROWS_SCHEMA)}
    )
    ops = [s.summary.operation.value for s in store.catalog().load_table("lake.rows_sem").snapshots()[before[0] :]]
    out["late_rows_append"] = {
        "rows_appended": new.num_rows,
        "snapshots_added": n_snap() - before[0],
        "catalog_commits_added": n_meta() - before[1],
        "operations": ops,
    }
    after_late_snapshot = store.catalog().load_table("lake.rows_sem").current_snapshot().snapshot_id

    # 3. validation/quarantine as one overwrite of the hour's partition in the single `rows` table
    tbl = store.catalog().load_table("lake.rows_sem")
    hour_rows = tbl.scan(row_filter=hour_filter_iceberg()).to_arrow()
    bad = pc.equal(hour_rows["position"], 7)
    validated = with_status(hour_rows.filter(pc.invert(bad)).select(SCHEMA.names), "validated")
    quarantined = with_status(hour_rows.filter(bad).select(SCHEMA.names), "quarantined", "position_is_7")
    before = (n_snap(), n_meta())
    tbl.overwrite(pa.concat_tables([validated, quarantined]), overwrite_filter=hour_filter_iceberg())
    tbl = store.catalog().load_table("lake.rows_sem")
    ops = [s.summary.operation.value for s in tbl.snapshots()[before[0] :]]
    counts = (
        tbl.scan(row_filter=hour_filter_iceberg())
        .to_arrow()
        .group_by("status")
        .aggregate([("impression_id", "count")])
        .to_pylist()
    )
    out["quarantine_one_overwrite"] = {
        "snapshots_added": n_snap() - before[0],
        "catalog_commits_added": n_meta() - before[1],
        "operations": ops,
        "status_counts": counts,
        "rows_conserved": sum(c["impression_id_count"] for c in counts) == wanted.num_rows,
    }
    # 5. time travel: the first snapshot and the one after the late rows, byte-identical
    t_first = tbl.scan(snapshot_id=first_snapshot).to_arrow()
    t_late = tbl.scan(snapshot_id=after_late_snapshot).to_arrow()
    out["time_travel"] = {
        "first_snapshot_identical": canonical_sha(t_first, ROWS_SCHEMA) == canonical_sha(rows, ROWS_SCHEMA),
        "after_late_rows_identical": canonical_sha(t_late, ROWS_SCHEMA) == canonical_sha(wanted, ROWS_SCHEMA),
        "snapshots_in_history": len(tbl.snapshots()),
    }
    return out


def bench_semantics_delta(store: Store, n: int) -> dict:
    from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

    out: dict[str, Any] = {}
    uri = delta_uri(store, "rows_sem")
    opts = store.delta_options
    rows = with_status(search_log(n, seed=1), "extracted")
    write_deltalake(
        uri,
        rows,
        partition_by=["hour"],
        mode="append",
        writer_properties=delta_writer_properties(),
        storage_options=opts,
    )
    ver = lambda: DeltaTable(uri, storage_options=opts).version()  # noqa: E731
    first_version = ver()

    before = ver()
    current = delta_read_hour(uri, store)
    same = canonical_sha(current, ROWS_SCHEMA) == canonical_sha(rows, ROWS_SCHEMA)
    if not same:
        write_deltalake(uri, rows, mode="overwrite", predicate=hour_predicate_delta(), storage_options=opts)
    out["rerun_unchanged_compare_first"] = {"content_equal": same, "versions_added": ver() - before}
    before = ver()
    s, _ = timed(
        lambda: write_deltalake(
            uri,
            rows,
            mode="overwrite",
            predicate=hour_predicate_delta(),
            writer_properties=delta_writer_properties(),
            storage_options=opts,
        )
    )
    out["rerun_unchanged_blind_overwrite"] = {"versions_added": ver() - before, "seconds": s}

    late = with_status(search_log(n // 20, prefix="late", seed=2), "extracted")
    wanted = pa.concat_tables([rows, late])
    have = set(
        DeltaTable(uri, storage_options=opts)
        .to_pyarrow_table(columns=["impression_id"], filters=[("hour", "=", HOUR)])["impression_id"]
        .to_pylist()
    )
    new = wanted.filter(pa.array([i not in have for i in wanted["impression_id"].to_pylist()]))
    before = ver()
    app_id = f"extract-{HOUR:%Y-%m-%dT%H}"
    write_deltalake(
        uri,
        new,
        mode="append",
        writer_properties=delta_writer_properties(),
        storage_options=opts,
        commit_properties=CommitProperties(
            custom_metadata={"lake.rows-sha256": canonical_sha(wanted, ROWS_SCHEMA)},
            app_transactions=[Transaction(app_id=app_id, version=2)],
        ),
    )
    dt = DeltaTable(uri, storage_options=opts)
    out["late_rows_append"] = {
        "rows_appended": new.num_rows,
        "versions_added": ver() - before,
        "operation": dt.history(1)[0]["operation"],
        "app_transaction_version_recorded": dt.transaction_version(app_id),
    }
    after_late_version = ver()

    hour_rows = delta_read_hour(uri, store)
    bad = pc.equal(hour_rows["position"], 7)
    validated = with_status(hour_rows.filter(pc.invert(bad)).select(SCHEMA.names), "validated")
    quarantined = with_status(hour_rows.filter(bad).select(SCHEMA.names), "quarantined", "position_is_7")
    before = ver()
    write_deltalake(
        uri,
        pa.concat_tables([validated, quarantined]),
        mode="overwrite",
        predicate=hour_predicate_delta(),
        writer_properties=delta_writer_properties(),
        storage_options=opts,
    )
    counts = delta_read_hour(uri, store).group_by("status").aggregate([("impression_id", "count")]).to_pylist()
    out["quarantine_one_overwrite"] = {
        "versions_added": ver() - before,
        "status_counts": counts,
        "rows_conserved": sum(c["impression_id_count"] for c in counts) == wanted.num_rows,
    }
    t_first = delta_read_hour(uri, store, first_version)
    t_late = delta_read_hour(uri, store, after_late_version)
    out["time_travel"] = {
        "first_version_identical": canonical_sha(t_first, ROWS_SCHEMA) == canonical_sha(rows, ROWS_SCHEMA),
        "after_late_rows_identical": canonical_sha(t_late, ROWS_SCHEMA) == canonical_sha(wanted, ROWS_SCHEMA),
        "versions_in_history": len(DeltaTable(uri, storage_options=opts).history()),
    }
    return out


# ------------------------------------------------------------------------------------ 4. concurrency
def worker(fmt: str, spec: dict, table: str, mode: str, who: int, n: int) -> None:
    """A writer in its own OS process: on each `go <round>` line, append (or overwrite) the hour with
    its own rows, then print what happened as one JSON line."""
    import logging

    store = Store(**spec)
    retries = []

    class CountRetries(logging.Handler):  # pyiceberg logs each optimistic retry of a commit
        def emit(self, record: logging.LogRecord) -> None:
            if "retrying" in record.getMessage():
                retries.append(1)

    logging.getLogger("pyiceberg").addHandler(CountRetries())
    print(json.dumps({"ready": who}), flush=True)
    for line in sys.stdin:
        rnd = int(line.split()[1])
        data = search_log(n, prefix=f"w{who}-r{rnd:02d}", seed=rnd * 10 + who)
        retries.clear()
        t0, wall0 = time.perf_counter(), time.time()
        try:
            if fmt == "iceberg":
                tbl = store.catalog().load_table(f"lake.{table}")
                if mode == "append":
                    tbl.append(data)
                else:
                    tbl.overwrite(data, overwrite_filter=hour_filter_iceberg())
            else:
                from deltalake import write_deltalake

                uri = delta_uri(store, table)
                if mode == "append":
                    write_deltalake(uri, data, mode="append", storage_options=store.delta_options)
                else:
                    write_deltalake(
                        uri,
                        data,
                        mode="overwrite",
                        predicate=hour_predicate_delta(),
                        storage_options=store.delta_options,
                    )
            res = {"ok": True}
        except Exception as exc:  # what the loser sees
            res = {"ok": False, "error": f"{type(exc).__module__}.{type(exc).__name__}", "message": str(exc)[:200]}
        res |= {
            "seconds": round(time.perf_counter() - t0, 3),
            "start": wall0,
            "end": time.time(),
            "retries": len(retries),
        }
        print(json.dumps(res), flush=True)


def bench_race(fmt: str, store: Store, mode: str, rounds: int, n: int) -> dict:
    from deltalake import DeltaTable, write_deltalake

    table = f"race_{mode}"
    seed = search_log(n, prefix="seed", seed=99)
    if fmt == "iceberg":
        iceberg_table(store, table).append(seed)
    else:
        write_deltalake(
            delta_uri(store, table), seed, partition_by=["hour"], mode="overwrite", storage_options=store.delta_options
        )

    def read_hour() -> pa.Table:
        if fmt == "iceberg":
            return store.catalog().load_table(f"lake.{table}").scan(row_filter=hour_filter_iceberg()).to_arrow()
        return DeltaTable(delta_uri(store, table), storage_options=store.delta_options).to_pyarrow_table(
            filters=[("hour", "=", HOUR)]
        )

    cmd = [sys.executable, __file__, "--worker", fmt, json.dumps(store.spec()), table, mode]
    procs = [
        subprocess.Popen(cmd + [str(w), str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        for w in (0, 1)
    ]
    tally = {
        "rounds": rounds,
        "both_committed": 0,
        "one_refused": 0,
        "both_refused": 0,
        "lost_writes": 0,
        "bad_states": 0,
        "overlapping_rounds": 0,
        "client_retries": 0,
        "errors": {},
        "loser_messages": [],
        "round_seconds": [],
    }
    try:
        for p in procs:
            assert json.loads(p.stdout.readline())["ready"] in (0, 1)
        for rnd in range(rounds):
            t0 = time.perf_counter()
            for p in procs:
                p.stdin.write(f"go {rnd}\n")
                p.stdin.flush()
            res = [json.loads(p.stdout.readline()) for p in procs]
            tally["round_seconds"].append(round(time.perf_counter() - t0, 3))
            tally["overlapping_rounds"] += max(r["start"] for r in res) < min(r["end"] for r in res)
            tally["client_retries"] += sum(r["retries"] for r in res)
            ids = read_hour()["impression_id"].to_pylist()
            mine = [sum(1 for i in ids if i.startswith(f"w{w}-r{rnd:02d}-")) for w in (0, 1)]
            oks = [r["ok"] for r in res]
            tally["both_committed" if all(oks) else "both_refused" if not any(oks) else "one_refused"] += 1
            for w, r in enumerate(res):
                if r["ok"] and mode == "append" and mine[w] != n:
                    tally["lost_writes"] += 1  # reported committed, rows not (all) there
                if not r["ok"]:
                    tally["errors"][r["error"]] = tally["errors"].get(r["error"], 0) + 1
                    if len(tally["loser_messages"]) < 2:
                        tally["loser_messages"].append(r["message"])
                    if mine[w] and mode == "append":
                        tally["bad_states"] += 1  # refused, yet its rows are there
            if mode == "overwrite":
                # the hour must be exactly one committed writer's rows: no mixture, nothing doubled
                winners = [w for w in (0, 1) if mine[w] == n]
                if len(ids) != n or len(winners) != 1 or not res[winners[0]]["ok"]:
                    tally["bad_states"] += 1
        if fmt == "delta":  # delta-rs records its own commit retries in the log
            hist = DeltaTable(delta_uri(store, table), storage_options=store.delta_options).history()
            tally["client_retries"] = sum(int((h.get("operationMetrics") or {}).get("num_retries", 0)) for h in hist)
        return tally
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=60)


# ----------------------------------------------------------------------------------- 6. outside reader
def bench_outside_reader(store: Store) -> dict:
    import duckdb
    from deltalake import DeltaTable

    out: dict[str, Any] = {}
    con = duckdb.connect()
    for ext in ("iceberg", "delta"):
        try:
            con.execute(f"INSTALL {ext}; LOAD {ext};")
            out[f"duckdb_{ext}_extension"] = "loaded"
        except Exception as exc:
            out[f"duckdb_{ext}_extension"] = f"unavailable: {type(exc).__name__}: {str(exc)[:120]}"
    where = f"hour = TIMESTAMPTZ '{HOUR.isoformat()}'"
    # Iceberg: the library plans the scan (snapshot -> manifests -> files), DuckDB queries the Arrow
    tbl = store.catalog().load_table("lake.rows_sem")
    con.register("arrow_tbl", tbl.scan(row_filter=hour_filter_iceberg()).to_arrow())
    s, n = timed(lambda: con.execute(f"SELECT count(*) FROM arrow_tbl WHERE {where}").fetchall()[0][0])
    out["iceberg_duckdb_over_scan_to_arrow"] = {"rows": n, "seconds": s}
    files = [t.file.file_path for t in tbl.scan(row_filter=hour_filter_iceberg()).plan_files()]
    out["iceberg_data_files_planned"] = len(files)
    # Delta: the library resolves the log to a pyarrow dataset, DuckDB scans it lazily (filter pushed down)
    dt = DeltaTable(delta_uri(store, "rows_sem"), storage_options=store.delta_options)
    con.register("ds", dt.to_pyarrow_dataset())
    s, n = timed(lambda: con.execute(f"SELECT count(*) FROM ds WHERE {where}").fetchall()[0][0])
    out["delta_duckdb_over_to_pyarrow_dataset"] = {"rows": n, "seconds": s}
    out["delta_live_files"] = len(dt.file_uris())
    if store.kind == "local":
        # plain Parquet on the live file list, the way an engine without a table-format reader would do
        n_ice = con.execute(
            "SELECT count(*) FROM read_parquet(?)", [[f.removeprefix("file://") for f in files]]
        ).fetchall()[0][0]
        n_delta = con.execute("SELECT count(*) FROM read_parquet(?)", [dt.file_uris()]).fetchall()[0][0]
        out["duckdb_read_parquet_on_live_file_list"] = {"iceberg_rows": n_ice, "delta_rows": n_delta}
    return out


# ----------------------------------------------------------------------------------------- plumbing
@contextlib.contextmanager
def moto_server():
    code = (
        "from moto.server import ThreadedMotoServer; import time,sys; s=ThreadedMotoServer(ip_address='127.0.0.1', port=0);"
        " s.start(); print('PORT', s.get_host_and_port()[1], flush=True); time.sleep(1e6)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = ""
        while not line.startswith("PORT"):
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("moto server did not start")
        port = int(line.split()[1])
        endpoint = f"http://127.0.0.1:{port}"
        os.environ |= {
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ALLOW_HTTP": "true",
        }
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET)
        probe = {}
        s3.put_object(Bucket=BUCKET, Key="_probe", Body=b"1", IfNoneMatch="*")
        for what, kw in (("if_none_match_star", {"IfNoneMatch": "*"}), ("if_match_wrong_etag", {"IfMatch": '"0"'})):
            try:
                s3.put_object(Bucket=BUCKET, Key="_probe", Body=b"2", **kw)
                probe[what] = "ignored (overwrote)"
            except Exception as exc:
                probe[what] = (
                    f"refused: {getattr(exc, 'response', {}).get('Error', {}).get('Code', type(exc).__name__)}"
                )
        yield endpoint, probe
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def postgres_catalog_uri(url: str) -> str | None:
    """A database of its own on the PostgreSQL server (dropped and created afresh), or None."""
    import sqlalchemy as sa

    try:
        admin = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sa.text("DROP DATABASE IF EXISTS lake_format_bench"))
            c.execute(sa.text("CREATE DATABASE lake_format_bench"))
        admin.dispose()
        return url.replace("postgresql://", "postgresql+psycopg2://").rsplit("/", 1)[0] + "/lake_format_bench"
    except Exception as exc:
        print(f"no PostgreSQL catalog: {exc}", file=sys.stderr)
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in the timed hour")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs on the local store (best kept); S3 runs once")
    ap.add_argument("--semantic-rows", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=10, help="rounds of the two-process race")
    ap.add_argument("--race-rows", type=int, default=300)
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        fmt, spec, table, mode, who, n = args.worker
        return worker(fmt, json.loads(spec), table, mode, int(who), int(n))

    work = Path(tempfile.mkdtemp(prefix="lakebench-"))
    res: dict[str, Any] = {
        "benchmark": "lake_format",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": {p: version(p) for p in ("pyiceberg", "deltalake", "pyarrow", "duckdb", "moto", "sqlalchemy")},
        "rows": args.rows,
    }
    try:
        with moto_server() as (endpoint, probe):
            res["moto_conditional_put"] = probe
            pg = postgres_catalog_uri(args.postgres)
            stores = {
                "local": Store("local", str(work / "local"), catalog_uri=f"sqlite:///{work}/catalog.db"),
                "s3": Store("s3", f"s3://{BUCKET}/lake", endpoint, catalog_uri=f"sqlite:///{work}/catalog-s3.db"),
            }
            if pg:
                stores["s3_pg"] = Store("s3", f"s3://{BUCKET}/lake-pg", endpoint, catalog_uri=pg)
            (work / "local").mkdir()

            print(f"generating {args.rows} rows", flush=True)
            big = search_log(args.rows)
            res["write_read_1M" if args.rows == 1_000_000 else "write_read"] = speed = {}
            speed["local"] = bench_write(stores["local"], big, args.repeats, "local")
            speed["s3_moto"] = bench_write(stores["s3"], big, 1, "s3")
            if pg:
                cat_s3pg = stores["s3_pg"]
                tbl = iceberg_table(cat_s3pg, "speed_pg")
                s, _ = timed(lambda: tbl.append(big))
                speed["s3_moto"]["iceberg_append_postgres_catalog_seconds"] = s

            res["semantics"] = {}
            for name in ("local", "s3"):
                print(f"semantics on {name}", flush=True)
                res["semantics"][name] = {
                    "iceberg": bench_semantics_iceberg(stores[name], args.semantic_rows),
                    "delta": bench_semantics_delta(stores[name], args.semantic_rows),
                }

            res["outside_reader"] = {name: bench_outside_reader(stores[name]) for name in ("local", "s3")}

            res["race"] = {}
            plan = [
                ("iceberg", "local", "sqlite catalog, local warehouse"),
                ("iceberg", "s3", "sqlite catalog (one machine only), s3 warehouse"),
                ("delta", "local", "local folder"),
                ("delta", "s3", "s3, conditional PUT of the log entry"),
            ]
            if pg:
                plan.insert(2, ("iceberg", "s3_pg", "postgresql catalog, s3 warehouse"))
            for fmt, name, what in plan:
                for mode in ("append", "overwrite"):
                    print(f"race {fmt} {name} {mode}", flush=True)
                    r = bench_race(fmt, stores[name], mode, args.rounds, args.race_rows)
                    r["setup"] = what
                    res["race"][f"{fmt}/{name}/{mode}"] = r
                    print(
                        "   ", {k: v for k, v in r.items() if k not in ("loser_messages", "round_seconds")}, flush=True
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(res, indent=2, default=str) + "\n"
    print(text)
    if not args.no_record:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "lake_format.json").write_text(text)


if __name__ == "__main__":
    main()
