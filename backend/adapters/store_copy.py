"""Copy every collection of the service between the embedded store and a Qdrant server, without re-embedding.

`python -m cli.migrate --to URL` (laptop -> server or cluster) and `--from URL` (a space taken offline).
Each collection of the service (`{prefix}-chunks|docs|summaries-{space}`) is created on the target with
the source's vector parameters and metadata (and, on a server, the cluster settings: shards, replicas,
write consistency), then its points are copied as stored: dense and sparse vectors, payload.

Resumable: a journal in the embedded folder (`migrate-journal.json`) names the collections this copy
created and those it finished (copied and checked); a run that is killed goes on where it stopped,
writing only the points the target lacks (and removing those the source no longer has). A target
collection this copy did not create is never touched: the run stops and names it. Checked: each
collection ends with the same number of points and the same ids on both sides, or the run fails saying
which.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qdrant_client.http import models

from backend.adapters.edge_engine import EdgeEngine, EdgeFolderLockedError
from backend.adapters.qdrant_nodes import ClusterOptions, QdrantNodes, unreachable
from backend.adapters.store import PAYLOAD_INDEXES

log = logging.getLogger(__name__)

JOURNAL = "migrate-journal.json"
_KINDS = ("chunks", "docs", "summaries")

Client = QdrantNodes | EdgeEngine


class StoreCopyError(RuntimeError):
    """The copy cannot start, or does not match its source; the source is never changed."""


@dataclass
class CopiedCollection:
    name: str
    points: int
    written: int  # points this run wrote (0: finished by an earlier run)


class _Journal:
    """{"target": where, "direction": to|from, "created": [names], "done": {name: points}} in the embedded folder."""

    def __init__(self, folder: Path, direction: str, remote: str) -> None:
        self.path = folder / JOURNAL
        data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        if data and (data.get("remote"), data.get("direction")) != (remote, direction):
            raise StoreCopyError(
                f"{self.path} records an unfinished copy {data.get('direction')} {data.get('remote')}; finish it "
                f"(run that command again) or delete the file to start this one"
            )
        self.data = data or {"remote": remote, "direction": direction, "created": [], "done": {}}

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)

    def created(self, name: str) -> bool:
        return name in self.data["created"]

    def mark_created(self, name: str) -> None:
        self.data["created"].append(name)
        self._save()

    def done(self, name: str) -> int | None:
        points = self.data["done"].get(name)
        return int(points) if points is not None else None

    def mark_done(self, name: str, points: int) -> None:
        self.data["done"][name] = points
        self._save()

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def service_collections(client: Client, prefix: str, spaces: list[str] | None = None) -> list[str]:
    """The collections of every space (or of `spaces`): chunks, registry, stored summaries."""
    names = [c.name for c in client.get_collections().collections]
    staging = [n for n in names if n.startswith(f"{prefix}-migrating-")]
    if staging:
        raise StoreCopyError(
            f"{', '.join(staging)}: a schema migration is unfinished there; finish it first (python -m cli.migrate "
            "--all), then copy"
        )
    ours = {n: n.split("-", 2)[2] for n in names if any(n.startswith(f"{prefix}-{kind}-") for kind in _KINDS)}
    if spaces:
        missing = sorted(set(spaces) - set(ours.values()))
        if missing:
            raise StoreCopyError(f"no such space at the source: {', '.join(missing)} "
                                 f"(it has {', '.join(sorted(set(ours.values()))) or 'none'})")  # fmt: skip
        return sorted(n for n, space in ours.items() if space in spaces)
    return sorted(ours)


def _scroll(client: Client, name: str, batch: int, vectors: bool = True) -> Iterator[list[models.Record]]:
    offset: Any = None
    while True:
        points, offset = client.scroll(name, limit=batch, offset=offset, with_payload=vectors, with_vectors=vectors)
        if points:
            yield points
        if offset is None:
            return


def _ids(client: Client, name: str) -> set[str]:
    return {str(p.id) for page in _scroll(client, name, 5000, vectors=False) for p in page}


def _create(source: Client, target: Client, name: str, prefix: str) -> None:
    """On a server, QdrantNodes adds the cluster layout (shards, replicas, write consistency) itself."""
    info = source.get_collection(name)
    params = info.config.params
    target.create_collection(name, vectors_config=params.vectors, sparse_vectors_config=params.sparse_vectors,
                             metadata=info.config.metadata)  # fmt: skip
    if name.startswith(f"{prefix}-chunks-"):
        for key, kind in PAYLOAD_INDEXES.items():
            target.create_payload_index(name, key, kind)
    elif name.startswith(f"{prefix}-summaries-"):
        target.create_payload_index(name, "documents", models.PayloadSchemaType.KEYWORD)


def copy_collections(
    source: Client,
    target: Client,
    journal: _Journal,
    *,
    prefix: str,
    spaces: list[str] | None = None,
    batch: int = 256,
    progress: Callable[[str, int], None] | None = None,
) -> list[CopiedCollection]:
    out: list[CopiedCollection] = []
    names = service_collections(source, prefix, spaces)
    if not names:
        raise StoreCopyError(f"the source holds no spaces (no collections named {prefix}-chunks-*): nothing to copy; "
                             "check QDRANT_PATH and COLLECTION_PREFIX")  # fmt: skip
    existing = {c.name for c in target.get_collections().collections}
    foreign = [n for n in names if n in existing and not journal.created(n)]
    if foreign:
        raise StoreCopyError(
            f"the target already holds {', '.join(foreign)}, which this copy did not create; nothing was written. "
            "Drop them there (or copy under another COLLECTION_PREFIX) and run again"
        )
    for name in names:
        want = source.count(name, exact=True).count
        if journal.done(name) == want and name in existing:
            out.append(CopiedCollection(name, want, 0))
            continue
        if name not in existing:
            journal.mark_created(name)  # before creating: a kill in between leaves it ours to resume
            _create(source, target, name, prefix)
        have = _ids(target, name)
        stale = have - _ids(source, name)  # gone from the source since an earlier, interrupted run
        if stale:
            target.delete(name, models.PointIdsList(points=list(stale)), wait=True)
        written = 0
        for page in _scroll(source, name, batch):
            missing = [p for p in page if str(p.id) not in have]
            if missing:
                structs = [models.PointStruct(id=p.id, vector=p.vector or {}, payload=p.payload) for p in missing]
                target.upsert(name, structs, wait=True)
                written += len(missing)
                if progress is not None:
                    progress(name, written)
        count = target.count(name, exact=True).count
        if count != want or _ids(source, name) != _ids(target, name):
            raise StoreCopyError(
                f"the copy of {name} does not match its source ({count} points there, {want} here); the source is "
                "unchanged. Run the same command again"
            )
        journal.mark_done(name, want)
        log.info("copied %s: %d points (%d written by this run)", name, want, written)
        out.append(CopiedCollection(name, want, written))
    return out


def _server(url: str, api_key: str | None, timeout_s: float, cluster: ClusterOptions | None) -> QdrantNodes:
    """The server or cluster (node URLs comma-separated: any node serves every collection), checked to answer."""
    server = QdrantNodes(url.split(","), api_key=api_key, timeout_s=timeout_s, breaker_failures=3,
                         breaker_cooldown_s=5.0, options=cluster)  # fmt: skip
    try:
        server.get_collections()
    except Exception as exc:  # refused, timed out, unauthorised
        server.close()
        reason = "no node answered" if unreachable(exc) else "it refused"
        raise StoreCopyError(f"no Qdrant server answered at {url} ({reason}: {exc})") from exc
    return server


def copy_store(
    folder: Path,
    url: str,
    *,
    direction: str,
    prefix: str,
    spaces: list[str] | None = None,
    batch: int = 256,
    api_key: str | None = None,
    timeout_s: float = 60.0,
    cluster: ClusterOptions | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> list[CopiedCollection]:
    """direction "to": the embedded store in `folder` -> the server at `url` (its collections laid out as
    `cluster` says); "from": the server -> `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        embedded = EdgeEngine(folder)
    except EdgeFolderLockedError as exc:
        raise StoreCopyError(f"the embedded store {folder} is open in another process: stop the service first") from exc
    server: QdrantNodes | None = None
    try:
        server = _server(url, api_key, timeout_s, cluster)
        journal = _Journal(folder, direction, url)
        source, target = (embedded, server) if direction == "to" else (server, embedded)
        copied = copy_collections(source, target, journal, prefix=prefix, spaces=spaces, batch=batch,
                                  progress=progress)  # fmt: skip
        journal.finish()
        return copied
    finally:
        embedded.close()
        if server is not None:
            server.close()
