"""Qdrant, embedded on disk or a server, behind one class: spaces, chunks and the document registry.

Layout: each space owns two collections, so a query can only ever see its own space and never pays
for a payload filter (a Python loop in embedded mode):
  `{prefix}-chunks-{space}`  one point per chunk (dense vector + payload); its collection metadata
                             records the embedding model and dimension.
  `{prefix}-docs-{space}`    one payload-only point per document: the registry of what is indexed,
                             and the journal that makes re-indexing crash-safe (see services/ingest.py).
The qdrant-client is synchronous; every call runs in this adapter's worker threads (one thread in
embedded mode, where the client is not thread-safe).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from qdrant_client import QdrantClient, models

log = logging.getLogger(__name__)

T = TypeVar("T")

# Fixed namespace so ids are the same on every machine and every run.
_ID_NAMESPACE = uuid.UUID("6f1c1d52-8a4b-4f4e-9d7e-2b6d3c1e9a10")


class StoreError(Exception):
    """The vector store cannot be reached or refused an operation."""


class StoreLockedError(StoreError):
    """The embedded store folder is held by another process."""


class EmbeddingMismatchError(StoreError):
    """A space was indexed with a different embedding model or dimension."""


def document_id(space: str, path: str) -> str:
    """A document's identity: its space and its path (relative to the indexed folder)."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"doc\x00{space}\x00{path}"))


def chunk_id(document: str, version: str, index: int) -> str:
    """A chunk's identity: its document, the document's content version and its position."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"chunk\x00{document}\x00{version}\x00{index}"))


@dataclass
class ChunkPoint:
    id: str
    vector: list[float]
    payload: dict[str, Any]


@dataclass
class ScoredChunk:
    id: str
    score: float
    payload: dict[str, Any]


@dataclass
class DocumentRecord:
    """Registry entry. `version` is None while a first ingestion has not completed.

    `garbage` lists (version, chunk_count) pairs whose chunk points must be deleted; it is written
    before any chunk is, so a crash at any moment leaves enough to finish the job on the next run.
    """

    id: str
    space: str
    path: str
    title: str
    version: str | None
    chunk_count: int
    size: int
    indexed_at: float
    garbage: list[tuple[str, int]] = field(default_factory=list)
    content_sha256: str | None = None  # of the file's bytes

    def to_payload(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "path": self.path,
            "title": self.title,
            "version": self.version,
            "chunk_count": self.chunk_count,
            "size": self.size,
            "indexed_at": self.indexed_at,
            "garbage": [list(g) for g in self.garbage],
            "content_sha256": self.content_sha256,
        }

    @classmethod
    def from_point(cls, point_id: str, payload: dict[str, Any]) -> DocumentRecord:
        return cls(
            id=point_id,
            space=payload["space"],
            path=payload["path"],
            title=payload.get("title", ""),
            version=payload.get("version"),
            chunk_count=int(payload.get("chunk_count", 0)),
            size=int(payload.get("size", 0)),
            indexed_at=float(payload.get("indexed_at", 0.0)),
            garbage=[(str(v), int(n)) for v, n in payload.get("garbage", [])],
            content_sha256=payload.get("content_sha256"),
        )


@dataclass
class SpaceInfo:
    name: str
    embedding_model: str
    dimension: int
    chunks: int
    documents: int


class VectorStore:
    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: Path | None = None,
        prefix: str = "rag",
    ) -> None:
        self.prefix = prefix
        self.embedded = url is None
        self.location = url or str(path)
        try:
            if url is None:
                assert path is not None
                path.mkdir(parents=True, exist_ok=True)
                self._client = QdrantClient(path=str(path))
            else:
                self._client = QdrantClient(url=url, api_key=api_key, timeout=30)
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise StoreLockedError(
                    f"the embedded store {path} is open in another process (the service?). "
                    "Stop that process, or let index_cli hand the work to the running service."
                ) from exc
            raise StoreError(f"cannot open the vector store at {self.location}: {exc}") from exc
        self._executor = ThreadPoolExecutor(max_workers=1 if self.embedded else 8, thread_name_prefix="qdrant")

    # --- plumbing --------------------------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except StoreError:
            raise
        except Exception as exc:
            setting = "QDRANT_PATH" if self.embedded else "QDRANT_URL"
            raise StoreError(f"vector store error at {self.location} ({setting}): {exc}") from exc

    def _chunks(self, space: str) -> str:
        return f"{self.prefix}-chunks-{space}"

    def _docs(self, space: str) -> str:
        return f"{self.prefix}-docs-{space}"

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._client.close()

    # --- spaces ------------------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._run(self._client.get_collections)

    async def list_space_names(self) -> list[str]:
        def names() -> list[str]:
            marker = f"{self.prefix}-chunks-"
            cols = self._client.get_collections().collections
            return sorted(c.name[len(marker) :] for c in cols if c.name.startswith(marker))

        return await self._run(names)

    async def space_exists(self, space: str) -> bool:
        return await self._run(self._client.collection_exists, self._chunks(space))

    async def space_info(self, space: str) -> SpaceInfo | None:
        def info() -> SpaceInfo | None:
            if not self._client.collection_exists(self._chunks(space)):
                return None
            col = self._client.get_collection(self._chunks(space))
            meta = col.config.metadata or {}
            chunks = self._client.count(self._chunks(space), exact=True).count
            docs = (
                self._client.count(self._docs(space), exact=True).count
                if self._client.collection_exists(self._docs(space))
                else 0
            )
            return SpaceInfo(
                name=space,
                embedding_model=str(meta.get("embedding_model", "?")),
                dimension=int(meta.get("dimension", 0)),
                chunks=chunks,
                documents=docs,
            )

        return await self._run(info)

    async def ensure_space(self, space: str, model: str, dimension: int) -> None:
        """Create the space's collections if absent; refuse a space built with another embedder."""

        def ensure() -> None:
            chunks = self._chunks(space)
            if self._client.collection_exists(chunks):
                self._check_embedding(space, model, dimension)
            else:
                self._client.create_collection(
                    chunks,
                    vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                    metadata={"embedding_model": model, "dimension": dimension, "space": space},
                )
                log.info("created space %s", space)
            if not self._client.collection_exists(self._docs(space)):
                self._client.create_collection(self._docs(space), vectors_config={})

        await self._run(ensure)

    def _check_embedding(self, space: str, model: str, dimension: int) -> None:
        col = self._client.get_collection(self._chunks(space))
        meta = col.config.metadata or {}
        params = col.config.params.vectors
        size = params.size if isinstance(params, models.VectorParams) else None
        have_model, have_dim = meta.get("embedding_model"), meta.get("dimension", size)
        if have_model != model or have_dim != dimension:
            raise EmbeddingMismatchError(
                f"space {space!r} was indexed with embedding model {have_model!r} (dimension "
                f"{have_dim}), but EMBEDDING_MODEL is {model!r} (dimension {dimension}). Either set "
                f"EMBEDDING_MODEL={have_model} again, or re-index the space with the new model: "
                f"python -m cli.index_cli --dir <folder> --space {space} --recreate"
            )

    async def check_embedding(self, space: str, model: str, dimension: int) -> None:
        await self._run(self._check_embedding, space, model, dimension)

    async def drop_space(self, space: str) -> None:
        def drop() -> None:
            for name in (self._chunks(space), self._docs(space)):
                if self._client.collection_exists(name):
                    self._client.delete_collection(name)

        await self._run(drop)

    # --- chunks ------------------------------------------------------------------------------------
    async def upsert_chunks(self, space: str, points: Sequence[ChunkPoint]) -> None:
        structs = [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points]
        await self._run(lambda: self._client.upsert(self._chunks(space), structs, wait=True))

    async def delete_chunks(self, space: str, ids: Iterable[str]) -> None:
        id_list: list[models.ExtendedPointId] = list(ids)
        if not id_list:
            return
        selector = models.PointIdsList(points=id_list)
        await self._run(lambda: self._client.delete(self._chunks(space), selector, wait=True))

    async def search(self, space: str, vector: list[float], limit: int) -> list[ScoredChunk]:
        def query() -> list[ScoredChunk]:
            res = self._client.query_points(self._chunks(space), query=vector, limit=limit, with_payload=True)
            return [ScoredChunk(str(p.id), float(p.score), p.payload or {}) for p in res.points]

        return await self._run(query)

    async def count_chunks(self, space: str) -> int:
        return await self._run(lambda: self._client.count(self._chunks(space), exact=True).count)

    # --- document registry -------------------------------------------------------------------
    async def list_documents(self, space: str) -> list[DocumentRecord]:
        def scroll_all() -> list[DocumentRecord]:
            out: list[DocumentRecord] = []
            offset: Any = None
            while True:
                points, offset = self._client.scroll(self._docs(space), limit=1000, offset=offset, with_payload=True)
                out.extend(DocumentRecord.from_point(str(p.id), p.payload or {}) for p in points)
                if offset is None:
                    return out

        return await self._run(scroll_all)

    async def get_document(self, space: str, doc_id: str) -> DocumentRecord | None:
        def get() -> DocumentRecord | None:
            found = self._client.retrieve(self._docs(space), [doc_id], with_payload=True)
            return DocumentRecord.from_point(str(found[0].id), found[0].payload or {}) if found else None

        return await self._run(get)

    async def put_document(self, record: DocumentRecord) -> None:
        point = models.PointStruct(id=record.id, vector={}, payload=record.to_payload())
        await self._run(lambda: self._client.upsert(self._docs(record.space), [point], wait=True))

    async def remove_document(self, space: str, doc_id: str) -> None:
        selector = models.PointIdsList(points=[doc_id])
        await self._run(lambda: self._client.delete(self._docs(space), selector, wait=True))
