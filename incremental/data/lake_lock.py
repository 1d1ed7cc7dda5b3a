"""The lake lock: one name, one holder, across every worker that reaches the lake.

Local lake: a file lock (`incremental.locks`: `filelock`, an `flock`) on
``<lake>/_locks/<name>.lock``. Object store: a create-only conditional PUT (``If-None-Match: *``)
of that object, a lease with an expiry; released by a delete conditional on its ETag, and an
expired lease (its holder died) is broken the same way, so two breakers cannot both win.
Re-entrant within a thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from incremental import locks
from incremental.data.storage import LOCKS_DIR, LakePath, ObjectPath, StoreError

LockTimeout = locks.LockTimeout  # another worker held the lake lock for longer than we were willing to wait


_held = threading.local()


def _s3_client() -> Any:  # pragma: no cover - exercised by the S3 lake test
    import boto3

    # boto3 reads AWS_ENDPOINT_URL, the credentials and the region from the environment
    return boto3.client("s3")


@contextlib.contextmanager
def lock(lake: LakePath, name: str, *, timeout: float = 600.0, lease: float = 900.0) -> Iterator[None]:
    """An exclusive lock named `name`, shared by every worker that reaches the lake; re-entrant
    within a thread. Local lake: a file lock on ``<lake>/_locks/<name>.lock``. Object store: a
    create-only conditional PUT of that object (a lease with an expiry; see the module docstring)."""
    held = _held.__dict__.setdefault("names", {})
    ident = (str(lake), name)
    if held.get(ident):
        held[ident] += 1
        try:
            yield
        finally:
            held[ident] -= 1
        return
    path = lake / LOCKS_DIR / f"{name}.lock"
    if isinstance(path, ObjectPath):
        cm = _object_lock(path, timeout, lease)
    else:
        cm = locks.hold(path, timeout, what="lake lock")
    with cm:
        held[ident] = 1
        try:
            yield
        finally:
            held.pop(ident, None)


@contextlib.contextmanager
def _object_lock(path: ObjectPath, timeout: float, lease: float) -> Iterator[None]:
    from botocore.exceptions import ClientError

    client = _s3_client()
    bucket, key_ = path.bucket, str(path.key).lstrip("/")
    deadline, wait = time.monotonic() + timeout, 0.05
    while True:
        now = datetime.now(UTC)
        body = json.dumps({"owner": f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
                           "acquired_at": now.isoformat(), "expires_at": (now + timedelta(seconds=lease)).isoformat()})
        try:
            etag = client.put_object(Bucket=bucket, Key=key_, Body=body.encode(), IfNoneMatch="*")["ETag"]
            break
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise StoreError(f"{path}: the lake lock cannot be taken ({code or exc})") from exc
        _break_if_expired(client, bucket, key_)
        if time.monotonic() > deadline:
            raise LockTimeout(f"lake lock {path} held by another worker for more than {timeout:g} s", path=str(path))
        time.sleep(wait)
        wait = min(wait * 2, 1.0)
    try:
        yield
    finally:
        with contextlib.suppress(ClientError):  # gone already (broken as expired): nothing to release
            client.delete_object(Bucket=bucket, Key=key_, IfMatch=etag)


def _break_if_expired(client: Any, bucket: str, key_: str) -> None:
    """Delete a lease past its expiry, conditional on its ETag (two breakers cannot both win)."""
    from botocore.exceptions import ClientError

    try:
        got = client.get_object(Bucket=bucket, Key=key_)
        record = json.loads(got["Body"].read())
        if datetime.fromisoformat(record["expires_at"]) < datetime.now(UTC):
            client.delete_object(Bucket=bucket, Key=key_, IfMatch=got["ETag"])
    except (ClientError, ValueError, KeyError):
        return
