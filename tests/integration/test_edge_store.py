"""The embedded engine (Qdrant Edge) on disk: one process per folder, and a damaged shard is named, never
read as an empty space."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from qdrant_client.http import models

from backend.adapters.edge_engine import ENGINE_VERSION, EdgeEngine
from backend.adapters.store import PAYLOAD_INDEXES, SCHEMA, StoreError, StoreLockedError, VectorStore
from backend.config import Settings
from backend.container import build_ingest, load_embedder, open_store
from backend.main import create_app
from backend.observability import Metrics
from backend.services.ingest import SourceFile
from cli import index_cli
from tests.servers import free_port


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def indexed(settings: Settings) -> Settings:
    store = open_store(settings)
    docs = [SourceFile("a.txt", ("Насосная станция номер три остановлена на ремонт. " * 20).encode())]
    run(build_ingest(settings, store, load_embedder(settings), Metrics()).ingest("s", docs))
    store.close()
    return settings


def test_a_second_process_is_refused_at_once(indexed: Settings) -> None:
    holder = EdgeEngine(indexed.qdrant_path)
    try:
        with pytest.raises(StoreLockedError, match="open in another process"):
            VectorStore(path=indexed.qdrant_path)
    finally:
        holder.close()
    VectorStore(path=indexed.qdrant_path).close()  # released with the holder


@pytest.mark.parametrize("damage", ["config", "segments"])
def test_a_damaged_shard_stops_start_up_naming_its_folder_and_the_fix(
    indexed: Settings, damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shard = indexed.qdrant_path / "shards" / "rag-chunks-s"
    if damage == "config":
        (shard / "edge_config.json").write_text("{ not json")
    else:
        for f in (shard / "segments").rglob("*"):
            if f.is_file():
                f.write_bytes(b"\0" * 16)
    with pytest.raises(StoreError) as err, TestClient(create_app(indexed)):
        pass
    assert str(shard) in str(err.value) and "--recreate" in str(err.value)

    # The step the message names brings the space back.
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Насосная станция номер три остановлена на ремонт. " * 20)
    for key, value in {"QDRANT_PATH": str(indexed.qdrant_path), "PORT": str(free_port()), "AUTH_DISABLED": "true",
                       "LLM_BASE_URL": indexed.llm_base_url}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    assert index_cli.main(["--dir", str(corpus), "--space", "s", "--recreate"]) == 0
    with TestClient(create_app(indexed)) as client:
        found = client.post("/search", json={"q": "насосная станция", "space_id": "s"}).json()
    assert [s["path"] for s in found["sources"]][:1] == ["a.txt"]


def test_a_space_without_its_payload_indexes_gets_them_at_the_next_write(settings: Settings) -> None:
    """A space whose creation was cut off after the collection (or made before an index was added)."""
    store = open_store(settings)
    try:
        name = store._chunks("s")
        store._client.create_collection(
            name,
            vectors_config={"dense": models.VectorParams(size=384, distance=models.Distance.COSINE)},
            sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)},
            metadata={"embedding_model": "m", "dimension": 384, "space": "s", "schema": SCHEMA, "lexical": "lx"},
        )
        assert not store._client.get_collection(name).payload_schema
        run(store.ensure_space("s", "m", 384, "lx"))
        assert set(store._client.get_collection(name).payload_schema or {}) == set(PAYLOAD_INDEXES)
    finally:
        store.close()


def test_a_shard_a_newer_engine_opened_is_refused_by_name_and_the_engine_that_opens_a_shard_marks_it(
    indexed: Settings,
) -> None:
    info_path = indexed.qdrant_path / "shards" / "rag-chunks-s" / "collection.json"
    info = json.loads(info_path.read_text())
    assert info["engine"] == ENGINE_VERSION  # written at creation

    # A shard from before the mark (or any older engine) is opened, and marked with this engine's version.
    info_path.write_text(json.dumps({**info, "engine": "0.8.2"}))
    with TestClient(create_app(indexed)) as client:
        assert client.post("/search", json={"q": "насосная станция", "space_id": "s"}).status_code == 200
    assert json.loads(info_path.read_text())["engine"] == ENGINE_VERSION

    # One a newer engine opened may be in a format this one misreads: refused before the engine reads it.
    info_path.write_text(json.dumps({**info, "engine": "0.10.0b1"}))
    with pytest.raises(StoreError) as err, TestClient(create_app(indexed)):
        pass
    message = str(err.value)
    assert str(info_path.parent) in message and "newer engine (qdrant-edge-py 0.10.0b1)" in message
    assert f"qdrant-edge-py {ENGINE_VERSION}" in message and "--recreate" in message
    assert json.loads(info_path.read_text())["engine"] == "0.10.0b1"  # left as it was


def test_the_engines_answers_are_qdrant_clients_own_models_and_ids_pass_in_either_form(tmp_path: Path) -> None:
    # The engine builds its answers without pydantic's validation and leaves parsing ids to Edge (both
    # for speed: a hybrid search converts ~150 points and names ~100 ids); what comes out must still be
    # what qdrant-client itself would hand the store, and the REST stand-in serialises.
    engine = EdgeEngine(tmp_path / "store")
    try:
        engine.create_collection("c", vectors_config=models.VectorParams(size=2, distance=models.Distance.COSINE))
        ids = ["0b7e6c2e-5a42-4f0e-9d1c-3f7c1d2e4a10", "6f1d0c9a-2b3e-4c5d-8e7f-0a1b2c3d4e5f", 7]
        engine.upsert("c", [models.PointStruct(id=i, vector=[1.0, float(n)], payload={"n": n})
                            for n, i in enumerate(ids)])  # fmt: skip
        found = engine.query_points("c", query=[1, 0], limit=3, with_payload=True).points
        assert [str(p.id) for p in found] == [ids[0], ids[1], "7"]
        assert [p.payload for p in found] == [{"n": 0}, {"n": 1}, {"n": 2}]
        for p in found:
            assert p == models.ScoredPoint.model_validate(p.model_dump())
            assert p.model_dump(mode="json", exclude_none=True) == {"id": p.id, "version": p.version,
                                                                    "score": p.score, "payload": p.payload}  # fmt: skip

        # A UUID in capitals is the same point; an int id as well; a malformed one is refused by name.
        only = models.Filter(must=[models.HasIdCondition(has_id=[ids[1].upper(), 7])])
        hits = engine.query_points("c", query=[1.0, 0.0], query_filter=only, limit=3, with_payload=False).points
        assert sorted(str(p.id) for p in hits) == sorted([ids[1], "7"]) and all(p.payload is None for p in hits)
        malformed = models.Filter(must=[models.HasIdCondition(has_id=["not-an-id"])])
        with pytest.raises(ValueError, match="not-an-id"):
            engine.query_points("c", query=[1.0, 0.0], query_filter=malformed, limit=1)
        assert [r.id for r in engine.retrieve("c", [ids[0].upper()])] == [ids[0]]
    finally:
        engine.close()


def _payload_storage(shard: Path) -> set[str]:
    """How the engine keeps the payloads of each segment of a shard (its own segment.json files)."""
    return {
        json.loads(f.read_text())["config"]["payload_storage_type"]["type"]
        for f in shard.glob("segments/*/segment.json")
    }


def test_payloads_are_read_from_memory_in_new_shards_and_in_old_ones_after_their_next_index_build(
    tmp_path: Path,
) -> None:
    import qdrant_edge as edge

    # A shard as the previous version created it: the engine's default leaves payloads on disk.
    store = tmp_path / "store"
    engine = EdgeEngine(store)
    vectors = models.VectorParams(size=2, distance=models.Distance.COSINE)
    engine.create_collection("new", vectors_config=vectors)
    engine.create_collection("old", vectors_config=vectors)
    engine.close()
    old = store / "shards" / "old"
    (old / "edge_config.json").unlink()
    for f in (old / "segments").iterdir():
        shutil.rmtree(f)
    shutil.rmtree(old / "wal")
    edge.EdgeShard.create(
        str(old), edge.EdgeConfig(vectors={"": edge.EdgeVectorParams(size=2, distance=edge.Distance.Cosine)})
    ).close()
    assert json.loads((old / "edge_config.json").read_text()).get("payload_memory") is None

    engine = EdgeEngine(store)
    try:
        points = [models.PointStruct(id=i, vector=[1.0, float(i)], payload={"text": f"чанк {i}"}) for i in range(1, 50)]
        for name in ("new", "old"):
            engine.upsert(name, points)
        assert json.loads((store / "shards" / "new" / "edge_config.json").read_text())["payload_memory"] == "cached"
        assert _payload_storage(store / "shards" / "new") == {"in_ram_mmap"}
        assert json.loads((old / "edge_config.json").read_text())["payload_memory"] == "cached"  # from this open on
        assert _payload_storage(old) == {"mmap"}  # its segment: until it is rewritten
        engine.optimize("old")
    finally:
        engine.close()
    assert _payload_storage(old) == {"in_ram_mmap"}  # the segment it replaced is gone once the shard is closed

    engine = EdgeEngine(store)
    try:
        for name in ("new", "old"):
            found = engine.query_points(name, query=[1.0, 0.0], limit=3).points
            assert [p.payload for p in found] == [{"text": "чанк 1"}, {"text": "чанк 2"}, {"text": "чанк 3"}]
    finally:
        engine.close()
