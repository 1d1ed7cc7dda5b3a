"""The files the pipeline keeps, one at a time: published atomically, read back checked.

Bytes, JSON and Parquet are published whole or not at all (`atomic_write_bytes`, `atomic_write_json`,
`write_parquet_atomic`: a temporary file, fsync and rename locally; one PUT on object storage, see
`incremental.data.storage`). A JSON object read back (`read_json`) is checked against the schema of
its kind, known by its file name: an hour's manifest of the lake's old format (`MANIFEST_FILE`,
`check_manifest`: read only by `incremental.data.migrate`) or an hour's validation record
(`VALIDATION_FILE`, `check_validation`); damage is a `DamagedStateError` naming the
file and what is wrong. A JSON-lines record (`read_jsonl`, `append_jsonl`) recovers a torn last line.
Where these files stand in the lake, and what they mean: `incremental.data.lake`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from incremental.data import storage
from incremental.data.storage import LakePath
from incremental.errors import DamagedStateError

MANIFEST_FILE = "_manifest.json"  # an hour's manifest in the lake's old format (`incremental.data.migrate`)
VALIDATION_FILE = "_validation.json"  # an hour's validation record: which parts are validated
PENDING_VALIDATION_FILE = "_validation.pending.json"  # one written before its commit (`quarantine.write_record`)

log = logging.getLogger(__name__)


def sha256_file(path: LakePath) -> str:
    return storage.sha256(path)


def atomic_write_bytes(path: LakePath, data: bytes) -> None:
    """Publish `data` at `path` atomically (temp file + fsync + rename locally; one PUT on S3)."""
    storage.write_bytes(path, data)


def atomic_write_json(path: LakePath, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: LakePath) -> dict[str, Any]:
    """A JSON object the pipeline keeps, checked against the schema of its kind (by file name: a
    manifest, a validation record; any other: an object). `DamagedStateError` naming the file and
    what is wrong when it is truncated, not JSON, or not its schema."""
    payload = _parse_json(path, storage.read_bytes(path))
    if not isinstance(payload, dict):
        raise DamagedStateError(f"{path} is damaged: a JSON object expected, found {_json_type(payload)}")
    problem = _SCHEMAS.get(path.name, lambda _: None)(payload)
    if problem:
        raise DamagedStateError(f"{path} is damaged: {problem}")
    return payload


def read_jsonl(path: LakePath, check: Callable[[Any], str | None] | None = None) -> list[dict[str, Any]]:
    """The records of a JSON-lines file ([] when there is none), each an object passing `check`
    (which returns what is wrong, or None).

    A torn *last* line (a crash in the middle of an append) is recovered by design: it is left out
    with a warning (`append_jsonl` moves it aside before the next line). A bad line anywhere else
    is damage: `DamagedStateError` naming the file, the line and what is wrong."""
    return _jsonl(path, check)[0]


def append_jsonl(path: LakePath, entry: Mapping[str, Any], check: Callable[[Any], str | None] | None = None) -> None:
    """Publish `path` with one line more (read, add, write: an object store has no append; the
    caller holds the lock). A torn last line is moved to `<name>.torn` (nothing is lost) so the
    new line starts on a line of its own; a bad line in the middle is refused (`read_jsonl`)."""
    _, lines, torn = _jsonl(path, check)
    if torn is not None:
        aside = path.parent / f"{path.name}.torn"
        before = storage.read_bytes(aside).decode(errors="replace") if storage.is_file(aside) else ""
        storage.write_bytes(aside, f"{before}{torn}\n".encode())
        log.warning("%s: its torn last line (a crash in the middle of an append) was moved to %s", path, aside)
    storage.write_bytes(path, "".join(f"{line}\n" for line in [*lines, json.dumps(entry, sort_keys=True, default=str)]).encode())


def _jsonl(path: LakePath, check: Callable[[Any], str | None] | None = None) -> tuple[
        list[dict[str, Any]], list[str], str | None]:
    """(records, their lines, the torn last line or None)."""
    if not storage.is_file(path):
        return [], [], None
    try:
        text = storage.read_bytes(path).decode()
    except UnicodeDecodeError as exc:
        raise DamagedStateError(f"{path} is damaged: not UTF-8 text (byte {exc.start})") from None
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    records: list[dict[str, Any]] = []
    lines: list[str] = []
    torn = None
    for i, (n, line) in enumerate(numbered):
        cut = False
        try:
            record = json.loads(line)
            problem = (f"a JSON object expected, found {_json_type(record)}" if not isinstance(record, dict)
                       else check(record) if check else None)
        except json.JSONDecodeError as exc:
            problem, cut = f"not valid JSON ({exc.msg}: column {exc.colno})", True
        if problem is None:
            records.append(record)
            lines.append(line)
        elif cut and i == len(numbered) - 1 and not text.endswith("\n"):
            torn = line  # the last append was cut short: recovered, not damage
            log.warning("%s: line %d is torn (a crash in the middle of an append); left out", path, n)
        else:
            raise DamagedStateError(f"{path} is damaged: line {n}: {problem}")
    return records, lines, torn


def _parse_json(path: LakePath, data: bytes) -> Any:
    if not data.strip():
        raise DamagedStateError(f"{path} is damaged: the file is empty")
    try:
        return json.loads(data)
    except UnicodeDecodeError as exc:
        raise DamagedStateError(f"{path} is damaged: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DamagedStateError(f"{path} is damaged: not valid JSON ({exc.msg}: line {exc.lineno} column "
                                f"{exc.colno}; truncated?)") from None


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _is_part_file(value: Any) -> bool:
    return isinstance(value, str) and value.endswith(".parquet") and "/" not in value and "\\" not in value \
        and not value.startswith(".")


def check_manifest(manifest: dict[str, Any]) -> str | None:
    """What is wrong with a manifest (None: nothing): its parts (file, rows, sha256 each), its identity."""
    if "parts" not in manifest:  # written before parts existed: one file
        if not _is_sha256(manifest.get("sha256")):
            return "no 'parts' and no 'sha256' of its file"
        return None
    parts = manifest["parts"]
    if not isinstance(parts, list):
        return f"'parts' must be a list, found {_json_type(parts)}"
    for i, part in enumerate(parts):
        if not isinstance(part, dict):
            return f"parts[{i}] must be an object, found {_json_type(part)}"
        if not _is_part_file(part.get("file")):
            return f"parts[{i}].file must be a Parquet file name in the hour's folder, found {part.get('file')!r}"
        if not _is_count(part.get("rows")):
            return f"parts[{i}].rows must be a count, found {part.get('rows')!r}"
        if not _is_sha256(part.get("sha256")):
            return f"parts[{i}].sha256 must be a sha256 (64 hex digits), found {part.get('sha256')!r}"
    if parts and not _is_sha256(manifest.get("sha256")):
        return f"'sha256' (the hour's identity) must be a sha256, found {manifest.get('sha256')!r}"
    for key in ("events", "identities"):
        if key in manifest and not (isinstance(manifest[key], list) and all(isinstance(e, dict) for e in manifest[key])):
            return f"'{key}' must be a list of objects"
    return None


def check_validation(record: dict[str, Any]) -> str | None:
    """What is wrong with a validation record (None: nothing): the parts it validated, its identity, its checks."""
    if "parts" in record and not (isinstance(record["parts"], list) and all(_is_part_file(p) for p in record["parts"])):
        return f"'parts' must be a list of Parquet file names, found {record['parts']!r:.200}"
    if "sha256" not in record or not (record["sha256"] is None or _is_sha256(record["sha256"])):
        return f"'sha256' must be the validated parts' sha256, found {record.get('sha256')!r}"
    checks = record.get("checks", [])
    fields = {"rule", "column", "severity", "success", "unexpected", "message"}
    if not isinstance(checks, list):
        return f"'checks' must be a list, found {_json_type(checks)}"
    for i, c in enumerate(checks):
        if not isinstance(c, dict) or set(c) != fields:
            return f"checks[{i}] must be an object with exactly {', '.join(sorted(fields))}"
    for key in ("rows", "live_rows", "bad_rows"):
        if record.get(key) is not None and not _is_count(record[key]):
            return f"'{key}' must be a count, found {record[key]!r}"
    return None


_SCHEMAS: dict[str, Callable[[dict[str, Any]], str | None]] = {MANIFEST_FILE: check_manifest,
                                                               VALIDATION_FILE: check_validation,
                                                               PENDING_VALIDATION_FILE: check_validation}


# deterministic Parquet: the same table gives the same bytes
_PARQUET: dict[str, Any] = {"compression": "zstd", "row_group_size": 256 * 1024, "write_statistics": True,
                            "store_schema": True}


def write_parquet_atomic(path: LakePath, table: pa.Table) -> None:
    """Deterministic Parquet, published atomically (see `storage.write_parquet`)."""
    storage.write_parquet(path, table.replace_schema_metadata(None), **_PARQUET)


def parquet_bytes(table: pa.Table) -> bytes:
    """The bytes `write_parquet_atomic` would write, in memory."""
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(None), sink, **_PARQUET)
    return bytes(sink.getvalue().to_pybytes())

