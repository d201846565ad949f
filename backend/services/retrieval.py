"""Question -> candidates from the dense and lexical sides -> fusion -> rerank, cap, MMR -> ranked chunks.

Modes: `dense` (the embedder), `sparse` (BM25 over stemmed terms), `hybrid` (both, fused by our weighted
score fusion or Qdrant's RRF/DBSF). Filters are applied inside the store's search, before ranking.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from backend.adapters.embedder import Embedder
from backend.adapters.reranker import Reranker
from backend.adapters.store import (
    CYRILLIC_SHARE,
    SCHEMA,
    ChunkFilter,
    ScoredChunk,
    SpaceNeedsMigrationError,
    SparseTerms,
    VectorStore,
    migrate_hint,
)
from backend.observability import Metrics
from backend.services import fusion
from backend.services.errors import SpaceNotFoundError
from backend.services.text_analysis import is_cyrillic, query_vector, share_in_other_language

__all__ = ["ChunkFilter", "RetrievalConfig", "RetrievalResult", "RetrievalService", "SearchOptions"]

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "sparse"]
Fusion = Literal["weighted", "rrf", "dbsf"]


def mostly_other_script(chunk: ScoredChunk, question_cyrillic: bool) -> bool:
    """Whether most of the chunk's letters are in the other script than the question; a chunk indexed
    before its script was recorded counts as in the question's (fused as before). Most, not nearly all as
    for the relevance floor: a Russian paragraph that names English things is Russian to the fusion (with
    the floor's tenth, English questions over Russian paragraphs lost 0.009 nDCG@10; docs/evaluation.md)."""
    share = chunk.payload.get(CYRILLIC_SHARE)
    return isinstance(share, int | float) and share_in_other_language(float(share), question_cyrillic, below=0.5)


async def weighted_hybrid(
    store: VectorStore,
    cfg: RetrievalConfig,
    space: str,
    query: str,
    vector: list[float],
    terms: SparseTerms,
    candidates: int,
    depth: int,
    filters: ChunkFilter | None = None,
    *,
    with_vectors: bool = False,
) -> tuple[list[ScoredChunk], int]:
    """The weighted hybrid ranking's best `depth` chunks, with their payloads, and how many chunks the fusion
    scored: each side's `candidates`, the fusion (weighted by the question's script; a chunk in the other
    one judged by its dense side where the candidates hold both), then the payloads of the kept ones. The
    candidates come with their script only: reading the payloads of all ~100 costs more than the extra
    round trip that fetches the few kept (docs/performance.md)."""
    found = await store.search_both(
        space, vector, terms, candidates, filters, with_vectors=with_vectors, with_payload=[CYRILLIC_SHARE]
    )
    cyrillic = is_cyrillic(query)
    weight = cfg.dense_weight_cyrillic if cyrillic else cfg.dense_weight
    other = [mostly_other_script(c, cyrillic) for c in found]
    fused = fusion.weighted_fusion(found, weight, other, cfg.cross_language_offset,
                                   sentence_weight=cfg.sentence_weight, power=cfg.fusion_power)  # fmt: skip
    return await store.load_payloads(space, fused[:depth]), len(found)


@dataclass
class RetrievalConfig:
    mode: Mode = "hybrid"
    fusion: Fusion = "weighted"
    dense_weight: float = 0.7
    dense_weight_cyrillic: float = 0.6
    cross_language_offset: float = 0.0
    sentence_weight: float = 0.6  # share of the dense side taken by the chunk's best sentence (fusion.dense_side)
    fusion_power: float = 2.0  # the weighted fusion's power mean (fusion.weighted_fusion)
    candidates: int = 50
    max_chunks_per_document: int = 0
    mmr_lambda: float | None = None
    reranker_top_n: int = 20


@dataclass
class SearchOptions:
    """Per-request choices; None = the configured default."""

    mode: Mode | None = None
    fusion: Fusion | None = None
    filters: ChunkFilter | None = None


@dataclass
class RetrievalResult:
    chunks: list[ScoredChunk]
    embed_ms: float
    search_ms: float
    mode: Mode = "dense"
    fusion: str | None = None  # weighted, rrf or dbsf in hybrid mode
    rerank_ms: float | None = None
    notices: list[str] = field(default_factory=list)  # what a user should know about this ranking
    candidates: int | None = None  # how many chunks the weighted fusion scored (None: another ranking)

    def describe(self) -> dict[str, object]:
        return {"mode": self.mode, "fusion": self.fusion, "notices": self.notices}


class RetrievalService:
    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        metrics: Metrics,
        config: RetrievalConfig | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.metrics = metrics
        self.config = config or RetrievalConfig()
        self.reranker = reranker

    async def retrieve(
        self,
        space: str,
        query: str,
        top_k: int,
        options: SearchOptions | None = None,
    ) -> RetrievalResult:
        cfg = self.config
        opts = options or SearchOptions()
        mode, filters = opts.mode, opts.filters
        schema = await self.store.space_schema(space)
        if schema is None:
            raise SpaceNotFoundError(space)
        chosen: Mode = mode or cfg.mode
        notices: list[str] = []
        if chosen != "dense" and schema.version < SCHEMA:
            if mode is not None:  # asked for explicitly: say why it cannot be had
                raise SpaceNeedsMigrationError(
                    f"space {space!r} predates lexical retrieval; mode {mode!r} needs: {migrate_hint(space)}"
                )
            notices.append(f"space {space!r} predates lexical retrieval, so dense only: run {migrate_hint(space)}")
            log.warning("space %s answered dense only: %s", space, notices[-1])
            chosen = "dense"
        fuse: Fusion = opts.fusion or cfg.fusion
        post = cfg.max_chunks_per_document > 0 or cfg.mmr_lambda is not None or self.reranker is not None
        depth = max(top_k, cfg.candidates) if post else top_k
        want_vectors = cfg.mmr_lambda is not None

        scored: int | None = None  # how many chunks the weighted fusion saw: what its scores are relative to
        t0 = time.perf_counter()
        vector = await self.embedder.embed_query(query) if chosen != "sparse" else []
        terms = query_vector(query) if chosen != "dense" else ([], [])
        t1 = time.perf_counter()
        if chosen == "dense":
            chunks = await self.store.search_dense(space, vector, depth, filters, with_vectors=want_vectors)
        elif chosen == "sparse":
            chunks = await self.store.search_sparse(space, terms, depth, filters, with_vectors=want_vectors)
            for c in chunks:
                c.score = c.sparse_score or 0.0
        elif fuse == "weighted":
            chunks, scored = await weighted_hybrid(
                self.store, cfg, space, query, vector, terms, max(cfg.candidates, top_k), depth, filters,
                with_vectors=want_vectors,
            )  # fmt: skip
        else:
            chunks = await self.store.search_fused(
                space, vector, terms, max(cfg.candidates, top_k), depth, fuse, filters, with_vectors=want_vectors
            )
        t2 = time.perf_counter()

        rerank_ms = None
        if self.reranker is not None and chunks:
            head, tail = chunks[: cfg.reranker_top_n], chunks[cfg.reranker_top_n :]
            scores = await self.reranker.score(query, [str(c.payload.get("text", "")) for c in head])
            for c, s in zip(head, scores, strict=True):
                c.score = s
            chunks = sorted(head, key=lambda c: -c.score) + tail
            rerank_ms = (time.perf_counter() - t2) * 1000
            self.metrics.retrieval_latency.labels("rerank").observe(rerank_ms / 1000)
        chunks = fusion.cap_per_document(chunks, cfg.max_chunks_per_document)
        if cfg.mmr_lambda is not None:
            chunks = await asyncio.to_thread(fusion.mmr, chunks, top_k, cfg.mmr_lambda)
        self.metrics.retrieval_latency.labels("embed").observe(t1 - t0)
        self.metrics.retrieval_latency.labels("search").observe(t2 - t1)
        return RetrievalResult(
            chunks[:top_k], (t1 - t0) * 1000, (t2 - t1) * 1000, mode=chosen,
            fusion=fuse if chosen == "hybrid" else None, rerank_ms=rerank_ms, notices=notices,
            candidates=scored,
        )  # fmt: skip
