"""Prompt numbering, citation detection and the context budget."""

from __future__ import annotations

from backend.adapters.store import ScoredChunk
from backend.services.answering import Source, build_messages, cited_numbers, fit_to_budget, no_context_answer


def chunk(text: str, **payload: object) -> ScoredChunk:
    return ScoredChunk("id", 0.5, {"text": text, "path": "a.md", **payload})


def test_citations_are_found_in_common_forms() -> None:
    assert cited_numbers("Yes [1]. Also [2][3] and [4, 5].", 5) == {1, 2, 3, 4, 5}
    assert cited_numbers("See [2]; not [9] nor [0] nor [x].", 3) == {2}
    assert cited_numbers("no citations here", 3) == set()


def test_prompt_numbers_every_source_and_names_where_it_comes_from() -> None:
    sources = [Source(1, chunk("alpha", page=3)), Source(2, chunk("beta", heading="Setup"))]
    system, user = build_messages("What?", sources)
    assert system["role"] == "system" and "[1]" in system["content"]
    assert "[1] (source: a.md, page 3)\nalpha" in user["content"]
    assert '[2] (source: a.md, section "Setup")\nbeta' in user["content"]
    assert user["content"].rstrip().endswith("Question: What?")


def test_budget_keeps_best_ranked_chunks_and_counts_the_dropped() -> None:
    chunks = [chunk("x" * 1000) for _ in range(10)]
    kept, dropped = fit_to_budget("q", chunks, budget_tokens=1500)
    assert 0 < len(kept) < 10
    assert kept == chunks[: len(kept)]
    assert dropped == 10 - len(kept)
    assert fit_to_budget("q", chunks, budget_tokens=100_000) == (chunks, 0)


def test_no_context_answer_speaks_the_question_language() -> None:
    assert "нет документов" in no_context_answer("Где отчёт?", "demo")
    assert "holds no documents" in no_context_answer("Where is the report?", "demo")
