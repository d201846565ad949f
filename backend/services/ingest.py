"""Files -> parsed text -> chunks -> vectors -> store, idempotent and safe to interrupt at any moment.

How a document is (re)written, with the registry record as a journal:
  1. record.garbage += (new version, its chunk count)        # so a crash mid-write can be cleaned up
  2. upsert the new version's chunks (ids derived from document, version, index)
  3. record.version = new; record.garbage = [(old version, old count)]
  4. delete every garbage chunk by id; record.garbage = []
Searches therefore always find a complete version of each document, and `repair()` finishes any
journal left behind by a crash. Unchanged files (same content hash, same chunking) are skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import PurePosixPath
from typing import Literal

from backend.adapters.embedder import Embedder
from backend.adapters.store import ChunkPoint, SparseTerms, VectorStore, chunk_id, document_id
from backend.adapters.store import DocumentRecord as DocumentRecord  # what the service returns; the API reads it
from backend.observability import Metrics
from backend.services.chunking import Chunk, chunk_sections
from backend.services.conversations.chunking import chunk_conversations
from backend.services.errors import SpaceNotFoundError
from backend.services.parsing import ParsedDocument, ParseError, parse
from backend.services.text_analysis import ANALYZER_VERSION, document_vector, lexical_windows

log = logging.getLogger(__name__)

FileStatus = Literal["new", "changed", "unchanged", "failed", "deleted"]


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class SourceFile:
    path: str  # relative POSIX path: the document's identity inside its space
    data: bytes
    modified_at: float | None = None  # the file's modification time, where the sender knows it


def path_metadata(path: str) -> dict[str, object]:
    """Payload fields that filters match: the extension and every folder the document lies in."""
    pure = PurePosixPath(path)
    folders = ["/".join(pure.parts[:i]) for i in range(1, len(pure.parts))]
    return {"file_type": pure.suffix.lower().lstrip("."), "folders": folders}


def sparse_vectors(texts: list[str], window_words: int) -> list[SparseTerms]:
    """Lexical vectors of one document's chunks (in order), each over its window of neighbours."""
    windows = lexical_windows(texts, window_words) if window_words else texts
    return [document_vector(w, avg_words=max(window_words, 60)) for w in windows]


@dataclass
class FileResult:
    path: str
    status: FileStatus
    document_id: str
    chunks: int = 0
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)  # parts of the file left out (a broken message), and why
    reused: int = 0  # chunks whose text was already indexed: their vectors were kept, not computed again


@dataclass
class SyncPlan:
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing: list[DocumentRecord] = field(default_factory=list)  # indexed, but not in the manifest


@dataclass
class _Pending:
    source: SourceFile
    record: DocumentRecord
    status: FileStatus
    version: str
    chunks: list[Chunk]
    sparse: list[SparseTerms]
    title: str
    file_hash: str
    warnings: list[str]


ProgressCallback = Callable[[int, int], None]  # (files finished, chunks written) since the last call


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _all_set(vectors: list[list[float] | None]) -> list[list[float]]:
    out = [v for v in vectors if v is not None]
    assert len(out) == len(vectors)
    return out


class IngestService:
    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        metrics: Metrics,
        *,
        chunk_tokens: int,
        overlap_tokens: int,
        batch_size: int,
        lexical_window_words: int = 200,
        conversation_tz: tzinfo = UTC,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.metrics = metrics
        # Writes to one space are serialised: concurrent uploads of the same document must not
        # interleave their journal updates. Reads never wait.
        self._locks: dict[str, asyncio.Lock] = {}
        self.chunk_tokens = min(chunk_tokens, embedder.max_tokens)
        self.overlap_tokens = overlap_tokens
        self.batch_size = batch_size
        # Part of every version: changing the embedder or chunking re-indexes unchanged files too (chunks
        # whose text stays the same keep their vectors). The zone of chat times without one decides their
        # days and the times chunks show: a non-default one is part of the version too.
        self.conversation_tz = conversation_tz
        self.chunker_signature = f"{embedder.model_name}|{self.chunk_tokens}|{self.overlap_tokens}"
        if str(conversation_tz) != "UTC":
            self.chunker_signature += f"|tz={conversation_tz}"
        # Not part of versions: sparse vectors are recomputed from stored text by cli.migrate, no re-embedding.
        self.lexical_window_words = lexical_window_words
        self.lexical_signature = f"{ANALYZER_VERSION}/window={lexical_window_words}"

    def version_of(self, file_hash: str) -> str:
        return hashlib.sha256(f"{file_hash}|{self.chunker_signature}".encode()).hexdigest()[:32]

    # --- planning ------------------------------------------------------------------------------
    async def plan(self, space: str, manifest: dict[str, str]) -> SyncPlan:
        """Compare {path: content sha256} with what the space holds; writes nothing."""
        records = await self._records(space)
        by_path = {r.path: r for r in records}
        plan = SyncPlan()
        for path, file_hash in sorted(manifest.items()):
            rec = by_path.get(path)
            if rec is None or rec.version is None:
                plan.new.append(path)
            elif rec.version != self.version_of(file_hash) or rec.garbage:
                plan.changed.append(path)
            else:
                plan.unchanged.append(path)
        plan.missing = [r for r in records if r.path not in manifest]
        return plan

    async def _records(self, space: str) -> list[DocumentRecord]:
        if not await self.store.space_exists(space):
            return []
        return await self.store.list_documents(space)

    # --- writing -------------------------------------------------------------------------------
    async def ingest(
        self,
        space: str,
        files: Sequence[SourceFile],
        *,
        dry_run: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> list[FileResult]:
        """Index `files` into `space`. Broken files are reported as failed; the others still index."""
        if dry_run:
            return await self._ingest(space, files, dry_run=True, on_progress=on_progress)
        async with self.lock(space):
            await self.store.ensure_space(
                space, self.embedder.model_name, self.embedder.dimension, self.lexical_signature
            )
            return await self._ingest(space, files, dry_run=False, on_progress=on_progress)

    def lock(self, space: str) -> asyncio.Lock:
        """The space's write lock (also held by migrations)."""
        return self._locks.setdefault(space, asyncio.Lock())

    async def _ingest(
        self, space: str, files: Sequence[SourceFile], *, dry_run: bool, on_progress: ProgressCallback | None
    ) -> list[FileResult]:
        exists = not dry_run or await self.store.space_exists(space)
        results: list[FileResult] = []
        pending: list[_Pending] = []
        for source in files:
            doc_id = document_id(space, source.path)
            existing = await self.store.get_document(space, doc_id) if exists else None
            file_hash = content_hash(source.data)
            version = self.version_of(file_hash)
            if existing and existing.version == version:
                if not dry_run:
                    await self._collect_garbage(space, existing)  # left by an interrupted run
                results.append(FileResult(source.path, "unchanged", doc_id, existing.chunk_count))
                self.metrics.ingest_files.labels(space, "unchanged").inc()
                if on_progress:
                    on_progress(1, 0)
                continue
            try:
                parsed, chunks, sparse = await asyncio.to_thread(self._parse_and_chunk, source)
            except ParseError as exc:
                results.append(FileResult(source.path, "failed", doc_id, reason=str(exc)))
                self.metrics.ingest_files.labels(space, "failed").inc()
                log.warning("skipped %s: %s", source.path, exc)
                if on_progress:
                    on_progress(1, 0)
                continue
            status: FileStatus = "changed" if existing and existing.version else "new"
            if dry_run:
                results.append(FileResult(source.path, status, doc_id, len(chunks), warnings=parsed.warnings))
                continue
            record = existing or DocumentRecord(
                id=doc_id,
                space=space,
                path=source.path,
                title=parsed.title,
                version=None,
                chunk_count=0,
                size=len(source.data),
                indexed_at=0.0,
            )
            pending.append(
                _Pending(source, record, status, version, chunks, sparse, parsed.title, file_hash, parsed.warnings)
            )
        if pending:
            results.extend(await self._write(space, pending, on_progress))
        order = {f.path: i for i, f in enumerate(files)}
        return sorted(results, key=lambda r: order.get(r.path, 0))

    def _parse_and_chunk(self, source: SourceFile) -> tuple[ParsedDocument, list[Chunk], list[SparseTerms]]:
        try:
            parsed = parse(source.data, source.path, default_tz=self.conversation_tz)
        except ParseError:
            raise
        except Exception as exc:  # a parser library choking on hostile input is still a bad file
            raise ParseError(f"cannot parse: {type(exc).__name__}: {exc}") from exc
        if parsed.conversation is not None:
            chunks = chunk_conversations(
                parsed.conversation, self.embedder.tokenize, max_tokens=self.chunk_tokens,
                overlap_tokens=self.overlap_tokens,
            )  # fmt: skip
        else:
            chunks = chunk_sections(
                parsed.sections, self.embedder.tokenize, max_tokens=self.chunk_tokens,
                overlap_tokens=self.overlap_tokens,
            )  # fmt: skip
        if not chunks:
            raise ParseError("no text found in the file")
        return parsed, chunks, sparse_vectors([c.text for c in chunks], self.lexical_window_words)

    async def _write(
        self, space: str, pending: list[_Pending], on_progress: ProgressCallback | None
    ) -> list[FileResult]:
        # 1. journal the versions about to be written
        for p in pending:
            if p.record.version != p.version and (p.version, len(p.chunks)) not in p.record.garbage:
                p.record.garbage.append((p.version, len(p.chunks)))
            await self.store.put_document(p.record)

        # 2. embed and upsert all chunks of the group in batches; the next batch is embedded while
        #    the previous one is written, so the embedder (the bottleneck) never waits on the store.
        #    A chunk whose text the document's indexed version already holds keeps its vector.
        known = await self._known_vectors(space, pending)
        reused: dict[str, int] = {}
        points = [(p, c) for p in pending for c in p.chunks]
        write_task: asyncio.Task[None] | None = None
        try:
            for start in range(0, len(points), self.batch_size):
                batch = points[start : start + self.batch_size]
                hashes = [_text_hash(c.text) for _, c in batch]
                fresh = [i for i, h in enumerate(hashes) if h not in known]
                computed = await self.embedder.embed_passages([batch[i][1].text for i in fresh]) if fresh else []
                vectors = [known.get(h) for h in hashes]
                for i, vec in zip(fresh, computed, strict=True):
                    vectors[i] = vec
                for (p, _), h in zip(batch, hashes, strict=True):
                    if h in known:
                        reused[p.record.id] = reused.get(p.record.id, 0) + 1
                if write_task is not None:
                    await write_task
                now = time.time()
                structs = [
                    ChunkPoint(
                        chunk_id(p.record.id, p.version, c.index),
                        vec,
                        self._payload(space, p, c, now),
                        p.sparse[c.index],
                    )
                    for (p, c), vec in zip(batch, _all_set(vectors), strict=True)
                ]
                write_task = asyncio.create_task(self.store.upsert_chunks(space, structs))
            if write_task is not None:
                await write_task
        finally:
            # On failure, never leave a write running unobserved; the journal lets repair() clean up.
            if write_task is not None and not write_task.done():
                write_task.cancel()
                await asyncio.gather(write_task, return_exceptions=True)

        # 3 + 4. commit each document, then drop its superseded chunks
        results: list[FileResult] = []
        for p in pending:
            rec = p.record
            superseded = (rec.version, rec.chunk_count) if rec.version and rec.version != p.version else None
            rec.garbage = [g for g in rec.garbage if g[0] != p.version]
            if superseded:
                rec.garbage.append(superseded)
            rec.version, rec.chunk_count = p.version, len(p.chunks)
            rec.title, rec.size, rec.indexed_at = p.title, len(p.source.data), time.time()
            rec.content_sha256 = p.file_hash
            await self.store.put_document(rec)
            await self._collect_garbage(space, rec)
            kept = reused.get(rec.id, 0)
            results.append(FileResult(p.source.path, p.status, rec.id, len(p.chunks), warnings=p.warnings, reused=kept))
            self.metrics.ingest_files.labels(space, p.status).inc()
            self.metrics.ingest_chunks.labels(space).inc(len(p.chunks))
            self.metrics.ingest_reused_chunks.labels(space).inc(kept)
            if on_progress:
                on_progress(1, len(p.chunks))
        return results

    async def _known_vectors(self, space: str, pending: list[_Pending]) -> dict[str, list[float]]:
        """{text hash: vector} of the chunks of the indexed versions of `pending` documents whose text comes
        again in the new version (a grown chat export: all but its last day), read in batches."""
        wanted = {_text_hash(c.text) for p in pending if p.record.version for c in p.chunks}
        known: dict[str, list[float]] = {}
        for p in pending:
            rec = p.record
            if not rec.version or not rec.chunk_count:
                continue
            ids = [chunk_id(rec.id, rec.version, i) for i in range(rec.chunk_count)]
            for start in range(0, len(ids), 1024):
                for point in await self.store.read_chunks(space, ids[start : start + 1024]):
                    h = point.payload.get("chunk_hash")
                    if isinstance(h, str) and h in wanted and point.vector:
                        known[h] = point.vector
        return known

    def _payload(self, space: str, p: _Pending, c: Chunk, now: float) -> dict[str, object]:
        return {
            **(c.meta or {}),
            **path_metadata(p.source.path),
            "modified_at": p.source.modified_at,
            "indexed_at": now,
            "space": space,
            "document_id": p.record.id,
            "path": p.source.path,
            "title": p.title,
            "heading": c.heading,
            "page": c.page,
            "chunk": c.index,
            "chunk_count": len(p.chunks),
            "text": c.text,
            "version": p.version,
            "content_sha256": p.file_hash,
            "chunk_hash": _text_hash(c.text),
        }

    async def _collect_garbage(self, space: str, rec: DocumentRecord) -> None:
        if not rec.garbage:
            return
        ids = [chunk_id(rec.id, v, i) for v, n in rec.garbage if v != rec.version for i in range(n)]
        await self.store.delete_chunks(space, ids)
        rec.garbage = []
        await self.store.put_document(rec)

    # --- deleting and repairing --------------------------------------------------------------
    async def documents(self, space: str) -> list[DocumentRecord]:
        if not await self.store.space_exists(space):
            raise SpaceNotFoundError(space)
        return await self.store.list_documents(space)

    async def delete_document(self, space: str, doc_id: str) -> DocumentRecord | None:
        if not await self.store.space_exists(space):
            raise SpaceNotFoundError(space)
        async with self.lock(space):
            return await self._delete(space, doc_id)

    async def _delete(self, space: str, doc_id: str) -> DocumentRecord | None:
        rec = await self.store.get_document(space, doc_id)
        if rec is None:
            return None
        if rec.version:
            rec.garbage.append((rec.version, rec.chunk_count))
        rec.version = None
        await self.store.put_document(rec)  # journal first: a crash here is finished by repair()
        await self._collect_garbage(space, rec)
        await self.store.remove_document(space, doc_id)
        self.metrics.ingest_deleted_documents.labels(space).inc()
        return rec

    async def drop_space(self, space: str) -> None:
        """Delete a whole space: only ever on an explicit request (DELETE /spaces, --recreate)."""
        if not await self.store.space_exists(space):
            raise SpaceNotFoundError(space)
        async with self.lock(space):
            await self.store.drop_space(space)
        log.warning("dropped space %s", space)

    async def repair(self, space: str, *, locked: bool = False) -> int:
        """Finish what an interrupted run left: stale chunks deleted, unfinished first writes undone.

        `locked`: the caller already holds the space's write lock."""
        if locked:
            broken = await self._repair(space)
        else:
            async with self.lock(space):
                broken = await self._repair(space)
        if broken:
            log.info("repaired %d interrupted document writes in space %s", broken, space)
        return broken

    async def _repair(self, space: str) -> int:
        broken = [r for r in await self._records(space) if r.garbage]
        for rec in broken:
            await self._collect_garbage(space, rec)
            if rec.version is None:  # a first ingestion that never committed: remove it entirely
                await self.store.remove_document(space, rec.id)
        return len(broken)
