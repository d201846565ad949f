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


def test_concurrent_questions_are_embedded_together_with_the_same_vectors() -> None:
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu", batch_size=32)
    questions = [f"Where is warehouse number {i}?" for i in range(16)]
    alone = [embedder.embed_query_sync(q) for q in questions]
    calls: list[int] = []
    real = embedder._encode

    def counting(texts: list[str], *, query: bool) -> list[list[float]]:
        calls.append(len(texts))
        return real(texts, query=query)

    embedder._encode = counting  # type: ignore[method-assign]

    async def together() -> list[list[float]]:
        return await asyncio.gather(*(embedder.embed_query(q) for q in questions))

    vectors = asyncio.run(together())
    assert sum(calls) == 16 and len(calls) < 16  # batched, each question once
    for v, w in zip(vectors, alone, strict=True):
        assert max(abs(a - b) for a, b in zip(v, w, strict=True)) < 1e-4  # in its own order


def test_an_embedding_failure_reaches_every_waiting_question() -> None:
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")

    def broken(texts: list[str], *, query: bool) -> list[list[float]]:
        raise RuntimeError("model crashed")

    embedder._encode = broken  # type: ignore[method-assign]

    async def ask_three() -> list[BaseException | list[float]]:
        return await asyncio.gather(*(embedder.embed_query(f"q{i}") for i in range(3)), return_exceptions=True)

    results = asyncio.run(ask_three())
    assert all(isinstance(r, RuntimeError) and "model crashed" in str(r) for r in results)
