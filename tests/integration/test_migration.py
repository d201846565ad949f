"""Spaces from before hybrid retrieval: still answer, refuse what they cannot do, migrate losing nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from qdrant_client import models

from backend.adapters.store import SpaceNeedsMigrationError, VectorStore
from backend.config import Settings
from backend.container import build_ingest, load_embedder, open_store, retrieval_config
from backend.main import create_app
from backend.observability import Metrics
from backend.services.ingest import IngestService, SourceFile
from backend.services.migration import MigrationService
from backend.services.retrieval import RetrievalService, SearchOptions
from cli import migrate as migrate_cli

DOCS = [
    SourceFile("mail/nasos.txt", ("Насосная станция номер три остановлена на ремонт. " * 30).encode()),
    SourceFile("specs/crane.md", b"# Crane\n\nThe gantry crane lifts twelve tonnes. " * 20),
    SourceFile("minutes/sovet.txt", "Совет директоров утвердил бюджет на строительство склада.".encode()),
]
# What issue #2 wrote into each chunk's payload (no filter fields).
LEGACY_FIELDS = {"space", "document_id", "path", "title", "heading", "page", "chunk", "chunk_count", "text",
                 "version", "content_sha256", "chunk_hash"}  # fmt: skip


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def make_legacy(store: VectorStore, space: str) -> dict[str, tuple[list[float], dict[str, Any]]]:
    """Rewrite a space's chunk collection the way issue #2 created it: one unnamed dense vector."""
    name = f"rag-chunks-{space}"
    col = store._client.get_collection(name)
    points, _ = store._client.scroll(name, limit=10_000, with_payload=True, with_vectors=True)
    legacy = {str(p.id): (p.vector["dense"], {k: v for k, v in p.payload.items() if k in LEGACY_FIELDS})  # type: ignore[index, union-attr]
              for p in points}  # fmt: skip
    meta = {k: v for k, v in (col.config.metadata or {}).items() if k in ("embedding_model", "dimension", "space")}
    store._client.delete_collection(name)
    store._client.create_collection(
        name, vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE), metadata=meta
    )
    store._client.upsert(name, [models.PointStruct(id=i, vector=v, payload=p) for i, (v, p) in legacy.items()])
    store._schemas.clear()
    return legacy


@pytest.fixture
def legacy(settings: Settings) -> Iterator[tuple[IngestService, dict[str, Any]]]:
    store = open_store(settings)
    ingest = build_ingest(settings, store, load_embedder(settings), Metrics())
    run(ingest.ingest("old", DOCS))
    run(ingest.ingest("fresh", DOCS))
    yield ingest, make_legacy(store, "old")
    store.close()


def ranking(retrieval: RetrievalService, space: str, question: str, mode: str = "hybrid") -> list[tuple[Any, ...]]:
    """(path, score) best first; chunk indexes left out, since repeated text ties in any order."""
    found = run(retrieval.retrieve(space, question, 5, SearchOptions(mode=mode)))  # type: ignore[arg-type]
    return sorted(((c.payload["path"], round(c.score, 5)) for c in found.chunks), key=lambda x: (-x[1], x[0]))


def test_a_legacy_space_answers_dense_and_says_what_to_run(legacy: Any, settings: Settings) -> None:
    ingest, _ = legacy
    retrieval = RetrievalService(ingest.store, ingest.embedder, Metrics(), retrieval_config(settings))
    found = run(retrieval.retrieve("old", "насосная станция", 3))
    assert found.mode == "dense" and found.chunks
    assert any("python -m cli.migrate --space old" in n for n in found.notices)
    with pytest.raises(SpaceNeedsMigrationError, match=r"cli\.migrate --space old"):
        run(retrieval.retrieve("old", "насосная станция", 3, SearchOptions(mode="hybrid")))
    with pytest.raises(SpaceNeedsMigrationError, match=r"nothing is lost.*cli\.migrate --space old"):
        run(ingest.ingest("old", [SourceFile("new.txt", b"a new document")]))
    assert run(MigrationService(ingest.store, ingest).needs_migration("old"))
    assert not run(MigrationService(ingest.store, ingest).needs_migration("fresh"))


def test_migration_keeps_every_chunk_and_matches_a_fresh_index(legacy: Any, settings: Settings) -> None:
    ingest, before = legacy
    result = run(MigrationService(ingest.store, ingest).migrate("old"))
    assert (result.action, result.chunks, result.from_schema) == ("migrated", len(before), 1)
    points, _ = ingest.store._client.scroll("rag-chunks-old", limit=10_000, with_payload=True, with_vectors=True)
    assert {str(p.id) for p in points} == set(before)  # same ids: no document re-indexes on the next sync
    for p in points:
        vector, payload = before[str(p.id)]
        assert p.vector["dense"] == pytest.approx(vector) and p.vector["bm25"].indices  # type: ignore[index, union-attr]
        assert {k: p.payload[k] for k in payload} == payload  # type: ignore[index]
        assert p.payload["folders"] and p.payload["file_type"] in ("txt", "md")  # type: ignore[index]
        # the chunk's script, which fusing a space of both languages reads (Russian notes, an English spec)
        assert p.payload["cyrillic_share"] == (0.0 if p.payload["path"] == "specs/crane.md" else 1.0)  # type: ignore[index]
    # The migration does not embed: the space stays without sentence vectors (re-indexing adds them), so it
    # ranks as a fresh space does with them left out of the fusion.
    schema = run(ingest.store.space_schema("old"))
    assert schema is not None and not schema.sentences and "sentences" not in points[0].vector  # type: ignore[operator]
    config = retrieval_config(settings)
    config.sentence_weight = 0.0
    retrieval = RetrievalService(ingest.store, ingest.embedder, Metrics(), config)
    for question in ("Почему остановили насосную станцию?", "gantry crane tonnes"):
        for mode in ("hybrid", "sparse", "dense"):
            assert ranking(retrieval, "old", question, mode) == ranking(retrieval, "fresh", question, mode)
    # Up to date now; writing works again and unchanged files stay unchanged.
    assert run(MigrationService(ingest.store, ingest).migrate("old")).action == "up-to-date"
    assert {r.status for r in run(ingest.ingest("old", DOCS))} == {"unchanged"}


def test_chunks_indexed_before_their_script_was_recorded_get_it_in_place(legacy: Any, settings: Settings) -> None:
    """A space of the current schema from before 2026-12-05: its chunks lack the script that hybrid search
    over both languages reads. `cli.migrate` records it from each chunk's text, nothing else changes."""
    ingest, _ = legacy
    store, name = ingest.store, "rag-chunks-fresh"
    retrieval = RetrievalService(store, ingest.embedder, Metrics(), retrieval_config(settings))
    question = "Почему остановили насосную станцию?"
    indexed_today = ranking(retrieval, "fresh", question)
    points, _ = store._client.scroll(name, limit=10_000, with_payload=True, with_vectors=True)
    store._client.upsert(name, [models.PointStruct(id=p.id, vector=p.vector,  # type: ignore[arg-type]
                                                   payload={k: v for k, v in (p.payload or {}).items()
                                                            if k != "cyrillic_share"})
                                for p in points])  # fmt: skip
    store._client.update_collection(name, metadata={"scripts": False})
    store._schemas.clear()
    service = MigrationService(store, ingest)
    assert run(service.reasons("fresh")) == [
        "its chunks carry no script yet (hybrid search over Russian and English chunks reads it)"
    ]
    found = run(retrieval.retrieve("fresh", question, 5))
    assert found.chunks and all("cyrillic_share" not in c.payload for c in found.chunks)  # fused as before
    result = run(service.migrate("fresh"))
    assert (result.action, result.chunks) == ("scripts recorded", len(points))
    after, _ = store._client.scroll(name, limit=10_000, with_payload=True, with_vectors=True)
    by_id = {str(p.id): p for p in points}
    for p in after:
        share = 0.0 if p.payload["path"] == "specs/crane.md" else 1.0  # type: ignore[index]
        assert p.payload == {**(by_id[str(p.id)].payload or {}), "cyrillic_share": share}
        assert p.vector == by_id[str(p.id)].vector  # nothing re-embedded or re-analysed
    assert run(service.reasons("fresh")) == [] and run(service.migrate("fresh")).action == "up-to-date"
    assert ranking(retrieval, "fresh", question) == indexed_today
    assert {r.status for r in run(ingest.ingest("fresh", DOCS))} == {"unchanged"}


def test_an_interrupted_migration_is_finished_by_running_it_again(legacy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ingest, before = legacy
    service = MigrationService(ingest.store, ingest, batch=2)
    # 1. Crash while copying: the original is untouched and still answers.
    real_upsert = VectorStore.upsert_staging
    calls = {"n": 0}

    async def failing_upsert(self: VectorStore, space: str, points: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash while copying")
        await real_upsert(self, space, points)

    monkeypatch.setattr(VectorStore, "upsert_staging", failing_upsert)
    with pytest.raises(RuntimeError, match="while copying"):
        run(service.migrate("old"))
    monkeypatch.setattr(VectorStore, "upsert_staging", real_upsert)
    assert run(ingest.store.staging_state("old")) == "partial"
    assert run(ingest.store.count_chunks("old")) == len(before)
    # 2. Crash in the swap, after the original was dropped: only the complete staging copy is left.
    real_swap = VectorStore.swap_in_staging

    async def crashing_swap(self: VectorStore, space: str, *args: Any) -> int:
        await self._run(self._client.delete_collection, self._chunks(space))
        raise RuntimeError("simulated crash while swapping")

    monkeypatch.setattr(VectorStore, "swap_in_staging", crashing_swap)
    with pytest.raises(RuntimeError, match="while swapping"):
        run(service.migrate("old"))
    monkeypatch.setattr(VectorStore, "swap_in_staging", real_swap)
    assert not run(ingest.store.space_exists("old")) and run(ingest.store.staging_state("old")) == "complete"
    # 3. Running it again finishes the job with every chunk.
    result = run(service.migrate("old"))
    assert result.action == "resumed" and result.chunks == len(before)
    assert set(run(ingest.store.chunk_ids("old"))) == set(before)
    assert run(ingest.store.staging_state("old")) == "none"


def test_migrate_cli_checks_and_migrates(legacy: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    ingest, before = legacy
    ingest.store.close()  # the CLI opens the embedded store itself
    monkeypatch.setenv("QDRANT_PATH", str(settings.qdrant_path))
    assert migrate_cli.main(["--check"]) == 1
    assert "old: needs migration" in capsys.readouterr().out
    assert migrate_cli.main(["--space", "nope"]) == 2
    assert "no such space: nope" in capsys.readouterr().err
    assert migrate_cli.main(["--all"]) == 0
    assert f"old: migrated, {len(before)} chunks (was schema 1" in capsys.readouterr().out
    assert migrate_cli.main(["--check"]) == 0
    ingest.store = open_store(settings)  # for the fixture's teardown


def test_the_api_explains_a_legacy_space(legacy: Any, settings: Settings) -> None:
    legacy[0].store.close()
    with TestClient(create_app(settings)) as client:
        resp = client.post("/search", json={"q": "насос", "space_id": "old", "mode": "sparse"})
        assert resp.status_code == 409
        assert resp.json()["error"]["code"] == "space_needs_migration"
        assert "python -m cli.migrate --space old" in resp.json()["error"]["message"]
        resp = client.post("/search", json={"q": "насос", "space_id": "old"})
        assert resp.status_code == 200 and resp.json()["retrieval"]["mode"] == "dense"
        assert "cli.migrate --space old" in resp.json()["retrieval"]["notices"][0]
        spaces = {s["name"]: s for s in client.get("/spaces").json()["spaces"]}
        assert spaces["old"]["schema_version"] == 1 and spaces["old"]["lexical_analyzer"] is None
        assert spaces["fresh"]["schema_version"] == 2 and "window=200" in spaces["fresh"]["lexical_analyzer"]
    legacy[0].store = open_store(settings)
