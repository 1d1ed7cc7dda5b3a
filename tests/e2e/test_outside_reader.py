"""An outside reader: a process that imports nothing of this project reads the lake's table with
`deltalake` alone (its SQL reader, as Spark, Trino, DuckDB or Polars would read through theirs) and
gets every hour's rows, by status, exactly as the project accounts for them.

Not `dt.to_pyarrow_dataset()`: with deltalake 1.6.6 and pyarrow 25 a process that read through it
aborts at exit (SIGABRT, "terminate called without an active exception") in most runs here, after
printing its answer; this test failed CI on it. The project reads the log's files with pyarrow's own
filesystem (`incremental.data.table.read_rows`), which does not."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, timedelta
from pathlib import Path

from incremental.config import load_settings
from incremental.data import lake, table
from incremental.data import quarantine as lake_quarantine
from incremental.data.extract import extract_hour, warehouse_count
from incremental.data.warehouse import Warehouse
from incremental.hours import HOUR, Hour, iso_hour
from incremental.sim.simulate import simulate
from incremental.validation.validate import validate_hour

T0 = Hour(2026, 8, 1, 0, tzinfo=UTC)
READER = r"""
import json, sys
from collections import Counter
import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder

dt = DeltaTable(sys.argv[1])
rows = pa.table(QueryBuilder().register("logs", dt).execute("SELECT hour, status, event_id FROM logs").read_all())
counts = Counter(zip(rows.column("hour").to_pylist(), rows.column("status").to_pylist()))
ours = sorted(m for m in sys.modules if m == "incremental" or m.startswith("incremental."))
print(json.dumps({"version": dt.version(), "counts": [[h, s, n] for (h, s), n in sorted(counts.items())],
                  "ids": sorted(rows.column("event_id").to_pylist()), "imported": ours}))
"""


def test_a_process_with_only_deltalake_reads_every_hour(tmp_path: Path) -> None:
    settings = load_settings({"INCREMENTAL_HOME": str(tmp_path / "var"), "INCREMENTAL_BASE_MODEL": "tiny"})
    warehouse = Warehouse(settings.warehouse_url)
    simulate(warehouse, T0, T0 + 2 * HOUR, rate=2000, seed=3)
    simulate(warehouse, T0 + 2 * HOUR, T0 + 3 * HOUR, rate=2000, seed=3, faults=["null_query"])
    hours = [T0 + timedelta(hours=k) for k in range(3)]
    for hour in hours:
        extract_hour(warehouse, settings.lake, hour)
        assert validate_hour(settings.lake, hour, settings.validation).status == "validated"

    # -I: isolated (no PYTHONPATH, no working directory on the path): this project cannot be imported
    out = subprocess.run([sys.executable, "-I", "-c", READER, table.uri(settings.lake)], capture_output=True,
                         text=True, check=True, cwd=tmp_path).stdout
    seen = json.loads(out)
    assert seen["imported"] == []
    assert seen["version"] == table.open_table(settings.lake).version()
    counts = {(h, s): n for h, s, n in seen["counts"]}
    for hour in hours:
        mine = lake_quarantine.row_counts(settings.lake, hour)
        assert counts.get((iso_hour(hour), "validated"), 0) == mine["validated"] > 0
        assert counts.get((iso_hour(hour), "quarantined"), 0) == mine["quarantined_rows"]
        assert mine["validated"] + mine["quarantined_rows"] == warehouse_count(warehouse, hour)  # every row
    assert counts[(iso_hour(hours[2]), "quarantined")] == 10  # the bad rows, beside the good ones
    dt = table.open_table(settings.lake)
    ours = sorted(i for h in hours for i in table.read_rows(dt, h, [table.VALIDATED, table.QUARANTINED])["event_id"].to_pylist())
    assert seen["ids"] == ours  # the very rows, not only their number
    assert sum(lake.partition(settings.lake, h).manifest["rows"] for h in hours) == len(ours) - 10
