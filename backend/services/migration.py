"""Bring a space's chunk collection up to the current schema and lexical analyzer, without re-embedding.

Spaces from before hybrid retrieval hold one unnamed dense vector per chunk; spaces indexed with an
older analyzer or another LEXICAL_WINDOW_WORDS hold sparse vectors that no longer match new ones.
Both are fixed the same way: every chunk is copied, dense vector and payload as they are, into a
staging collection with the current schema, its sparse vector recomputed from the stored chunk text
(windows over the document's chunks, as ingestion does), and the staging copy is swapped in.

Nothing is lost at any moment: the original is dropped only after the staging copy holds every one
of its points (counted), and a run interrupted anywhere is finished by running it again.

A space whose schema is current but whose dense vectors are kept otherwise than QDRANT_QUANTIZATION says
(made before the 8-bit copy, or with the other setting) needs no copy: its setting changes and its index
is built again, which writes or drops the 8-bit copy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from backend.adapters.local_mode_import import ImportedCollection, LocalModeImportError, import_local_mode
from backend.adapters.qdrant_nodes import ClusterOptions
from backend.adapters.store import CYRILLIC_SHARE, SCHEMA, ChunkPoint, VectorStore
from backend.adapters.store_copy import CopiedCollection, copy_store
from backend.services.errors import SpaceNotFoundError
from backend.services.ingest import IngestService, path_metadata, sparse_vectors
from backend.services.text_analysis import recorded_cyrillic_share

log = logging.getLogger(__name__)


class MigrationError(Exception):
    """The staging copy does not hold every point of the original; nothing was dropped."""


async def import_local_mode_store(path: Path) -> list[ImportedCollection]:
    """Move the embedded store of before Qdrant Edge (qdrant-client's local mode) into Edge shards, without
    re-embedding (backend/adapters/local_mode_import.py). Raises MigrationError when the copy does not check."""
    try:
        return await asyncio.to_thread(import_local_mode, path)
    except LocalModeImportError as exc:
        raise MigrationError(str(exc)) from exc


async def copy_spaces(
    folder: Path,
    url: str,
    *,
    direction: Literal["to", "from"],
    prefix: str,
    spaces: list[str] | None = None,
    api_key: str | None = None,
    timeout_s: float = 60.0,
    cluster: ClusterOptions | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> list[CopiedCollection]:
    """The embedded store in `folder` to the Qdrant server at `url` ("to"), or back ("from"), as stored: no
    re-embedding; every space, or `spaces`. Resumable; checked by counts and ids (adapters/store_copy.py)."""
    return await asyncio.to_thread(
        copy_store, folder, url, direction=direction, prefix=prefix, spaces=spaces, api_key=api_key,
        timeout_s=timeout_s, cluster=cluster, progress=progress,
    )  # fmt: skip


Action = Literal["up-to-date", "migrated", "resumed", "requantized", "scripts recorded"]


@dataclass
class MigrationResult:
    space: str
    action: Action
    chunks: int
    from_schema: int | None
    from_lexical: str | None
    index_build_s: float | None = None  # requantized: the index build's seconds (None: a server builds)


class MigrationService:
    def __init__(self, store: VectorStore, ingest: IngestService, batch: int = 256) -> None:
        self.store = store
        self.ingest = ingest
        self.batch = batch

    async def reasons(self, space: str) -> list[str]:
        """Why the space needs `cli.migrate`, in words; empty when it does not."""
        schema = await self.store.space_schema(space)
        staged = await self.store.staging_state(space)
        if schema is None:
            return ["a migration was interrupted"] if staged == "complete" else []
        lexical = self.ingest.lexical_signature
        why = ["a migration was interrupted"] if staged != "none" else []
        if schema.version != SCHEMA:
            why.append(f"schema {schema.version}, now {SCHEMA}")
        if schema.lexical != lexical:
            why.append(f"lexical analyzer {schema.lexical!r}, now {lexical!r}")
        if schema.quantization != self.store.quantization:
            why.append(f"dense vectors kept as {schema.quantization}, QDRANT_QUANTIZATION={self.store.quantization}")
        elif schema.rebuild_pending:
            why.append("the index build that gives it the QDRANT_QUANTIZATION setting was interrupted")
        if not schema.scripts and schema.version == SCHEMA and schema.lexical == lexical:
            why.append("its chunks carry no script yet (hybrid search over Russian and English chunks reads it)")
        return why

    async def needs_migration(self, space: str) -> bool:
        return bool(await self.reasons(space))

    async def migrate(self, space: str) -> MigrationResult:
        embedder = self.ingest.embedder
        target = (embedder.model_name, embedder.dimension, self.ingest.lexical_signature)
        async with self.ingest.lock(space):
            schema = await self.store.space_schema(space)
            staged = await self.store.staging_state(space)
            if schema is None and staged != "complete":
                raise SpaceNotFoundError(space)
            before = (schema.version, schema.lexical) if schema else (None, None)
            if staged == "complete":  # an earlier run was interrupted after its copy was complete
                moved = await self.store.swap_in_staging(space, *target)
                log.info("space %s: finished an interrupted migration (%d chunks)", space, moved)
                return MigrationResult(space, "resumed", moved, *before)
            if schema is not None and (schema.version, schema.lexical) == (SCHEMA, target[2]) and staged == "none":
                chunks = await self.store.count_chunks(space)
                if not schema.scripts:  # chunks from before 2026-12-05: their script from their text, in place
                    recorded = await self.store.record_scripts(space, recorded_cyrillic_share)
                    log.info("space %s: recorded the script of %d chunks", space, recorded)
                if schema.rebuild_pending or schema.quantization != self.store.quantization:
                    took = await self.store.requantize(space)
                    return MigrationResult(space, "requantized", chunks, before[0], before[1], took)
                action: Action = "up-to-date" if schema.scripts else "scripts recorded"
                return MigrationResult(space, action, chunks, *before)
            await self.store.check_embedding(space, embedder.model_name, embedder.dimension)
            await self.ingest.repair(space, locked=True)  # no half-written document is carried over
            copied = await self._copy_to_staging(space, *target)
            total = await self.store.count_chunks(space)
            if copied != total:
                raise MigrationError(
                    f"space {space!r}: the staging copy holds {copied} of {total} chunks; the original is "
                    "untouched. Run the migration again."
                )
            await self.store.complete_staging(space, *target)
            moved = await self.store.swap_in_staging(space, *target)
            log.info("space %s: migrated %d chunks to schema %d (%s)", space, moved, SCHEMA, target[2])
            return MigrationResult(space, "migrated", moved, *before)

    async def _copy_to_staging(self, space: str, model: str, dimension: int, lexical: str) -> int:
        await self.store.create_staging(space, model, dimension, lexical)
        copied: set[str] = set()
        # Documents first, so each chunk's lexical window is built from its own document's chunks.
        for rec in await self.store.list_documents(space):
            if not rec.version:
                continue
            ids = list(await self.store.document_chunk_hashes(space, rec.id))
            points = sorted(await self.store.read_chunks(space, ids), key=lambda p: int(p.payload.get("chunk", 0)))
            await self._write(space, points, {"indexed_at": rec.indexed_at})
            copied.update(p.id for p in points)
        # Anything the registry does not reach (should be nothing) is still carried over, alone.
        strays = [i for i in await self.store.chunk_ids(space) if i not in copied]
        if strays:
            log.warning("space %s: %d chunks not in the document registry; copied alone", space, len(strays))
        for start in range(0, len(strays), self.batch):
            for point in await self.store.read_chunks(space, strays[start : start + self.batch]):
                await self._write(space, [point], {})
                copied.add(point.id)
        return len(await self.store.chunk_ids(space, staging=True))

    async def _write(self, space: str, points: list[ChunkPoint], defaults: dict[str, object]) -> None:
        texts = [str(p.payload.get("text", "")) for p in points]
        sparse = await asyncio.to_thread(sparse_vectors, texts, self.ingest.lexical_window_words)
        for point, text, terms in zip(points, texts, sparse, strict=True):
            point.sparse = terms
            # Fields filters and fusion need, for chunks written before they existed.
            extra = {**path_metadata(str(point.payload.get("path", ""))), "modified_at": None,
                     CYRILLIC_SHARE: recorded_cyrillic_share(text), **defaults}  # fmt: skip
            point.payload = {**extra, **point.payload}
        for start in range(0, len(points), self.batch):
            await self.store.upsert_staging(space, points[start : start + self.batch])
