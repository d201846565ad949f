"""Qdrant, embedded on disk or a server, behind one class: spaces, chunks and the document registry.

Two engines, one code path: a Qdrant server through qdrant-client, or (no `url`) Qdrant Edge in-process
through `edge_engine.EdgeEngine`, which answers the same qdrant-client calls. Everything below is the
same for both.

Layout: each space owns two collections, so a query can only ever see its own space:
  `{prefix}-chunks-{space}`  one point per chunk: named vectors "dense" (the embedder's, cosine),
                             "sentences" (one vector per sentence of the chunk, scored by its best:
                             MaxSim) and "bm25" (sparse, Qdrant applies IDF), and the payload; its collection
                             metadata records the embedding model, dimension, schema and lexical analyzer.
  `{prefix}-docs-{space}`    one payload-only point per document: the registry of what is indexed,
                             and the journal that makes re-indexing crash-safe (see services/ingest.py).
Spaces created before hybrid retrieval (schema 1: one unnamed dense vector) still answer dense
queries; writing to them, or querying their lexical side, asks for `python -m cli.migrate`.
Both engines are synchronous; every call runs in this adapter's worker threads. A Qdrant server that
does not answer within `timeout_s` is reported unavailable; after `breaker_failures` such calls in a
row, calls fail at once for `breaker_cooldown_s` instead of each waiting out the timeout, then one call
probes the server again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from qdrant_client import models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from backend.adapters.circuit import CircuitBreaker
from backend.adapters.edge_engine import (
    SHARDS,
    EdgeEngine,
    EdgeFolderLockedError,
    is_disk_full,
    is_local_mode_folder,
)
from backend.adapters.qdrant_nodes import ClusterOptions, QdrantNodes, unreachable

log = logging.getLogger(__name__)
INDEX_RETRY_S = 600  # after a background index build failed

T = TypeVar("T")

# Fixed namespace so ids are the same on every machine and every run.
_ID_NAMESPACE = uuid.UUID("6f1c1d52-8a4b-4f4e-9d7e-2b6d3c1e9a10")


class StoreError(Exception):
    """The vector store cannot be reached or refused an operation."""


class StoreUnavailableError(StoreError):
    """The Qdrant server did not answer (refused, timed out, or its circuit is open): try again later."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StoreLockedError(StoreError):
    """The embedded store folder is held by another process."""


class EmbeddingMismatchError(StoreError):
    """A space was indexed with a different embedding model or dimension."""


class StoreFullError(StoreError):
    """The disk holding the embedded store has less free space than it needs to write safely."""


class StoreFormatError(StoreError):
    """The store folder holds data of an engine this version no longer opens (it names the command)."""


class SpaceGoneError(StoreError):
    """A space's collection vanished from the Qdrant server between two calls: another API replica (or a
    person) deleted it. The next request sees the space as it is now."""


class SpaceNeedsMigrationError(StoreError):
    """A space's collection predates the current schema or lexical analyzer."""


DENSE = "dense"
SPARSE = "bm25"
SCHEMA = 2  # 1: unnamed dense vector only (issue #2); 2: named dense + sparse BM25 vectors
# Each sentence of a chunk embedded alone, one multi-vector per point: a question that one sentence answers
# matches that sentence better than the whole chunk (services/fusion.py). Spaces created before 2026-12-06
# have no such vector and are searched without it; a chunk without sentences is judged by its own vector.
SENTENCES = "sentences"
# A chunk's share of Cyrillic letters among its Cyrillic and Latin ones: which language it is in, read with the
# search's candidates (fusing a space of both languages). Absent in chunks indexed before 2026-12-05.
CYRILLIC_SHARE = "cyrillic_share"
# A space's dense vectors are also kept as 8-bit integers (QDRANT_QUANTIZATION=int8): a search walks the
# index on those, a quarter of the memory to read, then scores the candidates it found with the full
# vectors (every dense query asks for that), so every score the fusion reads is exact (docs/performance.md
# measures both).
Quantization = Literal["int8", "none"]  # QDRANT_QUANTIZATION
_INT8 = models.ScalarQuantization(
    scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True)
)

# Every payload field a filter uses (ChunkFilter, and deletes by document): both engines honour them.
PAYLOAD_INDEXES = {
    "file_type": models.PayloadSchemaType.KEYWORD,
    "folders": models.PayloadSchemaType.KEYWORD,
    "title": models.PayloadSchemaType.TEXT,
    "modified_at": models.PayloadSchemaType.FLOAT,
    "indexed_at": models.PayloadSchemaType.FLOAT,
    "document_id": models.PayloadSchemaType.KEYWORD,
    "owner": models.PayloadSchemaType.KEYWORD,  # the file a chunk was written with (a mail attachment's mailbox)
    "version": models.PayloadSchemaType.KEYWORD,  # the journal deletes and settles chunks by version
    # conversations (services/correspondence): who took part, which chat or thread, when
    "participant_keys": models.PayloadSchemaType.KEYWORD,
    "conversation": models.PayloadSchemaType.KEYWORD,
    "conversation_key": models.PayloadSchemaType.KEYWORD,
    "sent_first": models.PayloadSchemaType.FLOAT,
    "sent_last": models.PayloadSchemaType.FLOAT,
}

SparseTerms = tuple[list[int], list[float]]  # (term ids, weights)
Fusion = Literal["rrf", "dbsf"]


def _dense_of(vector: Any) -> list[float]:
    """The dense vector of a returned point: the "dense" entry (schema 2) or the vector itself (schema 1)."""
    dense = vector.get(DENSE) if isinstance(vector, dict) else vector
    return [float(x) for x in dense] if dense is not None else []


def _sentences_of(vector: Any) -> list[list[float]] | None:
    """The sentence vectors of a returned point (SENTENCES), None where it has none."""
    found = vector.get(SENTENCES) if isinstance(vector, dict) else None
    return [[float(x) for x in v] for v in found] if found else None


LOCAL_MODE_MIGRATE_HINT = "python -m cli.migrate --from-local-mode"


def migrate_hint(space: str) -> str:
    return f"python -m cli.migrate --space {space}"


def document_id(space: str, path: str) -> str:
    """A document's identity: its space and its path (relative to the indexed folder)."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"doc\x00{space}\x00{path}"))


def chunk_id(document: str, text_hash: str, occurrence: int = 0) -> str:
    """A chunk's identity: its document and its text (the n-th chunk of that text in the document), not its
    position or the document's version: a chunk that a new version keeps keeps its id (and its vector)."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"chunk\x00{document}\x00{text_hash}\x00{occurrence}"))


@dataclass
class ChunkPoint:
    id: str
    vector: list[float]
    payload: dict[str, Any]
    sparse: SparseTerms | None = None
    sentences: list[list[float]] | None = None  # one vector per sentence (SENTENCES), where the space keeps them

    def to_struct(self, *, sentences: bool = True) -> models.PointStruct:
        vectors: dict[str, Any] = {DENSE: self.vector}
        if self.sparse is not None and self.sparse[0]:
            vectors[SPARSE] = models.SparseVector(indices=self.sparse[0], values=self.sparse[1])
        if sentences and self.sentences:
            vectors[SENTENCES] = self.sentences
        return models.PointStruct(id=self.id, vector=vectors, payload=self.payload)


@dataclass
class ScoredChunk:
    id: str
    score: float
    payload: dict[str, Any]
    dense_score: float | None = None  # each side's own score, where the query had that side
    sparse_score: float | None = None
    sentence_score: float | None = None  # the cosine of the chunk's sentence nearest the question (SENTENCES)
    vector: list[float] | None = None  # the dense vector, when asked for (MMR)


@dataclass
class ChunkFilter:
    """Conditions on chunk metadata, applied inside the search (all given conditions must hold)."""

    file_types: list[str] = field(default_factory=list)  # extensions without the dot: pdf, md
    folders: list[str] = field(default_factory=list)  # path prefixes that are folders: mail/2024
    title: str | None = None  # words the document title contains
    modified_after: float | None = None  # unix seconds; documents without a known date do not match
    modified_before: float | None = None
    indexed_after: float | None = None
    indexed_before: float | None = None
    # Conversations: only chunks of messages match these (a plain document has no participants or times).
    participants: list[str] = field(default_factory=list)  # normalized keys, any of: "петров", "anna@x.ru"
    chats: list[str] = field(default_factory=list)  # normalized chat titles, any of
    threads: list[str] = field(default_factory=list)  # normalized mail thread subjects, any of
    sent_after: float | None = None  # a chunk matches when one of its messages may lie in the range
    sent_before: float | None = None

    def to_qdrant(self) -> models.Filter | None:
        must: list[models.Condition] = []
        if self.file_types:
            must.append(models.FieldCondition(key="file_type", match=models.MatchAny(any=self.file_types)))
        if self.folders:
            must.append(models.FieldCondition(key="folders", match=models.MatchAny(any=self.folders)))
        if self.title:
            must.append(models.FieldCondition(key="title", match=models.MatchText(text=self.title)))
        for key, lo, hi in (
            ("modified_at", self.modified_after, self.modified_before),
            ("indexed_at", self.indexed_after, self.indexed_before),
        ):
            if lo is not None or hi is not None:
                must.append(models.FieldCondition(key=key, range=models.Range(gte=lo, lt=hi)))
        if self.participants:
            must.append(models.FieldCondition(key="participant_keys", match=models.MatchAny(any=self.participants)))
        if self.chats or self.threads:
            must.append(
                models.FieldCondition(key="conversation_key", match=models.MatchAny(any=self.chats + self.threads))
            )
            if not (self.chats and self.threads):
                kind = "chat" if self.chats else "thread"
                must.append(models.FieldCondition(key="conversation", match=models.MatchValue(value=kind)))
        if self.sent_after is not None:
            must.append(models.FieldCondition(key="sent_last", range=models.Range(gte=self.sent_after)))
        if self.sent_before is not None:
            must.append(models.FieldCondition(key="sent_first", range=models.Range(lt=self.sent_before)))
        return models.Filter(must=must) if must else None


@dataclass
class SpaceSchema:
    version: int  # SCHEMA, or 1 for a space created before hybrid retrieval
    lexical: str | None  # the analyzer its sparse vectors were computed with
    quantization: Quantization = "none"  # what its dense vectors are kept as besides themselves (8-bit copy)
    rebuild_pending: bool = False  # `requantize` changed that, and its index build did not finish
    scripts: bool = True  # every chunk carries CYRILLIC_SHARE (False: created before it, `record_scripts`)
    sentences: bool = False  # its chunks can carry sentence vectors (SENTENCES; False: created before them)


@dataclass
class DocumentRecord:
    """Registry entry. `version` is None while a first ingestion has not completed.

    The journal (services/ingest.py): `writing` names the version being written and `garbage` lists
    (version, chunk count) pairs whose chunks must go; both are written before any chunk is, so a crash at
    any moment leaves enough to finish the job on the next run. `stale`: an interrupted write left some of
    the version's chunks with the other version's positions; the next run rewrites the document.
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
    writing: str | None = None
    stale: bool = False
    # Files attached to its mails, each a document of its own whose chunks this file's writes own:
    # {"id", "path", "title", "chunks", "size", "sha256", "message"}. Listed with `attachment_records`.
    attachments: list[dict[str, Any]] = field(default_factory=list)
    parent: str | None = None  # an attachment's record (never stored): the id of the file it came with
    message: str | None = None  # ... and the Message-ID of the mail

    @property
    def own_chunks(self) -> int:
        """Chunks of the file itself, without its attachments'."""
        return self.chunk_count - sum(int(a["chunks"]) for a in self.attachments)

    def attachment_records(self) -> list[DocumentRecord]:
        return [
            DocumentRecord(id=a["id"], space=self.space, path=a["path"], title=a["title"], version=self.version,
                           chunk_count=int(a["chunks"]), size=int(a["size"]), indexed_at=self.indexed_at,
                           content_sha256=a.get("sha256"), parent=self.id, message=a.get("message"))
            for a in self.attachments
        ]  # fmt: skip

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
            "writing": self.writing,
            "stale": self.stale,
            "attachments": self.attachments,
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
            writing=payload.get("writing"),
            stale=bool(payload.get("stale", False)),
            attachments=list(payload.get("attachments") or []),
        )


def _reason(exc: Exception) -> str:
    source = exc.source if isinstance(exc, ResponseHandlingException) else exc
    text = str(source) or type(source).__name__
    return f"{type(source).__name__}: {text}" if text != type(source).__name__ else text


@dataclass
class SpaceInfo:
    name: str
    embedding_model: str
    dimension: int
    chunks: int
    documents: int
    schema: int = SCHEMA
    lexical: str | None = None
    indexed_chunks: int | None = None  # embedded: chunks the HNSW index held when last built
    index_building: bool = False


# An embedded upsert goes to the disk in pieces of about this many bytes (`_upsert`).
WRITE_PIECE_BYTES = 2**20


def written_bytes(point: ChunkPoint) -> int:
    """About what writing `point` adds to an embedded shard, rounded up: its log keeps every number in 5
    bytes (CBOR), the vector storage in 2-4 more; the payload goes to the log, its storage and the text
    index. test_disk_full's corpus, 212 chunks with 1,311 sentence vectors, allocated 5.2 MB on ext4; this says 6.4."""
    numbers = (
        len(point.vector)
        + sum(len(s) for s in point.sentences or ())
        + 2 * len(point.sparse[0] if point.sparse else ())
    )
    return 10 * numbers + 3 * len(json.dumps(point.payload, ensure_ascii=False, default=str).encode())


def _pieces(points: Sequence[ChunkPoint], size: int) -> list[tuple[list[ChunkPoint], int]]:
    out: list[tuple[list[ChunkPoint], int]] = []
    for point in points:
        adds = written_bytes(point)
        if not out or out[-1][1] + adds > size:
            out.append(([], 0))
        out[-1][0].append(point)
        out[-1] = (out[-1][0], out[-1][1] + adds)
    return out


class VectorStore:
    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: Path | None = None,
        prefix: str = "rag",
        timeout_s: float = 10.0,
        breaker_failures: int = 3,
        breaker_cooldown_s: float = 5.0,
        index_after: int = 20_000,
        min_free_mb: int = 256,
        cluster: ClusterOptions | None = None,
        background_index: bool = False,
        on_index_build: Callable[[str, str, float], None] | None = None,
        quantization: Quantization = "int8",
        hnsw_ef: int = 0,
        sentence_vectors: bool = True,
    ) -> None:
        self.prefix = prefix
        self.quantization = quantization  # of the spaces created from now on
        self.sentence_vectors = sentence_vectors  # whether spaces created from now on keep SENTENCES
        # every dense query: the index's search breadth (0: the engine's default), exact scores
        self.dense_params = models.SearchParams(
            hnsw_ef=hnsw_ef or None, quantization=models.QuantizationSearchParams(rescore=True)
        )
        self.embedded = url is None
        self.location = url or str(path)
        self._client: QdrantNodes | EdgeEngine
        try:
            if url is None:
                assert path is not None
                path.mkdir(parents=True, exist_ok=True)
                if is_local_mode_folder(path) and not (path / SHARDS).is_dir():
                    raise StoreFormatError(
                        f"the store folder {path} (QDRANT_PATH) holds data of the embedded engine used before "
                        f"Qdrant Edge. Move it over once, without re-embedding (stop the service first): "
                        f"{LOCAL_MODE_MIGRATE_HINT}"
                    )
                self._client = EdgeEngine(path)
            else:  # one server, or the nodes of a cluster: each with its own circuit breaker
                self._client = QdrantNodes(url.split(","), api_key=api_key, timeout_s=timeout_s,
                                           breaker_failures=breaker_failures, breaker_cooldown_s=breaker_cooldown_s,
                                           options=cluster)  # fmt: skip
        except EdgeFolderLockedError as exc:
            raise StoreLockedError(
                f"the embedded store {path} is open in another process (the service?). "
                "Stop that process, or let index_cli hand the work to the running service."
            ) from exc
        except (RuntimeError, OSError) as exc:
            raise StoreError(f"cannot open the vector store at {self.location}: {exc}") from exc
        # Edge shards answer queries from several threads at once; qdrant-client is thread-safe over HTTP.
        self._executor = ThreadPoolExecutor(max_workers=4 if self.embedded else 8, thread_name_prefix="qdrant")
        self._schemas: dict[str, SpaceSchema] = {}
        self.index_after = index_after  # embedded: see build_index_if_due
        self.background_index = background_index  # embedded: see note_written
        self.on_index_build = on_index_build  # (space, outcome, seconds) of each background build
        self._builds: dict[str, asyncio.Task[None]] = {}
        self._build_procs: dict[str, asyncio.subprocess.Process] = {}
        self._build_failed_at: dict[str, float] = {}
        self._closing = False
        self.min_free_mb = min_free_mb  # embedded: see _write
        if self.embedded and (free := self._free_mb()) is not None and free < min_free_mb:
            log.warning("the disk holding %s has %d MB free, below QDRANT_MIN_FREE_MB=%d: searches work, "
                        "writes are refused until space is freed", self.location, free, min_free_mb)  # fmt: skip
        # Embedded Qdrant is a library call: nothing to wait out, nothing to break.
        self.breaker = None if self.embedded else CircuitBreaker(breaker_failures, breaker_cooldown_s)

    # --- plumbing --------------------------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            wait = breaker.retry_in_s()
            raise StoreUnavailableError(
                f"the Qdrant server at {self.location} (QDRANT_URL) is unreachable; the service tries it again "
                f"in {wait:.0f} s and resumes by itself when it answers", retry_after_s=wait
            )  # fmt: skip
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, fn, *args)
        except StoreError:
            if breaker is not None:
                breaker.record_success()  # raised by our own checks on what the server answered
            raise
        except Exception as exc:
            if breaker is not None and unreachable(exc):
                breaker.record_failure()
                raise StoreUnavailableError(
                    f"the Qdrant server at {self.location} (QDRANT_URL) is unreachable: {_reason(exc)}; "
                    "searches and uploads resume by themselves when it answers again",
                    retry_after_s=breaker.retry_in_s() or 1.0,
                ) from exc
            if breaker is not None:
                breaker.record_success()
            if is_disk_full(exc):
                raise StoreFullError(
                    f"the disk holding the vector store at {self.location} is full ({exc}). Nothing written so "
                    "far is lost: free space on that disk, then run the same command again."
                ) from exc
            if isinstance(exc, UnexpectedResponse) and exc.status_code == 404:
                # What this process remembers of the spaces is stale (another replica dropped one): forget it.
                self._schemas.clear()
                raise SpaceGoneError(
                    f"a collection this request needs is gone from the Qdrant server at {self.location} (the space "
                    "was deleted meanwhile, perhaps through another replica); GET /spaces lists what exists now"
                ) from exc
            setting = "QDRANT_PATH" if self.embedded else "QDRANT_URL"
            raise StoreError(f"vector store error at {self.location} ({setting}): {exc}") from exc
        except BaseException:  # cancelled: a half-open probe without a verdict must not block the circuit
            if breaker is not None:
                breaker.abandon_probe()
            raise
        if breaker is not None:
            breaker.record_success()
        return result

    # Qdrant Edge writes through memory-mapped files: on a full disk a write kills the process (SIGBUS,
    # no message) and the folder cannot even be opened until space is freed (its log is replayed). The
    # journal makes the next run complete what was cut off; refusing writes while some space is left
    # turns the crash into a message (tests/integration/test_disk_full.py).
    def _free_mb(self) -> int | None:
        try:
            return shutil.disk_usage(self.location).free // 2**20
        except OSError:
            return None

    async def _write(self, fn: Callable[..., T], *args: Any, adds: int = 0) -> T:
        """_run for an operation that adds data (about `adds` bytes): refused when the embedded store's disk
        would keep less than the margin after it."""
        if self.embedded and self.min_free_mb > 0:
            free = self._free_mb()
            if free is not None and free - adds / 2**20 < self.min_free_mb:
                raise StoreFullError(
                    f"the disk holding the embedded store {self.location} (QDRANT_PATH) has {free} MB free; "
                    f"writing safely needs {self.min_free_mb} MB (QDRANT_MIN_FREE_MB={self.min_free_mb}) beyond "
                    f"the {max(1, round(adds / 2**20))} MB of the next write. Nothing written so far is lost: "
                    "free space on that disk (or move QDRANT_PATH), then run the same command again to index the rest."
                )
        return await self._run(fn, *args)

    async def _upsert(self, collection: str, points: Sequence[ChunkPoint], *, sentences: bool) -> None:
        """Chunk points written in pieces of about WRITE_PIECE_BYTES when embedded, each checked against the
        disk margin: one batch with its sentence vectors adds megabytes, more than a margin sized for the
        small writes it guards (a crashed or refused piece is redone by the next run, see the journal)."""
        pieces = _pieces(points, WRITE_PIECE_BYTES) if self.embedded else [(list(points), 0)]
        for piece, adds in pieces:
            structs = [p.to_struct(sentences=sentences) for p in piece]
            await self._write(lambda s=structs: self._client.upsert(collection, s, wait=True), adds=adds)

    def _chunks(self, space: str) -> str:
        return f"{self.prefix}-chunks-{space}"

    def _docs(self, space: str) -> str:
        return f"{self.prefix}-docs-{space}"

    def _staging(self, space: str) -> str:
        return f"{self.prefix}-migrating-{space}"

    def _summaries(self, space: str) -> str:
        return f"{self.prefix}-summaries-{space}"

    def close(self) -> None:
        """Closes the store. A background index build still running is stopped outright (its copy is removed
        when the store is opened next); `await stop_index_builds()` first to clean up at once."""
        self._closing = True
        for proc in self._build_procs.values():
            if proc.returncode is None:
                proc.kill()
        self._executor.shutdown(wait=True)
        self._client.close()

    # --- the embedded engine's index -----------------------------------------------------------
    # Qdrant Edge keeps new chunks in plain segments that dense search scans (12.5 ms at 100k chunks on 2
    # cores, docs/performance.md) until `optimize` builds the HNSW index (1.9 ms). That build holds
    # Python's GIL from start to end (qdrant-edge-py 0.9.0; measured: not one tick of another Python
    # thread in a 17 s build). index_cli builds in-process after a run, when nothing waits; the service
    # builds on a copy of the shard in a process of its own (EdgeEngine.begin_build) and swaps it in.
    async def _index_due(self, space: str, copies: int) -> int | None:
        """Chunks written since the space's index was built, when that is at least `index_after` and the
        disk holds `copies` more copies of the space; None otherwise."""
        client = self._client
        name = self._chunks(space)
        if not isinstance(client, EdgeEngine) or self.index_after <= 0:
            return None
        if not await self._run(client.collection_exists, name):
            return None
        points, indexed, written = await self._run(client.indexing_state, name)
        new = max(points - indexed, written)
        if new < self.index_after:
            return None
        needed = self.min_free_mb + copies * await self._run(client.disk_bytes, name) // 2**20
        if self.min_free_mb > 0 and (free := self._free_mb()) is not None and free < needed:
            log.warning("space %s: search index not built: the disk has %d MB free, the build needs about %d MB "
                        "(%d copies of the space, plus QDRANT_MIN_FREE_MB); searches keep scanning",
                        space, free, needed, copies)  # fmt: skip
            return None
        return new

    async def build_index_if_due(self, space: str) -> float | None:
        """Build the space's index here, once it has gained `index_after` chunks since the last build; returns
        the seconds the build took, None when none was due (or the store is a server, which indexes by
        itself). Blocks the process's other threads: for index_cli and benchmarks, not the service."""
        client = self._client
        new = await self._index_due(space, copies=1)  # the build rewrites the segments
        if new is None or not isinstance(client, EdgeEngine):
            return None
        log.info("space %s: %d chunks written since the search index was built; building it", space, new)
        took = await self._build_here(client, space)
        log.info("space %s: search index built in %.1f s", space, took)
        return took

    async def _build_here(self, client: EdgeEngine, space: str) -> float:
        started = time.perf_counter()
        await self._run(client.optimize, self._chunks(space))
        return time.perf_counter() - started

    async def space_quantization(self, space: str) -> Quantization | None:
        """What the space's dense vectors are kept as besides themselves (`int8`: an 8-bit copy, once its
        index is built; `none`); None when there is no such space."""
        schema = await self.space_schema(space)
        return schema.quantization if schema else None

    async def requantize(self, space: str) -> float | None:
        """Give an existing space what new spaces get (`quantization`), nothing re-embedded: its setting
        changes, and its index is built again, which writes (or drops) the 8-bit copy. Embedded: here,
        blocking the process's other threads like build_index_if_due (for `cli.migrate`, with the service
        stopped); returns the build's seconds (0 for a space without an index yet: its first build follows
        the setting). A Qdrant server rebuilds by itself in the background: None."""
        name = self._chunks(space)
        client = self._client
        kept = _INT8 if self.quantization == "int8" else models.Disabled.DISABLED
        diff = {DENSE: models.VectorParamsDiff(quantization_config=kept)}
        # no index yet, so no 8-bit copy either: the first build makes what the setting says
        build = isinstance(client, EdgeEngine) and (await self._run(client.indexing_state, name))[1] > 0
        # Marked until the build has finished: a run cut short is finished by the next (space_schema says so).
        await self._run(
            lambda: client.update_collection(name, vectors_config=diff, metadata={"rebuild_pending": build})
        )
        self._schemas.pop(space, None)
        if not isinstance(client, EdgeEngine):
            return None
        if not build:
            log.info("space %s: dense vectors kept as %s from its first index build on (QDRANT_INDEX_AFTER)",
                     space, self.quantization)  # fmt: skip
            return 0.0
        took = await self._build_here(client, space)
        await self._run(lambda: client.update_collection(name, metadata={"rebuild_pending": False}))
        self._schemas.pop(space, None)
        log.info("space %s: dense vectors kept as %s from now on; index built again in %.1f s", space,
                 self.quantization, took)  # fmt: skip
        return took

    def note_written(self, space: str) -> None:
        """The service wrote to `space`: start building its index in the background if that is due (and
        this store builds in the background: the embedded one, in the service)."""
        if not self.background_index or not self.embedded or self.index_after <= 0 or self._closing:
            return
        if time.monotonic() - self._build_failed_at.get(space, -INDEX_RETRY_S) < INDEX_RETRY_S:
            return  # each try copies the whole space: not again at every upload after a failure
        task = self._builds.get(space)
        if task is None or task.done():
            self._builds[space] = asyncio.create_task(self._build_in_background(space), name=f"index-build-{space}")

    async def index_builds_settled(self) -> None:
        """Wait for the background index builds under way (tests, benchmarks, shutdown)."""
        while running := [t for t in self._builds.values() if not t.done()]:
            await asyncio.wait(running)

    async def _build_in_background(self, space: str) -> None:
        client = self._client
        assert isinstance(client, EdgeEngine)
        name = self._chunks(space)
        started = time.perf_counter()
        copy: Path | None = None
        proc: asyncio.subprocess.Process | None = None
        try:
            new = await self._index_due(space, copies=2)  # the copy, and the copy's rewritten segments
            if new is None:
                return
            log.info("space %s: %d chunks written since the search index was built; building it in the "
                     "background", space, new)  # fmt: skip
            # Not on the store's executor: the copy may take seconds, and searches need those threads. Neither
            # the copy nor the swap can be cut short by a cancel: it waits for them (and undoes the copy).
            begin = asyncio.ensure_future(asyncio.to_thread(client.begin_build, name))
            try:
                copy, points = await asyncio.shield(begin)
            except asyncio.CancelledError:
                await asyncio.wait([begin])
                if not begin.cancelled() and begin.exception() is None:
                    copy = begin.result()[0]
                raise
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(Path(__file__).with_name("edge_index_build.py")), str(copy), str(os.getpid()),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            self._build_procs[space] = proc
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise StoreError(f"the index build process exited with {proc.returncode}: "
                                 f"{err.decode(errors='replace').strip()[-500:]}")  # fmt: skip
            assert copy is not None
            finish = asyncio.ensure_future(asyncio.to_thread(client.finish_build, name, copy, points))
            copy = None  # finish_build removes it whatever happens
            try:
                swapped = await asyncio.shield(finish)
            except asyncio.CancelledError:
                await asyncio.wait([finish])
                raise
            took = time.perf_counter() - started
            if swapped:
                log.info("space %s: search index built in the background in %.1f s", space, took)
                self._index_built(space, "built", took)
        except asyncio.CancelledError:
            self._index_built(space, "cancelled", time.perf_counter() - started)
            raise
        except Exception as exc:  # the space keeps working unindexed; a write after INDEX_RETRY_S tries again
            log.warning("space %s: building the search index in the background failed (tried again after the "
                        "next write %d s from now): %s", space, INDEX_RETRY_S, exc)  # fmt: skip
            self._build_failed_at[space] = time.monotonic()
            self._index_built(space, "failed", time.perf_counter() - started)
        finally:
            if proc is not None and proc.returncode is None:
                proc.kill()
                await asyncio.shield(proc.wait())
            self._build_procs.pop(space, None)
            if copy is not None:
                await asyncio.to_thread(client.abort_build, name, copy)

    def _index_built(self, space: str, outcome: str, seconds: float) -> None:
        if self.on_index_build is not None:
            self.on_index_build(space, outcome, seconds)

    async def stop_index_builds(self, space: str | None = None) -> None:
        """Cancel the background index builds (of one space): the build process is killed, its copy removed."""
        tasks = [t for s, t in self._builds.items() if (space is None or s == space) and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def nodes_out_of_rotation(self) -> list[str]:
        """Qdrant nodes (QDRANT_URL) whose circuit is not closed: the others answer meanwhile."""
        if not isinstance(self._client, QdrantNodes):
            return []
        return [f"{n['url']} ({n['state']})" for n in self._client.states() if n["state"] != "closed"]

    # --- spaces ------------------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._run(self._client.get_collections)

    async def _spaces_with(self, kind: str) -> list[str]:
        """Space names of the collections named `{prefix}-{kind}-{space}`."""

        def names() -> list[str]:
            marker = f"{self.prefix}-{kind}-"
            cols = self._client.get_collections().collections
            return sorted(c.name[len(marker) :] for c in cols if c.name.startswith(marker))

        return await self._run(names)

    async def list_space_names(self) -> list[str]:
        return await self._spaces_with("chunks")

    async def staged_space_names(self) -> list[str]:
        """Spaces with a migration staging copy (after an interrupted migration)."""
        return await self._spaces_with("migrating")

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
            schema = self._schema_of(col)
            client = self._client
            indexed = client.indexing_state(self._chunks(space))[1] if isinstance(client, EdgeEngine) else None
            return SpaceInfo(
                name=space,
                embedding_model=str(meta.get("embedding_model", "?")),
                dimension=int(meta.get("dimension", 0)),
                chunks=chunks,
                documents=docs,
                schema=schema.version,
                lexical=schema.lexical,
                indexed_chunks=indexed,
                index_building=building,
            )

        building = space in self._builds and not self._builds[space].done()  # read here, on the event loop
        return await self._run(info)

    @staticmethod
    def _schema_of(col: models.CollectionInfo) -> SpaceSchema:
        meta = col.config.metadata or {}
        vectors = col.config.params.vectors
        named = isinstance(vectors, dict) and DENSE in vectors
        dense = vectors.get(DENSE) if isinstance(vectors, dict) else vectors
        kept = dense.quantization_config if dense is not None else None
        return SpaceSchema(int(meta.get("schema", SCHEMA if named else 1)), meta.get("lexical"),
                           "int8" if isinstance(kept, models.ScalarQuantization) else "none",
                           bool(meta.get("rebuild_pending")), bool(meta.get("scripts")),
                           isinstance(vectors, dict) and SENTENCES in vectors)  # fmt: skip

    async def space_schema(self, space: str) -> SpaceSchema | None:
        """None when the space does not exist. Cached: only migrate/drop/create change it."""
        if space in self._schemas:
            return self._schemas[space]

        def read() -> SpaceSchema | None:
            if not self._client.collection_exists(self._chunks(space)):
                return None
            return self._schema_of(self._client.get_collection(self._chunks(space)))

        schema = await self._run(read)
        if schema is not None:
            self._schemas[space] = schema
        return schema

    def _create_chunks(
        self, name: str, space: str, model: str, dimension: int, lexical: str, *, sentences: bool | None = None
    ) -> None:
        """`sentences`: with the SENTENCES vector (None: `sentence_vectors`). A migrated space without it
        stays without: the migration does not embed, and a space whose chunks only partly had sentence
        vectors would rank unevenly."""
        quantization = _INT8 if self.quantization == "int8" else None
        vectors = {DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE,
                                              quantization_config=quantization)}  # fmt: skip
        # Only ever scored on candidates named by id: no HNSW graph (m 0), as Qdrant advises for a multi-vector
        # that rescores. Kept as 16-bit floats: 2.0-2.3 of them a chunk (XQuAD) would otherwise take twice the
        # dense vectors' memory (a cosine moves by 1e-5 to 1e-3; docs/performance.md).
        if self.sentence_vectors if sentences is None else sentences:
            vectors[SENTENCES] = models.VectorParams(
                size=dimension, distance=models.Distance.COSINE, hnsw_config=models.HnswConfigDiff(m=0),
                multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
                datatype=models.Datatype.FLOAT16,
            )  # fmt: skip
        self._client.create_collection(
            name,
            vectors_config=vectors,
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            metadata={"embedding_model": model, "dimension": dimension, "space": space, "schema": SCHEMA,
                      "lexical": lexical, "scripts": True},
        )  # fmt: skip
        for key, kind in PAYLOAD_INDEXES.items():
            self._client.create_payload_index(name, key, kind)

    async def ensure_space(self, space: str, model: str, dimension: int, lexical: str) -> None:
        """Create the space's collections if absent; refuse a space built with another embedder or
        with an outdated schema or lexical analyzer (its new chunks would not match its old ones)."""

        def ensure() -> None:
            chunks = self._chunks(space)
            if self._client.collection_exists(chunks):
                self._check_embedding(space, model, dimension)
                info = self._client.get_collection(chunks)
                schema = self._schema_of(info)
                if schema.version != SCHEMA or schema.lexical != lexical:
                    raise SpaceNeedsMigrationError(
                        f"space {space!r} was built with schema {schema.version} and lexical analyzer "
                        f"{schema.lexical!r}; this version writes schema {SCHEMA} with {lexical!r}. Bring "
                        f"it up to date without re-embedding (nothing is lost): {migrate_hint(space)}"
                    )
                # a space from before an index was added, or whose creation was cut off after the collection
                for key in PAYLOAD_INDEXES.keys() - (info.payload_schema or {}).keys():
                    self._client.create_payload_index(chunks, key, PAYLOAD_INDEXES[key])
                    log.info("space %s: payload index on %s created", space, key)
            else:
                self._create_chunks(chunks, space, model, dimension, lexical)
                log.info("created space %s", space)
            if not self._client.collection_exists(self._docs(space)):
                self._client.create_collection(self._docs(space), vectors_config={})

        self._schemas.pop(space, None)
        await self._write(ensure)

    def _check_embedding(self, space: str, model: str, dimension: int) -> None:
        col = self._client.get_collection(self._chunks(space))
        meta = col.config.metadata or {}
        params = col.config.params.vectors
        if isinstance(params, dict):
            params = params.get(DENSE)
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
            for name in (self._chunks(space), self._docs(space), self._summaries(space)):
                if self._client.collection_exists(name):
                    self._client.delete_collection(name)

        self._schemas.pop(space, None)
        await self.stop_index_builds(space)
        await self._run(drop)

    # --- chunks ------------------------------------------------------------------------------------
    async def upsert_chunks(self, space: str, points: Sequence[ChunkPoint]) -> None:
        schema = await self.space_schema(space)
        await self._upsert(self._chunks(space), points, sentences=schema is not None and schema.sentences)

    @staticmethod
    def _of_document(doc_id: str, *conditions: models.Condition, must_not: models.Condition | None = None
                     ) -> models.Filter:  # fmt: skip
        """The chunks a document's writes own: its own, and those of its mail attachments."""
        owned = [
            models.FieldCondition(key=key, match=models.MatchValue(value=doc_id)) for key in ("document_id", "owner")
        ]
        return models.Filter(must=list(conditions) or None, should=owned, must_not=[must_not] if must_not else None)

    async def delete_document_chunks(self, space: str, doc_id: str, *, keep_version: str | None = None) -> None:
        """Every chunk of a document, or (keep_version) every chunk not tagged with that version."""
        keep = None
        if keep_version:
            keep = models.FieldCondition(key="version", match=models.MatchValue(value=keep_version))
        selector = models.FilterSelector(filter=self._of_document(doc_id, must_not=keep))
        await self._run(lambda: self._client.delete(self._chunks(space), selector, wait=True))

    async def settle_version(self, space: str, doc_id: str, version: str, tags: Sequence[str]) -> None:
        """Tag `version` alone on the document's chunks tagged with any of `tags` (those a write shared)."""
        flt = self._of_document(doc_id, models.FieldCondition(key="version", match=models.MatchAny(any=list(tags))))
        await self._run(lambda: self._client.set_payload(self._chunks(space), {"version": version}, flt, wait=True))

    async def document_chunk_hashes(self, space: str, doc_id: str) -> dict[str, str]:
        """{chunk id: hash of its text} of every chunk of a document (payload field only)."""
        flt = self._of_document(doc_id)

        def scroll() -> dict[str, str]:
            out: dict[str, str] = {}
            offset: Any = None
            while True:
                points, offset = self._client.scroll(self._chunks(space), flt, limit=4096, offset=offset,
                                                     with_payload=["chunk_hash"])  # fmt: skip
                out.update((str(p.id), str((p.payload or {}).get("chunk_hash", ""))) for p in points)
                if offset is None:
                    return out

        return await self._run(scroll)

    async def select_chunks(
        self, space: str, filters: ChunkFilter | None, *, document_id: str | None = None, limit: int
    ) -> list[ChunkPoint]:
        """Up to `limit` chunks (payload, no vectors) that match `filters` and, given, belong to one document."""
        flt = filters.to_qdrant() if filters is not None else None
        if document_id is not None:
            own = models.FieldCondition(key="document_id", match=models.MatchValue(value=document_id))
            flt = models.Filter(must=[own, *(flt.must if flt is not None and isinstance(flt.must, list) else [])])

        def scroll() -> list[ChunkPoint]:
            out: list[ChunkPoint] = []
            offset: Any = None
            while len(out) < limit:
                points, offset = self._client.scroll(self._chunks(space), flt, limit=min(1024, limit - len(out)),
                                                     offset=offset, with_payload=True)  # fmt: skip
                out.extend(ChunkPoint(str(p.id), [], p.payload or {}) for p in points)
                if offset is None:
                    break
            return out

        return await self._run(scroll)

    # --- queries: each is one Query API call, the same in embedded and server mode ---------------
    async def search_dense(
        self, space: str, vector: list[float], limit: int, flt: ChunkFilter | None = None, *, with_vectors: bool = False
    ) -> list[ScoredChunk]:
        schema = await self._require(space, lexical=False)
        using = DENSE if schema.version >= 2 else None  # schema 1: the unnamed vector

        def query() -> list[ScoredChunk]:
            res = self._client.query_points(
                self._chunks(space), query=vector, using=using, limit=limit, with_payload=True,
                query_filter=flt.to_qdrant() if flt else None, search_params=self.dense_params,
                with_vectors=([DENSE] if using else True) if with_vectors else False,
            )  # fmt: skip
            return [self._scored(p, dense=True) for p in res.points]

        return await self._run(query)

    async def search_sparse(
        self, space: str, terms: SparseTerms, limit: int, flt: ChunkFilter | None = None, *, with_vectors: bool = False
    ) -> list[ScoredChunk]:
        await self._require(space, lexical=True)
        if not terms[0]:
            return []  # nothing lexical to match (only stop words)

        def query() -> list[ScoredChunk]:
            res = self._client.query_points(
                self._chunks(space), query=models.SparseVector(indices=terms[0], values=terms[1]), using=SPARSE,
                limit=limit, with_payload=True, query_filter=flt.to_qdrant() if flt else None,
                with_vectors=[DENSE] if with_vectors else False,
            )  # fmt: skip
            return [self._scored(p, sparse=True) for p in res.points]

        return await self._run(query)

    async def search_both(
        self,
        space: str,
        vector: list[float],
        terms: SparseTerms,
        candidates: int,
        flt: ChunkFilter | None = None,
        *,
        with_vectors: bool = False,
        with_payload: bool | list[str] = True,
    ) -> list[ScoredChunk]:
        """The union of each side's best `candidates`, every one scored by both sides (0: no shared term).

        Two round trips, all scoring in the engine: each side's top `candidates` (one batch), then each
        side scores the other side's candidates it did not find, restricted to their ids (a `HasId`
        filter: exact, and as cheap as the few points it names), and, in a space that keeps sentence
        vectors, every candidate's sentences score theirs in the same batch. Our weighted fusion needs both scores
        of every candidate, which no single prefetch + fusion/formula query gives (a formula sees a
        point's score only from the prefetches that found it; docs/evaluation.md measures the rank
        fusions and a formula against it).

        `with_payload=False`: the candidates come without their payload (`load_payloads` fills the few
        that fusion keeps): reading the payload of all ~100 candidates is a third of the engine's time.
        A list of fields: the candidates come with those fields only.
        """  # fmt: skip
        schema = await self._require(space, lexical=True)
        if not terms[0]:
            return await self.search_dense(space, vector, candidates, flt, with_vectors=with_vectors)
        qfilter = flt.to_qdrant() if flt else None
        sparse = models.SparseVector(indices=terms[0], values=terms[1])
        vectors: list[str] | bool = [DENSE] if with_vectors else False

        def only(ids: Iterable[str]) -> models.Filter:
            has_id = models.HasIdCondition(has_id=list(ids))
            return models.Filter(must=[qfilter, has_id] if qfilter else [has_id])

        def query() -> list[ScoredChunk]:
            by_dense, by_sparse = self._client.query_batch_points(
                self._chunks(space),
                [
                    models.QueryRequest(query=vector, using=DENSE, limit=candidates, filter=qfilter,
                                        with_payload=with_payload, with_vector=vectors, params=self.dense_params),
                    models.QueryRequest(query=sparse, using=SPARSE, limit=candidates, filter=qfilter,
                                        with_payload=with_payload, with_vector=vectors),
                ],
            )  # fmt: skip
            out = {str(p.id): self._scored(p, dense=True) for p in by_dense.points}
            sparse_missing = set(out)
            dense_missing: list[str] = []
            for p in by_sparse.points:
                if (found := out.get(str(p.id))) is not None:
                    found.sparse_score = float(p.score)
                    sparse_missing.discard(found.id)
                else:
                    out[str(p.id)] = self._scored(p, sparse=True)
                    dense_missing.append(str(p.id))
            for chunk_id in sparse_missing:
                out[chunk_id].sparse_score = 0.0  # unless the rescoring below finds a shared term
            rescore = []
            if sparse_missing:
                rescore.append(models.QueryRequest(query=sparse, using=SPARSE, filter=only(sparse_missing),
                                                   limit=len(sparse_missing), with_payload=False))  # fmt: skip
            if dense_missing:
                rescore.append(models.QueryRequest(query=vector, using=DENSE, filter=only(dense_missing),
                                                   limit=len(dense_missing), with_payload=False,
                                                   params=self.dense_params))  # fmt: skip
            if schema.sentences and out:
                rescore.append(models.QueryRequest(query=[vector], using=SENTENCES, filter=only(out),
                                                   limit=len(out), with_payload=False))  # fmt: skip
            if rescore:
                for request, res in zip(rescore, self._client.query_batch_points(self._chunks(space), rescore),
                                        strict=True):  # fmt: skip
                    for p in res.points:
                        chunk = out[str(p.id)]
                        if request.using == DENSE:
                            chunk.dense_score = chunk.score = float(p.score)
                        elif request.using == SENTENCES:
                            chunk.sentence_score = float(p.score)
                        else:
                            chunk.sparse_score = float(p.score)
            return list(out.values())

        return await self._run(query)

    async def load_payloads(self, space: str, chunks: list[ScoredChunk]) -> list[ScoredChunk]:
        """Fill in the payload of chunks that came without one, or with a few fields only (`search_both`).

        A chunk deleted since it was found (its document removed or re-indexed meanwhile) is left out:
        there is nothing left to quote or cite.
        """
        missing = [c.id for c in chunks if "text" not in c.payload]
        if not missing:
            return chunks

        def fetch() -> dict[str, dict[str, Any]]:
            found = self._client.retrieve(self._chunks(space), missing, with_payload=True, with_vectors=False)
            return {str(p.id): p.payload or {} for p in found}

        payloads = await self._run(fetch)
        out = []
        for c in chunks:
            if "text" not in c.payload:
                if (payload := payloads.get(c.id)) is None:
                    continue
                c.payload = payload
            out.append(c)
        return out

    async def search_fused(
        self,
        space: str,
        vector: list[float],
        terms: SparseTerms,
        candidates: int,
        limit: int,
        fusion: Fusion,
        flt: ChunkFilter | None = None,
        *,
        with_vectors: bool = False,
    ) -> list[ScoredChunk]:
        """Qdrant's own rank fusion (RRF or DBSF) of both sides' candidates."""  # fmt: skip
        await self._require(space, lexical=True)
        qfilter = flt.to_qdrant() if flt else None
        prefetch = [
            models.Prefetch(query=vector, using=DENSE, limit=candidates, filter=qfilter, params=self.dense_params)
        ]
        if terms[0]:
            sparse = models.SparseVector(indices=terms[0], values=terms[1])
            prefetch.append(models.Prefetch(query=sparse, using=SPARSE, limit=candidates, filter=qfilter))
        kind = models.Fusion.RRF if fusion == "rrf" else models.Fusion.DBSF

        def query() -> list[ScoredChunk]:
            res = self._client.query_points(
                self._chunks(space), prefetch=prefetch, query=models.FusionQuery(fusion=kind), limit=limit,
                with_payload=True, with_vectors=[DENSE] if with_vectors else False,
            )  # fmt: skip
            return [self._scored(p) for p in res.points]

        return await self._run(query)

    @staticmethod
    def _scored(p: models.ScoredPoint, *, dense: bool = False, sparse: bool = False) -> ScoredChunk:
        return ScoredChunk(
            str(p.id), float(p.score), p.payload or {},
            dense_score=float(p.score) if dense else None, sparse_score=float(p.score) if sparse else None,
            vector=_dense_of(p.vector) or None,
        )  # fmt: skip

    async def _require(self, space: str, *, lexical: bool) -> SpaceSchema:
        schema = await self.space_schema(space)
        if schema is None:
            raise StoreError(f"space {space!r} does not exist")
        if lexical and schema.version < 2:
            raise SpaceNeedsMigrationError(
                f"space {space!r} predates lexical (sparse) retrieval and can only answer dense queries. "
                f"Add the lexical side without re-embedding (nothing is lost): {migrate_hint(space)}"
            )
        return schema

    async def record_scripts(self, space: str, share: Callable[[str], float], batch: int = 1000) -> int:
        """Give every chunk that lacks it its CYRILLIC_SHARE, `share` of its text (chunks indexed before the
        field existed), then mark the space as carrying it; returns the chunks given one. Nothing else of a
        chunk changes, and a run cut short is finished by the next one."""
        name = self._chunks(space)

        def record() -> int:
            done = 0
            offset: Any = None
            while True:
                points, offset = self._client.scroll(name, limit=batch, offset=offset,
                                                     with_payload=["text", CYRILLIC_SHARE])  # fmt: skip
                by_value: dict[float, list[str]] = {}
                for p in points:
                    if CYRILLIC_SHARE not in (p.payload or {}):
                        value = share(str((p.payload or {}).get("text", "")))
                        by_value.setdefault(value, []).append(str(p.id))
                for value, ids in by_value.items():
                    self._client.set_payload(name, {CYRILLIC_SHARE: value}, points=ids, wait=True)
                    done += len(ids)
                if offset is None:
                    break
            self._client.update_collection(name, metadata={"scripts": True})
            return done

        recorded = await self._write(record)
        self._schemas.pop(space, None)
        return recorded

    async def count_chunks(self, space: str) -> int:
        return await self._run(lambda: self._client.count(self._chunks(space), exact=True).count)

    # --- migration: a staging copy with the current schema, then swapped in ---------------------
    # Crash-safe by construction: the original is dropped only once the staging copy is complete
    # (marked in its metadata), and a complete staging copy is never dropped before it is swapped in.
    async def staging_state(self, space: str) -> Literal["none", "partial", "complete"]:
        def state() -> Literal["none", "partial", "complete"]:
            if not self._client.collection_exists(self._staging(space)):
                return "none"
            meta = self._client.get_collection(self._staging(space)).config.metadata or {}
            return "complete" if meta.get("migration") == "complete" else "partial"

        return await self._run(state)

    async def create_staging(self, space: str, model: str, dimension: int, lexical: str) -> None:
        def create() -> None:
            if self._client.collection_exists(self._staging(space)):
                self._client.delete_collection(self._staging(space))  # an unfinished copy: start over
            source = self._schema_of(self._client.get_collection(self._chunks(space)))
            self._create_chunks(self._staging(space), space, model, dimension, lexical, sentences=source.sentences)

        await self._write(create)

    async def complete_staging(self, space: str, model: str, dimension: int, lexical: str) -> None:
        meta = {"embedding_model": model, "dimension": dimension, "space": space, "schema": SCHEMA,
                "lexical": lexical, "migration": "complete"}  # fmt: skip
        await self._write(lambda: self._client.update_collection(self._staging(space), metadata=meta))

    async def chunk_ids(self, space: str, *, staging: bool = False) -> list[str]:
        name = self._staging(space) if staging else self._chunks(space)

        def scroll_ids() -> list[str]:
            out: list[str] = []
            offset: Any = None
            while True:
                points, offset = self._client.scroll(name, limit=5000, offset=offset, with_payload=False)
                out.extend(str(p.id) for p in points)
                if offset is None:
                    return out

        return await self._run(scroll_ids)

    async def read_chunks(self, space: str, ids: Sequence[str], *, staging: bool = False) -> list[ChunkPoint]:
        """Points by id with dense vector and payload (sparse vectors are recomputed, never read)."""
        name = self._staging(space) if staging else self._chunks(space)

        def read() -> list[ChunkPoint]:
            found = self._client.retrieve(name, list(ids), with_payload=True, with_vectors=True)
            return [ChunkPoint(str(r.id), _dense_of(r.vector), r.payload or {}, sentences=_sentences_of(r.vector))
                    for r in found]  # fmt: skip

        return await self._run(read)

    async def upsert_staging(self, space: str, points: Sequence[ChunkPoint]) -> None:
        await self._upsert(self._staging(space), points, sentences=True)

    async def swap_in_staging(self, space: str, model: str, dimension: int, lexical: str, batch: int = 512) -> int:
        """Replace the space's chunk collection by the complete staging copy; returns the points moved."""
        self._schemas.pop(space, None)

        def swap() -> int:
            chunks, staging = self._chunks(space), self._staging(space)
            copied = self._schema_of(self._client.get_collection(staging))
            if self._client.collection_exists(chunks):
                self._client.delete_collection(chunks)
            self._create_chunks(chunks, space, model, dimension, lexical, sentences=copied.sentences)
            moved = 0
            offset: Any = None
            while True:
                points, offset = self._client.scroll(staging, limit=batch, offset=offset, with_payload=True,
                                                     with_vectors=True)  # fmt: skip
                if points:
                    structs = [models.PointStruct(id=p.id, vector=p.vector or {}, payload=p.payload) for p in points]
                    self._client.upsert(chunks, structs, wait=True)
                    moved += len(points)
                if offset is None:
                    break
            self._client.delete_collection(staging)
            return moved

        return await self._write(swap)

    # --- stored summaries (services/summarizing.py): one payload-only point each, per space ---------
    async def get_summary(self, space: str, key: str) -> dict[str, Any] | None:
        def get() -> dict[str, Any] | None:
            if not self._client.collection_exists(self._summaries(space)):
                return None
            found = self._client.retrieve(self._summaries(space), [key], with_payload=True)
            return dict(found[0].payload or {}) if found else None

        return await self._run(get)

    async def put_summary(self, space: str, key: str, payload: dict[str, Any]) -> None:
        def put() -> None:
            name = self._summaries(space)
            if not self._client.collection_exists(name):
                self._client.create_collection(name, vectors_config={})
                self._client.create_payload_index(name, "documents", models.PayloadSchemaType.KEYWORD)
            self._client.upsert(name, [models.PointStruct(id=key, vector={}, payload=payload)], wait=True)

        await self._write(put)

    async def list_summaries(self, space: str) -> list[tuple[str, dict[str, Any]]]:
        def scroll_all() -> list[tuple[str, dict[str, Any]]]:
            name = self._summaries(space)
            out: list[tuple[str, dict[str, Any]]] = []
            offset: Any = None
            while self._client.collection_exists(name):
                points, offset = self._client.scroll(name, limit=1000, offset=offset, with_payload=True)
                out.extend((str(p.id), dict(p.payload or {})) for p in points)
                if offset is None:
                    break
            return out

        return await self._run(scroll_all)

    async def delete_summaries_of(self, space: str, document_ids: Sequence[str]) -> None:
        """Every stored summary that read any of these documents."""
        selector = models.FilterSelector(filter=models.Filter(must=[
            models.FieldCondition(key="documents", match=models.MatchAny(any=list(document_ids)))]))  # fmt: skip

        def delete() -> None:
            if self._client.collection_exists(self._summaries(space)):
                self._client.delete(self._summaries(space), selector, wait=True)

        await self._run(delete)

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

    async def get_documents(self, space: str, doc_ids: Sequence[str]) -> dict[str, DocumentRecord]:
        """The registry entries of those of `doc_ids` that have one, by id: one read for a batch of files."""

        def get() -> dict[str, DocumentRecord]:
            found = self._client.retrieve(self._docs(space), list(dict.fromkeys(doc_ids)), with_payload=True)
            return {str(r.id): DocumentRecord.from_point(str(r.id), r.payload or {}) for r in found}

        return await self._run(get) if doc_ids else {}

    async def put_document(self, record: DocumentRecord) -> None:
        await self.put_documents([record])

    async def put_documents(self, records: Sequence[DocumentRecord]) -> None:
        """Write registry entries of one space in one operation (a batch of files' journal, or their commit):
        a call per file cost a quarter of a millisecond, as much as embedding a chunk on a GPU."""
        if not records:
            return
        spaces = {r.space for r in records}
        if len(spaces) > 1:
            raise ValueError(f"put_documents writes one space at a time, got {sorted(spaces)}")
        points = [models.PointStruct(id=r.id, vector={}, payload=r.to_payload()) for r in records]
        await self._write(lambda: self._client.upsert(self._docs(records[0].space), points, wait=True))

    async def remove_document(self, space: str, doc_id: str) -> None:
        selector = models.PointIdsList(points=[doc_id])
        await self._run(lambda: self._client.delete(self._docs(space), selector, wait=True))
