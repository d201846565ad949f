"""Files -> parsed text -> chunks -> vectors -> store, idempotent and safe to interrupt at any moment.

A chunk's id is its document and its text (store.chunk_id), so a chunk that a new version keeps (the
old messages of a grown chat) keeps its id and its vector; every chunk is tagged with the version that
wrote it. How a document is (re)written, with the registry record as a journal:
  1. record.writing = new version                            # so a crash mid-write can be cleaned up
  2. upsert the new version's chunks: new ones tagged `new`, kept ones (same id) re-tagged [old, new]
  3. record.version = new; record.writing = None; record.garbage = [(old version, old count)]
  4. delete the document's chunks not tagged `new`, tag the kept ones `new` alone; record.garbage = []
Searches therefore always find a complete version of each document, and `repair()` finishes any
journal left behind by a crash: after 1-2 it deletes the chunks tagged only `new` and tags the kept ones
`old` again (they hold the new version's positions, so the record is marked stale and rewritten next
time). Unchanged files (same content hash, same chunking) are skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from itertools import islice
from pathlib import PurePosixPath
from typing import Any, Literal

from backend.adapters.embedder import Embedder
from backend.adapters.store import CYRILLIC_SHARE, ChunkPoint, SparseTerms, VectorStore, chunk_id, document_id
from backend.adapters.store import DocumentRecord as DocumentRecord  # what the service returns; the API reads it
from backend.observability import Metrics
from backend.services.chunking import Chunk, chunk_sections
from backend.services.correspondence.chunking import conversation_chunks
from backend.services.errors import AttachmentDeleteError, SpaceNotFoundError
from backend.services.parsing import ParsedDocument, ParseError, parse
from backend.services.text_analysis import (
    ANALYZER_VERSION,
    document_vector,
    lexical_windows,
    recorded_cyrillic_share,
    sentences,
)

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


# A document's chunks in groups (all of a plain document; one chat or thread of an export), each chunk
# with its lexical vector: produced lazily, in a worker thread, while earlier groups are embedded.
ChunkGroups = Iterator[list[tuple[Chunk, SparseTerms]]]


@dataclass
class _Pending:
    source: SourceFile
    record: DocumentRecord
    status: FileStatus
    version: str
    groups: ChunkGroups
    known_count: int | None  # chunks, when known before writing; None for a streamed export
    title: str
    file_hash: str
    warnings: list[str]
    written: int = 0
    reused: int = 0
    indexed_ids: set[str] = field(default_factory=set)  # the chunks of the indexed version
    occurrences: dict[str, int] = field(default_factory=dict)  # text hash -> chunks of that text so far
    attachments: dict[str, dict[str, Any]] = field(default_factory=dict)  # document id -> registry entry


ProgressCallback = Callable[[int, int], None]  # (files finished, chunks written) since the last call


Vectors = tuple[list[float], list[list[float]] | None]  # a chunk's vector, its sentences' (None: not kept)


# A chunk of fewer sentences keeps its own vector for them: its best sentence added nothing measurable
# (XQuAD dev nDCG@10 ru 0.9807 / en 0.9855 against 0.9802 / 0.9852 with two-sentence chunks split too), and
# leaving them whole spares the embedder a third to a half of the sentence text (docs/evaluation.md).
MIN_SENTENCES = 3


def sentence_texts(text: str) -> list[str]:
    """The sentences of a chunk embedded apart: none when it has fewer than MIN_SENTENCES (its own vector
    stands for them)."""
    found = sentences(text)
    return found if len(found) >= MIN_SENTENCES else []


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _pairs(pending: list[_Pending]) -> Iterator[tuple[_Pending, Chunk, SparseTerms]]:
    for p in pending:
        for group in p.groups:
            for chunk, sparse in group:
                yield p, chunk, sparse


def _count(groups: ChunkGroups) -> int:
    return sum(len(g) for g in groups)


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
            elif rec.version != self.version_of(file_hash) or rec.garbage or rec.writing or rec.stale:
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
            results = await self._ingest(space, files, dry_run=False, on_progress=on_progress)
        self.store.note_written(space)
        return results

    def lock(self, space: str) -> asyncio.Lock:
        """The space's write lock (also held by migrations)."""
        return self._locks.setdefault(space, asyncio.Lock())

    async def _ingest(
        self, space: str, files: Sequence[SourceFile], *, dry_run: bool, on_progress: ProgressCallback | None
    ) -> list[FileResult]:
        exists = not dry_run or await self.store.space_exists(space)
        results: list[FileResult] = []
        pending: list[_Pending] = []
        ids = [document_id(space, source.path) for source in files]
        indexed = await self.store.get_documents(space, ids) if exists else {}
        for source, doc_id in zip(files, ids, strict=True):
            existing = indexed.get(doc_id)
            if existing and (existing.garbage or existing.writing) and not dry_run:
                existing = await self._finish_journal(space, existing)  # left by an interrupted run
                if existing.version is None:  # a first write that never committed: as if it never began
                    await self.store.remove_document(space, existing.id)
                    existing = None
            file_hash = content_hash(source.data)
            version = self.version_of(file_hash)
            if existing and existing.version == version and not existing.stale and not existing.writing:
                results.append(FileResult(source.path, "unchanged", doc_id, existing.chunk_count))
                self.metrics.ingest_files.labels(space, "unchanged").inc()
                if on_progress:
                    on_progress(1, 0)
                continue
            try:
                parsed, groups, known_count = await asyncio.to_thread(self._parse_and_chunk, source)
            except ParseError as exc:
                results.append(FileResult(source.path, "failed", doc_id, reason=str(exc)))
                self.metrics.ingest_files.labels(space, "failed").inc()
                log.warning("skipped %s: %s", source.path, exc)
                if on_progress:
                    on_progress(1, 0)
                continue
            status: FileStatus = "changed" if existing and existing.version else "new"
            if dry_run:
                count = known_count if known_count is not None else await asyncio.to_thread(_count, groups)
                results.append(FileResult(source.path, status, doc_id, count, warnings=parsed.warnings))
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
            pending.append(_Pending(source, record, status, version, groups, known_count, parsed.title, file_hash,
                                    parsed.warnings))  # fmt: skip
        if pending:
            results.extend(await self._write(space, pending, on_progress))
        order = {f.path: i for i, f in enumerate(files)}
        return sorted(results, key=lambda r: order.get(r.path, 0))

    def _parse_and_chunk(self, source: SourceFile) -> tuple[ParsedDocument, ChunkGroups, int | None]:
        """The parsed file and its chunk groups; a plain document is chunked here (so that a file without
        text fails before anything is written), a conversation export group by group as it is written."""
        try:
            parsed = parse(source.data, source.path, default_tz=self.conversation_tz)
        except ParseError:
            raise
        except Exception as exc:  # a parser library choking on hostile input is still a bad file
            raise ParseError(f"cannot parse: {type(exc).__name__}: {exc}") from exc
        if parsed.conversation is not None:
            groups = conversation_chunks(parsed.conversation, self.embedder.tokenize, max_tokens=self.chunk_tokens,
                                         overlap_tokens=self.overlap_tokens)  # fmt: skip
            return parsed, (self._with_sparse(g) for g in groups), None
        chunks = chunk_sections(parsed.sections, self.embedder.tokenize, max_tokens=self.chunk_tokens,
                                overlap_tokens=self.overlap_tokens)  # fmt: skip
        if not chunks:
            raise ParseError("no text found in the file")
        return parsed, iter([self._with_sparse(chunks)]), len(chunks)

    def _with_sparse(self, chunks: list[Chunk]) -> list[tuple[Chunk, SparseTerms]]:
        sparse = sparse_vectors([c.text for c in chunks], self.lexical_window_words)
        return list(zip(chunks, sparse, strict=True))

    async def _write(
        self, space: str, pending: list[_Pending], on_progress: ProgressCallback | None
    ) -> list[FileResult]:
        # 1. journal the versions about to be written (one registry write for the batch)
        for p in pending:
            if p.record.version != p.version:
                p.record.writing = p.version
        await self.store.put_documents([p.record for p in pending])

        # 2. embed and upsert all chunks of the group in batches; the next batch is embedded while
        #    the previous one is written, so the embedder (the bottleneck) never waits on the store.
        #    A chunk whose text the document's indexed version already holds keeps its vector.
        known = await self._indexed_hashes(space, pending)
        schema = await self.store.space_schema(space)
        with_sentences = schema is not None and schema.sentences
        recent: dict[str, list[float]] = {}  # the previous batch's sentence vectors, by text (see `_vectors`)
        stream = _pairs(pending)
        write_task: asyncio.Task[None] | None = None
        try:
            while batch := await asyncio.to_thread(lambda: list(islice(stream, self.batch_size))):
                vectors = await self._vectors(space, batch, known, with_sentences, recent)
                if write_task is not None:
                    await write_task
                now = time.time()
                structs = [self._point(space, p, c, sp, v, now) for (p, c, sp), v in zip(batch, vectors, strict=True)]
                for p, _, _ in batch:
                    p.written += 1
                write_task = asyncio.create_task(self.store.upsert_chunks(space, structs))
            if write_task is not None:
                await write_task
        finally:
            # On failure, never leave a write running unobserved; the journal lets repair() clean up.
            if write_task is not None and not write_task.done():
                write_task.cancel()
                await asyncio.gather(write_task, return_exceptions=True)

        # 3 + 4. commit the documents (one registry write), then drop each one's superseded chunks: a crash
        #    in between leaves them listed as garbage in the committed records, for the next run to drop
        results: list[FileResult] = []
        committed: list[_Pending] = []
        for p in pending:
            rec = p.record
            if not p.written:  # an export whose every message proved unreadable
                results.append(await self._abandon(space, p))
                continue
            if rec.version and rec.version != p.version:
                rec.garbage.append((rec.version, rec.chunk_count))
            rec.version, rec.chunk_count, rec.writing, rec.stale = p.version, p.written, None, False
            rec.attachments = sorted(p.attachments.values(), key=lambda a: str(a["path"]))
            rec.title, rec.size, rec.indexed_at = p.title, len(p.source.data), time.time()
            rec.content_sha256 = p.file_hash
            committed.append(p)
        await self.store.put_documents([p.record for p in committed])
        for p in committed:
            rec = await self._finish_journal(space, p.record)
            results.append(FileResult(p.source.path, p.status, rec.id, p.written, warnings=p.warnings, reused=p.reused))
            self.metrics.ingest_files.labels(space, p.status).inc()
            self.metrics.ingest_chunks.labels(space).inc(p.written)
            self.metrics.ingest_reused_chunks.labels(space).inc(p.reused)
            if on_progress:
                on_progress(1, p.written)
        return results

    async def _abandon(self, space: str, p: _Pending) -> FileResult:
        """Undo the journal entry of a document that produced no chunk; its indexed version stays."""
        rec = p.record
        rec.writing = None  # nothing was written
        if rec.version is None:
            await self.store.remove_document(space, rec.id)
        else:
            await self.store.put_document(rec)
        problems = f" ({'; '.join(p.warnings[:3])})" if p.warnings else ""
        self.metrics.ingest_files.labels(space, "failed").inc()
        return FileResult(p.source.path, "failed", rec.id, reason=f"no text found in the file{problems}",
                          warnings=p.warnings)  # fmt: skip

    async def _indexed_hashes(self, space: str, pending: list[_Pending]) -> dict[str, str]:
        """{text hash: chunk id} of the indexed versions of `pending` documents (hashes only: a mailbox's
        vectors would not fit in memory); the vectors of matching chunks are read batch by batch."""
        known: dict[str, str] = {}
        for p in pending:
            if p.record.version:  # a document without one has no chunks: its journal was finished
                hashes = await self.store.document_chunk_hashes(space, p.record.id)
                p.indexed_ids = set(hashes)
                for point_id, h in hashes.items():
                    known.setdefault(h, point_id)
        return known

    async def _vectors(
        self,
        space: str,
        batch: list[tuple[_Pending, Chunk, SparseTerms]],
        known: dict[str, str],
        with_sentences: bool,
        recent: dict[str, list[float]],
    ) -> list[Vectors]:
        """Each chunk's vector and, where the space keeps them, its sentences' (`sentence_texts`): those of a
        chunk the indexed version holds are read back, the others embedded in one call. A sentence is embedded
        once: the overlap between chunks repeats whole sentences, in this batch or across from the previous
        one (`recent`, replaced by this batch's)."""
        hashes = [_text_hash(c.text) for _, c, _ in batch]
        old = {h: known[h] for h in hashes if h in known}
        kept: dict[str, Vectors] = {}
        if old:
            points = await self.store.read_chunks(space, list(set(old.values())))
            by_id = {pt.id: (pt.vector, pt.sentences) for pt in points if pt.vector}
            # a chunk indexed before its space kept sentence vectors has none to keep: embedded again
            kept = {h: by_id[i] for h, i in old.items() if i in by_id and (by_id[i][1] or not with_sentences)}
        fresh = [i for i, h in enumerate(hashes) if h not in kept]
        texts = [batch[i][1].text for i in fresh]
        parts = [sentence_texts(t) if with_sentences else [] for t in texts]
        new = list(dict.fromkeys(s for p in parts for s in p if s not in recent))
        computed = await self.embedder.embed_passages(texts + new) if fresh else []
        by_text = {**recent, **dict(zip(new, computed[len(fresh) :], strict=True))}
        vectors: list[Vectors] = [kept.get(h, ([], None)) for h in hashes]
        for i, vec, own in zip(fresh, computed[: len(fresh)], parts, strict=True):
            vectors[i] = (vec, [by_text[s] for s in own] if own else ([vec] if with_sentences else None))
        recent.clear()
        recent.update((s, by_text[s]) for p in parts for s in p)
        for (p, _, _), h in zip(batch, hashes, strict=True):
            if h in kept:
                p.reused += 1
        return vectors

    def _point(self, space: str, p: _Pending, c: Chunk, sparse: SparseTerms, vectors: Vectors, now: float
               ) -> ChunkPoint:  # fmt: skip
        text_hash = _text_hash(c.text)
        occurrence = p.occurrences.get(text_hash, 0)
        p.occurrences[text_hash] = occurrence + 1
        point_id = chunk_id(p.record.id, text_hash, occurrence)
        old = p.record.version
        # A chunk the indexed version holds too stays in it until the new version is committed.
        tag: str | list[str] = [old, p.version] if old and old != p.version and point_id in p.indexed_ids else p.version
        payload = {**self._payload(space, p, c, now), "version": tag}
        return ChunkPoint(point_id, vectors[0], payload, sparse, sentences=vectors[1])

    def _payload(self, space: str, p: _Pending, c: Chunk, now: float) -> dict[str, object]:
        meta = dict(c.meta or {})
        attachment = self._attachment(space, p, meta) if "attachment" in meta else {}
        return {
            **meta,
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
            "chunk_count": p.known_count,  # None for a streamed export (known only once it is written)
            "text": c.text,
            "version": p.version,
            "content_sha256": p.file_hash,
            "chunk_hash": _text_hash(c.text),
            CYRILLIC_SHARE: recorded_cyrillic_share(c.text),
            "owner": p.record.id,  # whose writes and deletes take this chunk along
            **attachment,
        }

    @staticmethod
    def _attachment(space: str, p: _Pending, meta: dict[str, Any]) -> dict[str, object]:
        """A mail attachment's chunk belongs to a document of its own, `<mail file>#<Message-ID>/<name>`,
        listed under the mail file's record and written and deleted with it (its `owner`)."""
        name, message = str(meta["attachment"]), str(meta.pop("attachment_message", ""))
        size, sha256 = meta.pop("attachment_size", 0), meta.pop("attachment_sha256", None)
        path = f"{p.source.path}#{message}/{name}"
        doc_id = document_id(space, path)
        entry = p.attachments.setdefault(doc_id, {"id": doc_id, "path": path, "title": name, "chunks": 0,
                                                  "size": size, "sha256": sha256, "message": message})  # fmt: skip
        entry["chunks"] += 1
        return {"document_id": doc_id, "path": path, "title": name, "chunk": entry["chunks"] - 1,
                "file_type": PurePosixPath(name).suffix.lower().lstrip("."), "content_sha256": sha256,
                "parent_document": p.record.id, "parent_path": p.source.path}  # fmt: skip

    async def _finish_journal(self, space: str, rec: DocumentRecord) -> DocumentRecord:
        """Bring the document's chunks to exactly its recorded version (none when it has none): drop the
        chunks of superseded or interrupted versions, tag the kept ones with the recorded version alone."""
        if rec.garbage or rec.writing:
            await self.store.delete_document_chunks(space, rec.id, keep_version=rec.version)
            others = {v for v, _ in rec.garbage} | ({rec.writing} if rec.writing else set())
            others.discard(rec.version or "")
            if rec.version and others:
                await self.store.settle_version(space, rec.id, rec.version, sorted(others))
            if rec.version and rec.writing and rec.writing != rec.version:
                rec.stale = True  # kept chunks carry the interrupted version's positions: rewrite next time
            rec.garbage, rec.writing = [], None
            await self.store.put_document(rec)
        return rec

    # --- deleting and repairing --------------------------------------------------------------
    async def documents(self, space: str) -> list[DocumentRecord]:
        if not await self.store.space_exists(space):
            raise SpaceNotFoundError(space)
        records = await self.store.list_documents(space)
        return records + [a for r in records for a in r.attachment_records()]

    async def delete_document(self, space: str, doc_id: str) -> DocumentRecord | None:
        if not await self.store.space_exists(space):
            raise SpaceNotFoundError(space)
        async with self.lock(space):
            deleted = await self._delete(space, doc_id)
        self.store.note_written(space)
        return deleted

    async def _delete(self, space: str, doc_id: str) -> DocumentRecord | None:
        rec = await self.store.get_document(space, doc_id)
        if rec is None:
            for parent in await self.store.list_documents(space):
                if any(a["id"] == doc_id for a in parent.attachments):
                    raise AttachmentDeleteError(next(a["path"] for a in parent.attachments if a["id"] == doc_id),
                                                parent.path)  # fmt: skip
            return None
        if rec.version:
            rec.garbage.append((rec.version, rec.chunk_count))
        rec.version = None
        await self.store.put_document(rec)  # journal first: a crash here is finished by repair()
        await self._finish_journal(space, rec)
        await self.store.remove_document(space, doc_id)
        await self.store.delete_summaries_of(space, [doc_id])  # they read what is gone
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
        broken = [r for r in await self._records(space) if r.garbage or r.writing]
        for rec in broken:
            await self._finish_journal(space, rec)
            if rec.version is None:  # a first ingestion that never committed: remove it entirely
                await self.store.remove_document(space, rec.id)
        return len(broken)
