"""Ingestion against embedded Qdrant and a Qdrant server (stand-in), with the real embedder: idempotency,
crash recovery, model checks."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from qdrant_client.http import models

from backend.adapters.embedder import Embedder
from backend.adapters.store import ChunkPoint, EmbeddingMismatchError, VectorStore
from backend.config import Settings
from backend.container import Container, build_ingest, load_embedder, open_store
from backend.observability import Metrics
from backend.services.ingest import IngestService, SourceFile, sentence_texts
from backend.services.summarizing import SummaryService
from backend.services.text_analysis import query_vector


def snapshot(store: VectorStore, space: str) -> dict[str, str]:
    """Every chunk point of a space: id -> hash of its payload and sparse vector.

    Left out: the write time, and the dense vector (its last bits depend on how chunks were batched). The
    reference may come from the other engine (embedded Qdrant Edge against a server)."""
    points, _ = store._client.scroll(f"rag-chunks-{space}", limit=100_000, with_payload=True, with_vectors=["bm25"])
    out = {}
    for p in points:
        payload = {k: v for k, v in (p.payload or {}).items() if k != "indexed_at"}
        vec = p.vector["bm25"]  # type: ignore[index, call-overload]
        assert isinstance(vec, models.SparseVector)
        # In index order, values as float32 keeps them: the server and Qdrant Edge store float32.
        sparse = sorted((int(i), float(f"{v:.6g}")) for i, v in zip(vec.indices, vec.values, strict=True))
        out[str(p.id)] = hashlib.sha256(json.dumps([payload, sparse], sort_keys=True).encode()).hexdigest()
    return out


def docs(n: int, version: str = "v1") -> list[SourceFile]:
    return [
        SourceFile(f"doc{i}.md", f"# Doc {i}\n\n".encode() + (f"Fact {i} {version}: value {i * 7}. " * 40).encode())
        for i in range(n)
    ]


@pytest.fixture
def service(store_settings: Settings) -> Any:
    settings = store_settings
    store = open_store(settings)
    # Small chunks and batches so a handful of documents spans several upserts.
    tuned = settings.model_copy(update={"chunk_tokens": 64, "chunk_overlap_tokens": 8, "upsert_batch_size": 8})
    svc = build_ingest(tuned, store, load_embedder(settings), Metrics())
    yield svc
    store.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_same_files_twice_write_nothing_the_second_time(service: IngestService) -> None:
    first = run(service.ingest("s", docs(5)))
    assert {r.status for r in first} == {"new"}
    before = snapshot(service.store, "s")
    second = run(service.ingest("s", docs(5)))
    assert {r.status for r in second} == {"unchanged"}
    assert snapshot(service.store, "s") == before
    assert len(before) == sum(r.chunks for r in first)


def test_changed_file_leaves_no_stale_chunks(service: IngestService) -> None:
    run(service.ingest("s", docs(3)))
    run(service.ingest("s", docs(1, version="v2")))  # doc0 changes
    texts = [p.payload["text"] for p in service.store._client.scroll("rag-chunks-s", limit=1000)[0]]  # type: ignore[index]
    assert not any("Fact 0 v1" in t for t in texts)
    assert any("Fact 0 v2" in t for t in texts)
    assert sum("Fact 1 v1" in t for t in texts) > 0


def interrupted_at_second_upsert(
    service: IngestService, files: list[SourceFile], monkeypatch: pytest.MonkeyPatch
) -> dict[str, int]:
    """Ingest `files`, the process "dying" at the second batch of chunks; returns the upsert calls made."""
    calls = {"n": 0}
    real = VectorStore.upsert_chunks

    async def crash(self: VectorStore, space: str, points: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash mid-write")
        await real(self, space, points)

    monkeypatch.setattr(VectorStore, "upsert_chunks", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(service.ingest("s", files))
    monkeypatch.setattr(VectorStore, "upsert_chunks", real)
    return calls


def test_interrupted_rewrite_recovers_to_the_uninterrupted_state(
    service: IngestService, make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reference: an uninterrupted run of v1 then v2 in another store.
    ref_store = open_store(make_settings(qdrant_path=tmp_path / "ref"))
    ref = IngestService(ref_store, service.embedder, Metrics(), chunk_tokens=64, overlap_tokens=8, batch_size=32)
    run(ref.ingest("s", docs(4)))
    run(ref.ingest("s", docs(4, version="v2")))
    expected = snapshot(ref_store, "s")
    ref_store.close()

    run(service.ingest("s", docs(4)))
    calls = interrupted_at_second_upsert(service, docs(4, version="v2"), monkeypatch)
    # The half-written state still has every v1 document complete (searches never see a gap) ...
    half = snapshot(service.store, "s")
    assert calls["n"] == 2 and len(half) > len(expected)
    # ... and a plain re-run converges to exactly what an uninterrupted run produces.
    plan = run(service.plan("s", {f.path: hashlib.sha256(f.data).hexdigest() for f in docs(4, "v2")}))
    assert sorted(plan.changed) == [f"doc{i}.md" for i in range(4)]
    run(service.ingest("s", docs(4, version="v2")))
    assert snapshot(service.store, "s") == expected


def sections(n: int) -> bytes:
    parts = (f"# Part {i}\n\nPart {i} of the plan: the value is {i * 11}. The owner is team {i % 5}. Due in week {i}."
             for i in range(n))  # fmt: skip
    return "\n\n".join(parts).encode()


def chunk_texts(store: VectorStore, space: str) -> dict[str, tuple[str, Any]]:
    """{chunk id: (text, version tag)}"""
    points, _ = store._client.scroll(f"rag-chunks-{space}", limit=100_000, with_payload=True)
    return {str(p.id): (p.payload["text"], p.payload["version"]) for p in points}  # type: ignore[index]


def test_a_grown_document_keeps_the_ids_and_vectors_of_its_unchanged_chunks(service: IngestService) -> None:
    [first] = run(service.ingest("s", [SourceFile("plan.md", sections(30))]))
    before = chunk_texts(service.store, "s")
    vectors = {p.id: p.vector for p in run(service.store.read_chunks("s", list(before)))}
    sentences = {p.id: p.sentences for p in run(service.store.read_chunks("s", list(before)))}
    [grown] = run(service.ingest("s", [SourceFile("plan.md", sections(34))]))
    after = chunk_texts(service.store, "s")
    kept = set(before) & set(after)
    assert grown.status == "changed" and grown.chunks == len(after) > first.chunks == len(before)
    assert len(kept) == grown.reused >= first.chunks - 1  # only the last chunk may take in new text
    assert all(before[i][0] == after[i][0] for i in kept)
    assert {v for _, v in after.values()} == {run(service.store.get_document("s", grown.document_id)).version}
    assert all(p.vector == vectors[p.id] for p in run(service.store.read_chunks("s", list(kept))))
    # a vector per sentence of a chunk ("Part 1 of the plan: ..."; its own for a chunk of one or two), kept too
    stored = points(service, "s")
    assert all(p.sentences and len(p.sentences) == max(1, len(sentence_texts(p.payload["text"]))) for p in stored)
    assert any(len(sentence_texts(p.payload["text"])) > 1 for p in stored)
    assert all(p.sentences == sentences[p.id] for p in run(service.store.read_chunks("s", list(kept))))


def points(service: IngestService, space: str) -> list[ChunkPoint]:
    return cast(list[ChunkPoint], run(service.store.read_chunks(space, list(chunk_texts(service.store, space)))))


def test_sentence_weight_zero_creates_spaces_without_sentence_vectors(store_settings: Settings) -> None:
    """HYBRID_SENTENCE_WEIGHT=0: nothing would read them, so ingestion embeds each chunk once."""
    settings = store_settings.model_copy(update={"hybrid_sentence_weight": 0.0})
    store = open_store(settings)
    try:
        ingest = build_ingest(settings, store, load_embedder(settings), Metrics())
        [result] = run(ingest.ingest("plain", [SourceFile("plan.md", sections(6))]))
        assert result.status == "new"
        schema = run(store.space_schema("plain"))
        assert schema is not None and not schema.sentences
        assert all(p.sentences is None for p in points(ingest, "plain"))
    finally:
        store.close()


def test_a_space_created_before_sentence_vectors_takes_new_documents_without_them(service: IngestService) -> None:
    """Such a space stays uniform (every chunk ranked by its own vector alone) and keeps taking writes."""
    store, embedder = service.store, service.embedder
    store._create_chunks("rag-chunks-old", "old", embedder.model_name, embedder.dimension, service.lexical_signature,
                         sentences=False)  # fmt: skip
    [result] = run(service.ingest("old", [SourceFile("plan.md", sections(10))]))
    assert result.status == "new" and result.chunks > 1
    schema = run(store.space_schema("old"))
    assert schema is not None and not schema.sentences
    assert all(p.sentences is None for p in points(service, "old"))
    vector = embedder.embed_query_sync("Who owns part 3 of the plan?")
    found = run(store.search_both("old", vector, query_vector("Who owns part 3 of the plan?"), 10))
    assert found and all(c.sentence_score is None and c.dense_score is not None for c in found)


def test_an_interrupted_rewrite_leaves_the_indexed_version_whole_with_its_ids(
    service: IngestService, make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = [SourceFile("plan.md", sections(40))]
    ref_store = open_store(make_settings(qdrant_path=tmp_path / "ref"))
    ref = IngestService(ref_store, service.embedder, Metrics(), chunk_tokens=64, overlap_tokens=8, batch_size=32)
    run(ref.ingest("s", v1))
    expected = snapshot(ref_store, "s")
    ref_store.close()

    run(service.ingest("s", v1))
    indexed = chunk_texts(service.store, "s")
    assert len(indexed) > 16  # the crash below lands after the first batch of 8, which rewrote kept chunks
    # part 1 changed (a new chunk in the first batch), part 40 added
    v2 = sections(41).replace(b"the value is 11.", b"the value is 12.")
    interrupted_at_second_upsert(service, [SourceFile("plan.md", v2)], monkeypatch)
    shared = [i for i, (_, tag) in chunk_texts(service.store, "s").items() if isinstance(tag, list)]
    assert shared  # kept chunks were re-tagged [old, new] before the crash
    # a summary meanwhile reads the indexed version alone, none of the half-written one's new chunks
    [doc] = run(service.store.list_documents("s"))
    assert len(chunk_texts(service.store, "s")) > len(indexed)
    summaries = SummaryService(service.store, cast(Any, None), Metrics(), max_tokens=64, temperature=0,
                               context_tokens=2048, max_chunks=1000)  # fmt: skip
    selected = run(summaries.select("s", doc.id, None))
    assert {c.id for c in selected} == set(indexed) and {c.payload["version"] for c in selected} == {doc.version}
    assert run(service.repair("s")) == 1
    # The indexed version is whole again: the same ids, the same texts, tagged with it alone ...
    assert chunk_texts(service.store, "s") == indexed
    [record] = run(service.store.list_documents("s"))
    assert record.stale and record.writing is None and record.garbage == []
    # ... and, since kept chunks carry the interrupted version's positions, the same file is rewritten
    [again] = run(service.ingest("s", v1))
    assert again.status == "changed" and again.reused == again.chunks
    assert snapshot(service.store, "s") == expected
    assert not run(service.store.get_document("s", again.document_id)).stale


def test_interrupted_first_write_is_undone_by_repair(service: IngestService, monkeypatch: pytest.MonkeyPatch) -> None:
    run(service.ingest("s", docs(1)))  # the space exists

    real = VectorStore.upsert_chunks

    async def crash(self: VectorStore, space: str, points: Any) -> None:
        await real(self, space, points)
        raise RuntimeError("crash after the chunks, before the commit")

    monkeypatch.setattr(VectorStore, "upsert_chunks", crash)
    with pytest.raises(RuntimeError):
        run(service.ingest("s", [SourceFile("new.md", b"Brand new document text.")]))
    monkeypatch.setattr(VectorStore, "upsert_chunks", real)
    assert any(p.payload["path"] == "new.md" for p in service.store._client.scroll("rag-chunks-s")[0])  # type: ignore[index]
    assert run(service.repair("s")) == 1
    assert not any(p.payload["path"] == "new.md" for p in service.store._client.scroll("rag-chunks-s")[0])  # type: ignore[index]
    assert [r.path for r in run(service.store.list_documents("s"))] == ["doc0.md"]


def test_changing_the_chunking_reindexes_unchanged_files(service: IngestService, settings: Settings) -> None:
    run(service.ingest("s", docs(2)))
    other = IngestService(service.store, service.embedder, Metrics(), chunk_tokens=100, overlap_tokens=8, batch_size=32)
    assert {r.status for r in run(other.ingest("s", docs(2)))} == {"changed"}


def test_a_space_built_with_another_model_is_a_clear_startup_error(store_settings: Settings) -> None:
    settings = store_settings
    store = open_store(settings)
    run(store.ensure_space("legacy", "intfloat/multilingual-e5-base", 768, "any"))
    store.close()

    async def start() -> None:
        await Container.open(settings)

    with pytest.raises(EmbeddingMismatchError) as info:
        run(start())
    message = str(info.value)
    assert "'legacy'" in message and "intfloat/multilingual-e5-base" in message and "768" in message
    assert "--recreate" in message and "EMBEDDING_MODEL" in message


def test_e5_models_get_their_prefixes() -> None:
    from backend.adapters.embedder import default_prefixes

    assert default_prefixes("intfloat/multilingual-e5-base") == ("query: ", "passage: ")
    assert default_prefixes("sentence-transformers/all-MiniLM-L6-v2") == ("", "")
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu", query_prefix="query: ")
    assert embedder.engine.query_prefix == "query: " and embedder.engine.passage_prefix == ""  # type: ignore[attr-defined]


def test_concurrent_writes_of_one_document_leave_exactly_one_version(service: IngestService) -> None:
    v1 = SourceFile("same.md", b"# Same\n\n" + b"Version one sentence here. " * 60)
    v2 = SourceFile("same.md", b"# Same\n\n" + b"Version two sentence here. " * 80)

    async def both() -> None:
        await asyncio.gather(service.ingest("s", [v1]), service.ingest("s", [v2]))

    run(both())
    (record,) = run(service.store.list_documents("s"))
    points, _ = service.store._client.scroll("rag-chunks-s", limit=10_000, with_payload=True)
    assert {p.payload["version"] for p in points} == {record.version}  # type: ignore[index]
    assert len(points) == record.chunk_count and record.garbage == []


def test_the_search_index_is_built_only_when_due_and_changes_no_ranking(service: IngestService) -> None:
    store = service.store
    run(service.ingest("s", docs(6)))
    chunks = run(store.count_chunks("s"))
    store.index_after = chunks + 1
    assert run(store.build_index_if_due("s")) is None  # not due: nothing built
    vector = run(service.embedder.embed_query("Fact 3 value 21"))
    before = [(c.id, round(c.score, 5)) for c in run(store.search_dense("s", vector, 5))]
    store.index_after = chunks
    took = run(store.build_index_if_due("s"))
    if store.embedded:
        assert took is not None and took >= 0  # due: the engine was asked to build it
    else:
        assert took is None  # a Qdrant server indexes by itself
    assert [(c.id, round(c.score, 5)) for c in run(store.search_dense("s", vector, 5))] == before
