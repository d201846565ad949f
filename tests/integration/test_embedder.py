"""The embedder adapter with the real model: normalised vectors, prefixes, questions never starved."""

from __future__ import annotations

import asyncio
import math

from backend.adapters.embedder import Embedder


def test_vectors_are_normalised_and_batched_results_match_single_ones() -> None:
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu", batch_size=4)
    texts = [f"Document number {i} about pumps." for i in range(10)]
    batched = embedder.embed_passages_sync(texts)
    assert len(batched) == 10 and all(len(v) == embedder.dimension == 384 for v in batched)
    assert all(math.isclose(math.hypot(*v), 1.0, rel_tol=1e-4) for v in batched)
    single = embedder.embed_passages_sync(texts[7:8])[0]
    assert max(abs(a - b) for a, b in zip(single, batched[7], strict=True)) < 1e-4


def test_a_question_is_answered_while_a_long_ingestion_is_still_embedding() -> None:
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu", batch_size=8)
    passages = ["A fairly long passage about deliveries, warehouses and invoices. " * 8] * 400

    async def scenario() -> tuple[bool, bool]:
        ingestion = asyncio.ensure_future(embedder.embed_passages(passages))
        await asyncio.sleep(0.2)  # ingestion holds the model now
        await embedder.embed_query("where is the invoice?")
        return ingestion.done(), bool(await ingestion)

    ingestion_done_when_query_returned, ingestion_ok = asyncio.run(scenario())
    assert not ingestion_done_when_query_returned  # the question did not wait for the whole job
    assert ingestion_ok
