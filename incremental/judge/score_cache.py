"""The per-anchor score cache: a model's scores on one frozen anchor, computed once.

Every hour's candidate is compared with the champion (and with the anchor's baseline version) on
the same frozen anchor; those models and the anchor do not change from hour to hour, so their
scores are read back from ``<lake>/anchor/scores/<anchor sha12>/v<key>.npy`` instead of computed
again. The key is the run that logged the model (`tracking.run_key`): the scores a candidate got
when it was evaluated are the ones its version is compared with once it is the champion.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import numpy as np

from incremental.data import files, storage
from incremental.data.storage import LakePath
from incremental.judge.anchor import ANCHOR_DIR, INFO_FILE

SCORES_DIR = "scores"
_VERSION = re.compile(r"^[A-Za-z0-9._-]+$")


def scores_path(lake_or_cache_dir: LakePath | str, model_version: str, anchor_sha: str) -> LakePath:
    """``<cache>/scores/<anchor_sha12>/v<version>.npy``; a lake root means ``<lake>/anchor``."""
    root = storage.root(lake_or_cache_dir)
    if storage.is_file(root / ANCHOR_DIR / INFO_FILE) or storage.is_dir(root / "search_logs"):
        root = root / ANCHOR_DIR
    version = str(model_version)
    version = version[1:] if version.startswith("v") and version[1:].isdigit() else version
    if not _VERSION.match(version) or version in (".", ".."):
        raise ValueError(f"model version {model_version!r} cannot name a cache file")
    if len(anchor_sha) < 12:
        raise ValueError("anchor_sha must be the anchor's sha256 (at least 12 hex digits)")
    return root / SCORES_DIR / anchor_sha[:12] / f"v{version}.npy"


def cached_scores(
    lake_or_cache_dir: LakePath | str,
    model_version: str,
    anchor_sha: str,
    compute: Callable[[], np.ndarray],
    rows: int | None = None,
) -> np.ndarray:
    """A model's scores on an anchor (a candidate's or a registered version's), computed once and kept.

    A finished run's model never changes, so (run, anchor hash) names the scores for good:
    `model_version` is `tracking.run_key` of the run that logged the model (`tracking.version_key`
    for a registered version), not the bare version number, which a recreated registry reuses.
    A candidate's scores, kept under its run when it is evaluated, are its version's once it is
    registered. The array is stored as float64 ``.npy`` (written atomically). With `rows`, a
    stored array of another length (or an unreadable file) is recomputed and a computed one of
    the wrong length raises.
    """
    path = scores_path(lake_or_cache_dir, model_version, anchor_sha)
    if storage.is_file(path):
        try:
            stored = np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False)
            if stored.ndim == 1 and (rows is None or stored.shape[0] == rows):
                return stored
        except (OSError, ValueError):
            pass  # a damaged file: recompute and overwrite
    result = np.asarray(compute(), dtype=np.float64).reshape(-1)
    if rows is not None and result.shape[0] != rows:
        raise ValueError(f"compute() returned {result.shape[0]} scores for an anchor of {rows} rows")
    buffer = io.BytesIO()
    np.save(buffer, result, allow_pickle=False)
    files.atomic_write_bytes(path, buffer.getvalue())
    return result
