"""QDRANT_QUANTIZATION: a new space keeps its dense vectors as 8-bit integers too (on both engines), and what
a search returns is still scored with the full vectors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from qdrant_client.http import models

from backend.adapters.edge_engine import EdgeEngine
from backend.adapters.store import DENSE, ChunkPoint, Quantization, VectorStore
from backend.config import Settings
from backend.container import build_ingest, load_embedder, open_store
from backend.main import create_app
from backend.observability import Metrics
from cli import migrate as migrate_cli

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


@pytest.mark.parametrize("start", ["none", "int8"])
def test_requantize_gives_an_existing_space_the_setting_on_both_engines(
    store_settings: Settings, start: Quantization
) -> None:
    other: Quantization = "int8" if start == "none" else "none"
    store = open_store(store_settings.model_copy(update={"qdrant_quantization": start}))
    try:
        run(store.ensure_space("q", "m", DIM, "lex"))
        unit = [1.0] + [0.0] * (DIM - 1)
        points = [ChunkPoint(f"00000000-0000-0000-0000-{i:012d}", unit, {"text": "", "document_id": f"{i}", "path": ""})
                  for i in range(3)]  # fmt: skip
        run(store.upsert_chunks("q", points))
        assert run(store.space_quantization("q")) == start
        assert run(store.space_quantization("absent")) is None
        store.quantization = other  # as QDRANT_QUANTIZATION=other at the next start
        took = run(store.requantize("q"))
        assert took == (None if store_settings.qdrant_url else 0.0)  # a server builds by itself; no index yet here
        assert run(store.space_quantization("q")) == other
        assert run(store.count_chunks("q")) == 3
        assert len(run(store.search_dense("q", unit, 5))) == 3
        if not store_settings.qdrant_url:  # and it stays so when the shard is opened again
            store.close()
            store = open_store(store_settings)
            assert run(store.space_quantization("q")) == other
    finally:
        store.close()


def test_the_embedded_engine_refuses_a_quantization_it_cannot_keep(settings: Settings) -> None:
    store = open_store(settings)  # (a Qdrant server keeps binary and product quantization too)
    try:
        run(store.ensure_space("q", "m", DIM, "lex"))
        binary = models.BinaryQuantization(binary=models.BinaryQuantizationConfig())
        with pytest.raises(ValueError, match="not supported by the embedded engine"):
            diff = {DENSE: models.VectorParamsDiff(quantization_config=binary)}
            store._client.update_collection(store._chunks("q"), metadata={"x": 1}, vectors_config=diff)
        with pytest.raises(ValueError, match="no vector named 'nope'"):
            store._client.update_collection(store._chunks("q"), vectors_config={"nope": models.VectorParamsDiff()})
        info = store._client.get_collection(store._chunks("q"))
        assert "x" not in (info.config.metadata or {})  # a refusal changes nothing
        assert run(store.space_quantization("q")) == settings.qdrant_quantization
    finally:
        store.close()


def test_migrate_gives_an_indexed_space_the_8bit_copy_and_takes_it_away_without_re_embedding(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A space made before the 8-bit copy (or with QDRANT_QUANTIZATION=none) is listed by `cli.migrate --check`
    and given the copy by `cli.migrate --all`: its index is built again, every chunk stays; and back."""
    old = make_settings(qdrant_quantization="none", qdrant_index_after=1)
    store = open_store(old)
    embedder = load_embedder(old)
    lexical = build_ingest(old, store, embedder, Metrics()).lexical_signature
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(8000, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(len(vectors))]
    query = vectors[0] + vectors[1]
    query /= np.linalg.norm(query)
    exact = dict(zip(ids, (vectors @ query).tolist(), strict=True))

    def engine_error(store: VectorStore) -> float:
        """How far the engine's own scores (not rescored) are from the exact ones: 0 without an 8-bit copy."""
        raw = store._client.query_points(store._chunks("big"), query=query.tolist(), using=DENSE, limit=10)
        return max(abs(p.score - exact[str(p.id)]) for p in raw.points)

    try:
        run(store.ensure_space("big", embedder.model_name, embedder.dimension, lexical))
        for start in range(0, len(vectors), 2000):
            points = [ChunkPoint(ids[i], vectors[i].tolist(), {"text": f"t{i}", "document_id": str(i), "path": "p"},
                                 ([i % 50], [1.0])) for i in range(start, start + 2000)]  # fmt: skip
            run(store.upsert_chunks("big", points))
        assert run(store.build_index_if_due("big")) is not None
        assert engine_error(store) < 1e-5  # the premise: full vectors only
    finally:
        store.close()
        embedder.close()

    monkeypatch.setenv("QDRANT_PATH", str(old.qdrant_path))
    for setting, approximate in (("int8", True), ("none", False)):
        monkeypatch.setenv("QDRANT_QUANTIZATION", setting)
        assert migrate_cli.main(["--check"]) == 1
        kept = "none" if setting == "int8" else "int8"
        assert f"big: needs migration (dense vectors kept as {kept}, QDRANT_QUANTIZATION={setting})" in (
            capsys.readouterr().out
        )
        if setting == "int8":  # a run cut short during the index build: the next one finishes it
            with monkeypatch.context() as cut:
                cut.setattr(EdgeEngine, "optimize", lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
                with pytest.raises(KeyboardInterrupt):
                    migrate_cli.main(["--all"])
            assert migrate_cli.main(["--check"]) == 1
            assert "big: needs migration (the index build that gives it the QDRANT_QUANTIZATION setting was " \
                   "interrupted)" in capsys.readouterr().out  # fmt: skip
        assert migrate_cli.main(["--all"]) == 0
        out = capsys.readouterr().out
        assert f"big: dense vectors now kept as {setting}; index built again in" in out, out
        assert "8000 chunks, nothing re-embedded" in out
        assert migrate_cli.main(["--check"]) == 0
        capsys.readouterr()
        store = open_store(make_settings(qdrant_quantization=setting))
        try:
            assert (engine_error(store) > 1e-4) is approximate  # the 8-bit copy is there, or gone
            assert run(store.space_quantization("big")) == setting
            assert set(run(store.chunk_ids("big"))) == set(ids)
            dense = run(store.search_dense("big", query.tolist(), 10))
            assert [c.id for c in dense][:2] == sorted(ids[:2], key=lambda i: -exact[i])
            assert max(abs(c.score - exact[c.id]) for c in dense) < 1e-5  # rescored: exact either way
        finally:
            store.close()


def test_the_service_names_a_space_kept_otherwise_at_start_up_and_still_answers_from_it(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    old = make_settings(qdrant_quantization="none")
    with TestClient(create_app(old)) as client:
        pump = [("files", ("pump.md", b"# Pump\n\nThe Glimmer pump runs at a maximum pressure of 9 bar."))]
        assert client.post("/documents", data={"space_id": "plant"}, files=pump).status_code == 200
    caplog.set_level(logging.WARNING, logger="backend.container")
    with TestClient(create_app(make_settings(qdrant_quantization="int8"))) as client:
        found = client.post("/search", json={"q": "Glimmer pump pressure", "space_id": "plant"})
        assert found.status_code == 200 and [s["path"] for s in found.json()["sources"]] == ["pump.md"], found.text
    said = [r.getMessage() for r in caplog.records if "needs a migration" in r.getMessage()]
    assert said == ["space plant needs a migration (dense vectors kept as none, QDRANT_QUANTIZATION=int8): "
                    "python -m cli.migrate --space plant"], said  # fmt: skip
