"""Move a store folder written by qdrant-client's local mode (the embedded store before Qdrant Edge) into
Qdrant Edge shards, without re-embedding: `python -m cli.migrate --from-local-mode`.

Every collection is copied point by point (vectors and payload as stored) into a staging folder beside
the old data, then checked: the same number of points and the same ids. Only when every collection is
copied and checked does the staging folder take its place, by one rename; the old files are then moved
into `local-mode-backup/` (delete it once the service answers as before). A run that is killed leaves
the old data untouched and in use; the next run goes on from the collections already checked.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client.http import models

from backend.adapters.edge_engine import SHARDS, EdgeEngine, EdgeFolderLockedError, is_local_mode_folder
from backend.adapters.store import PAYLOAD_INDEXES

log = logging.getLogger(__name__)

STAGING = ".edge-import"
BACKUP = "local-mode-backup"
_DONE = "imported.json"  # in the staging folder: the collections copied and checked so far


class LocalModeImportError(RuntimeError):
    """The copy does not match its source; nothing was switched over."""


@dataclass
class ImportedCollection:
    name: str
    points: int
    skipped: bool  # checked by an earlier, interrupted run


def _done(staging: Path) -> dict[str, int]:
    path = staging / _DONE
    return json.loads(path.read_text()) if path.is_file() else {}


def _mark_done(staging: Path, done: dict[str, int]) -> None:
    tmp = staging / (_DONE + ".tmp")
    tmp.write_text(json.dumps(done))
    os.replace(tmp, staging / _DONE)


def _ids(client: QdrantClient | EdgeEngine, name: str) -> set[str]:
    out: set[str] = set()
    offset: Any = None
    while True:
        points, offset = client.scroll(name, limit=5000, offset=offset, with_payload=False)
        out.update(str(p.id) for p in points)
        if offset is None:
            return out


def _copy(source: QdrantClient, target: EdgeEngine, name: str, batch: int) -> int:
    info = source.get_collection(name)
    target.create_collection(
        name,
        vectors_config=info.config.params.vectors,
        sparse_vectors_config=info.config.params.sparse_vectors,
        metadata=info.config.metadata,
    )
    if info.config.params.vectors:  # a chunk collection (the registry has no vectors): index what filters use
        for key, kind in PAYLOAD_INDEXES.items():
            target.create_payload_index(name, key, kind)
    copied = 0
    offset: Any = None
    while True:
        points, offset = source.scroll(name, limit=batch, offset=offset, with_payload=True, with_vectors=True)
        if points:
            target.upsert(name, [models.PointStruct(id=p.id, vector=p.vector or {}, payload=p.payload) for p in points])
            copied += len(points)
        if offset is None:
            return copied


def import_local_mode(
    path: Path,
    *,
    batch: int = 512,
    progress: Callable[[str, int], None] | None = None,
) -> list[ImportedCollection]:
    """Copy, check and switch over; returns what was copied (nothing when an earlier run had switched over
    already). Chunk collections get the store's payload indexes, so imported spaces filter as fast as new ones."""
    if (path / SHARDS).is_dir():
        if is_local_mode_folder(path):  # switched over by a run killed before it moved the old files aside
            _move_aside(path)
            return []
        raise LocalModeImportError(f"{path} already holds Qdrant Edge shards: there is nothing to import")
    if not is_local_mode_folder(path):
        raise LocalModeImportError(f"{path} holds no data of the old embedded store (no 'collection' folder)")
    staging = path / STAGING
    staging.mkdir(exist_ok=True)
    done = _done(staging)
    try:
        source = QdrantClient(path=str(path))  # locks the old folder: the service must be stopped
    except RuntimeError as exc:
        raise LocalModeImportError(
            f"{path} is open in another process ({exc}): stop the service, then run this again"
        ) from exc
    try:
        target = EdgeEngine(staging)
    except EdgeFolderLockedError as exc:
        source.close()
        raise LocalModeImportError(f"another import of {path} is running") from exc
    out: list[ImportedCollection] = []
    try:
        for name in sorted(c.name for c in source.get_collections().collections):
            if name in done and target.collection_exists(name):
                out.append(ImportedCollection(name, done[name], skipped=True))
                continue
            target.delete_collection(name)  # a copy cut short: start it again
            copied = _copy(source, target, name, batch)
            want = source.count(name, exact=True).count
            have = target.count(name).count
            if copied != want or have != want or _ids(source, name) != _ids(target, name):
                raise LocalModeImportError(
                    f"the copy of {name} does not match its source ({have} points copied, {want} in the "
                    f"source); the old data is untouched and still in use. Run the import again."
                )
            done[name] = have
            _mark_done(staging, done)
            out.append(ImportedCollection(name, have, skipped=False))
            log.info("imported %s: %d points", name, have)
            if progress is not None:
                progress(name, have)
    finally:
        target.close()
        source.close()
    # The switch: one rename makes the store open the shards; the old files go aside afterwards.
    os.replace(staging / SHARDS, path / SHARDS)
    _move_aside(path)
    return out


def _move_aside(path: Path) -> None:
    backup = path / BACKUP
    backup.mkdir(exist_ok=True)
    for old in ("collection", "meta.json", ".lock"):
        if (path / old).exists():
            os.replace(path / old, backup / old)
    shutil.rmtree(path / STAGING, ignore_errors=True)
