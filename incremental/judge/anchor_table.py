"""The frozen anchor set as a Delta table, ``<lake>/anchor_set``, beside ``search_logs``.

Each freeze (or deliberate refresh) is one commit that makes the new anchor the table's only data
file (an overwrite: the previous anchor's file removed from the latest version, kept for time
travel); its ``custom_metadata`` says what it was (`event` freeze / refresh, the anchor's `sha256`,
the reason). The data file holds the anchor's deterministic Parquet bytes exactly as
`incremental.judge.anchor` encodes them, so the file's sha256 is the anchor's content hash (what
every model's forgetting is measured against, and the score cache's key), and `anchor.json`
records the table version that holds it. An outside reader needs nothing of this project:
``DeltaTable("<lake>/anchor_set").to_pyarrow_table()`` is the current anchor, ``version=n`` an
earlier one.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping

import pyarrow as pa
from deltalake import CommitProperties, Schema
from deltalake.exceptions import DeltaError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from incremental.data import storage, table
from incremental.data.storage import LakePath

TABLE = "anchor_set"


def uri(lake: LakePath) -> str:
    return table.uri(lake, TABLE)


def commit(lake: LakePath, data: bytes, rows: int, schema: pa.Schema, metadata: Mapping[str, str]) -> int:
    """Make `data` (an anchor's Parquet bytes, `rows` rows of `schema`) the table's only data file,
    in one commit with `metadata`; the table's new version."""
    name = f"anchor-{hashlib.sha256(data).hexdigest()[:16]}-{uuid.uuid4().hex[:12]}.parquet"
    storage.write_bytes(table.table_path(lake, TABLE) / name, data)  # in the table once the commit lists it
    add = AddAction(name, len(data), {}, int(time.time() * 1000), True, json.dumps({"numRecords": rows}))
    props = CommitProperties(custom_metadata=dict(metadata))
    with table.reading(uri(lake)):
        dt = table.open_table(lake, name=TABLE)
        if dt is None:
            try:
                create_table_with_add_actions(uri(lake), Schema.from_arrow(schema), [add], mode="error",
                                              storage_options=table.storage_options(lake), commit_properties=props,
                                              post_commithook_properties=table.HOOKS)
            except DeltaError:  # created meanwhile: replace what it holds
                dt = table.open_table(lake, name=TABLE)
                if dt is None:
                    raise
        if dt is not None:
            dt.create_write_transaction(list[AddAction | RemoveAction]([add]), mode="overwrite", schema=schema,
                                        commit_properties=props, post_commithook_properties=table.HOOKS)
    latest = table.open_table(lake, name=TABLE)
    assert latest is not None  # just written
    return latest.version()


def read_bytes(lake: LakePath, version: int) -> bytes | None:
    """The bytes of the anchor the table held at `version`; None when there is no table (or that
    version holds other than one file)."""
    dt = table.open_table(lake, version, name=TABLE)
    if dt is None:
        return None
    found = dt.file_uris()
    if len(found) != 1:
        return None
    return storage.read_bytes(storage.root(found[0]))


def stored(lake: LakePath, version: int | None, legacy: LakePath) -> tuple[str, bytes | None]:
    """Where an anchor's rows are, and their bytes (None: not there): the table at `version`, or
    (`version` None: an anchor frozen before the table) the file `legacy`."""
    if version is None:
        return str(legacy), storage.read_bytes(legacy) if storage.is_file(legacy) else None
    return f"{uri(lake)}@v{version}", read_bytes(lake, version)
