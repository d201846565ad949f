"""QDRANT_QUANTIZATION: a new space keeps its dense vectors as 8-bit integers too (on both engines), and what
a search returns is still scored with the full vectors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client.http import models

from backend.adapters.store import DENSE, ChunkPoint, VectorStore
from backend.config import Settings
from backend.container import open_store

DIM = 384


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize("quantization", ["int8", "none"])
def test_a_new_space_is_created_with_the_configured_quantization(store_settings: Settings, quantization: str) -> None:
    store = open_store(store_settings.model_copy(update={"qdrant_quantization": quantization}))
    try:
        run(store.ensure_space("q", "m", DIM, "lex"))
        info = store._client.get_collection(store._chunks("q"))
        params = info.config.params.vectors
        assert isinstance(params, dict)
        kept = params[DENSE].quantization_config
        if quantization == "int8":
            assert isinstance(kept, models.ScalarQuantization)
            assert kept.scalar.type == models.ScalarType.INT8
        else:
            assert kept is None
    finally:
        store.close()


@pytest.fixture(scope="module")
def indexed_space(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, list[str]]:
    """A quantized space with its search index built, as index_cli builds it: Edge makes the 8-bit copy of the
    vectors only with the index, so it holds enough for one (8,000 random unit vectors of 384 floats)."""
    folder = tmp_path_factory.mktemp("quantized") / "qdrant"
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(8000, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(len(vectors))]
    store = VectorStore(path=folder, index_after=1, quantization="int8")
    try:
        run(store.ensure_space("q", "m", DIM, "lex"))
        for start in range(0, len(vectors), 2000):
            points = [ChunkPoint(ids[i], vectors[i].tolist(), {"text": f"t{i}", "document_id": str(i), "path": "p"},
                                 ([i % 50], [1.0])) for i in range(start, start + 2000)]  # fmt: skip
            run(store.upsert_chunks("q", points))
        assert run(store.build_index_if_due("q")) is not None
    finally:
        store.close()
    return folder, vectors, ids


def test_searches_of_a_quantized_indexed_space_return_exact_scores(
    indexed_space: tuple[Path, np.ndarray, list[str]],
) -> None:
    folder, vectors, ids = indexed_space
    query = vectors[0] + vectors[1]
    query /= np.linalg.norm(query)
    exact = dict(zip(ids, (vectors @ query).tolist(), strict=True))
    store = VectorStore(path=folder)
    try:
        # the premise: the engine's own answer, without rescoring, holds the 8-bit approximations
        raw = store._client.query_points(store._chunks("q"), query=query.tolist(), using=DENSE, limit=10)
        assert max(abs(p.score - exact[str(p.id)]) for p in raw.points) > 1e-4

        dense = run(store.search_dense("q", query.tolist(), 10))
        assert [c.id for c in dense][:2] == sorted(ids[:2], key=lambda i: -exact[i])
        assert max(abs(c.score - exact[c.id]) for c in dense) < 1e-5
        both = run(store.search_both("q", query.tolist(), ([0, 1], [1.0, 1.0]), 50, with_payload=False))
        assert all(c.dense_score is not None and abs(c.dense_score - exact[c.id]) < 1e-5 for c in both)
        assert {c.id for c in both} >= set(ids[:2])
    finally:
        store.close()


def test_a_broader_search_finds_more_of_the_true_nearest_chunks(
    indexed_space: tuple[Path, np.ndarray, list[str]], make_settings: Callable[..., Settings]
) -> None:
    # Random vectors have no close neighbours, the hardest case for an HNSW index: at the engine's default
    # breadth it misses about 10% of the true top 10 here; QDRANT_HNSW_EF=1000 finds nearly all. What it still
    # misses (3-4%) is the 8-bit copy's, not the walk's: only the top 10 on 8-bit scores are rescored, and the
    # neighbours of a random vector are a few thousandths apart, so the 8-bit top 10 holds a near-miss or two
    # (with oversampling 2 the same walk finds all). The index is built anew for each run and the engine's
    # build is not deterministic: over six builds, 100 questions each, 0.897-0.907 at the default and
    # 0.959-0.971 at 1000; with 30 questions a build once gave 0.943, so the floor is a bit below that.
    folder, vectors, ids = indexed_space
    queries = vectors[1000:1100] + 0.5 * vectors[2000:2100]
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = [set(np.argsort(-(vectors @ q))[:10].tolist()) for q in queries]
    position = {point_id: i for i, point_id in enumerate(ids)}

    def recall(hnsw_ef: int) -> float:
        store = open_store(make_settings(qdrant_path=folder, qdrant_hnsw_ef=hnsw_ef))
        try:
            found = [run(store.search_dense("q", q.tolist(), 10)) for q in queries]
        finally:
            store.close()
        hits = sum(len(t & {position[c.id] for c in f}) for t, f in zip(truth, found, strict=True))
        return hits / (10 * len(queries))

    default, broad = recall(0), recall(1000)
    assert broad >= 0.94, (default, broad)
    assert broad >= default + 0.03, (default, broad)
