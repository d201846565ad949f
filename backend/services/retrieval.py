"""Question -> vector -> the space's nearest chunks, with per-stage timings."""

from __future__ import annotations

import time
from dataclasses import dataclass

from backend.adapters.embedder import Embedder
from backend.adapters.store import ScoredChunk, VectorStore
from backend.observability import Metrics
from backend.services.errors import SpaceNotFoundError


@dataclass
class RetrievalResult:
    chunks: list[ScoredChunk]
    embed_ms: float
    search_ms: float


class RetrievalService:
    def __init__(self, store: VectorStore, embedder: Embedder, metrics: Metrics) -> None:
        self.store = store
        self.embedder = embedder
        self.metrics = metrics

    async def retrieve(self, space: str, query: str, top_k: int) -> RetrievalResult:
        if not await self.store.space_exists(space):
            raise SpaceNotFoundError(space)
        t0 = time.perf_counter()
        vector = await self.embedder.embed_query(query)
        t1 = time.perf_counter()
        chunks = await self.store.search(space, vector, top_k)
        t2 = time.perf_counter()
        self.metrics.retrieval_latency.labels("embed").observe(t1 - t0)
        self.metrics.retrieval_latency.labels("search").observe(t2 - t1)
        return RetrievalResult(chunks, (t1 - t0) * 1000, (t2 - t1) * 1000)
