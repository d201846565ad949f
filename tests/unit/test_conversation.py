"""The pure parts of the chat endpoint's conversation handling: judging a rewrite, cleaning it, references."""

from __future__ import annotations

from typing import Any

import pytest

from backend.services.conversation import Turn, _clean, _rewrite_messages, plausible_rewrite, references


@pytest.mark.parametrize(
    ("question", "rewrite", "ok"),
    [
        ("How often is it serviced?", "How often is the Zephyr pump serviced?", True),
        ("А когда закончили замену горелок там?", "Когда закончили замену горелок в котельной на Садовой?", True),
        ("и сколько стоит его работа?", "Сколько стоит работа подрядчика «Гидромонтаж»?", True),
        # An answer instead of a question, an unrelated question, an empty or endless reply.
        ("How often is it serviced?", "The Zephyr pump is serviced every 400 hours.", False),
        ("А когда закончили замену горелок там?", "Что случилось с котельной?", False),
        ("How often is it serviced?", "", False),
        ("How often is it serviced?", "How often " + "really " * 200 + "?", False),
        ("ok", "ok", True),  # nothing to keep: nothing to check
    ],
)
def test_a_rewrite_must_keep_the_question(question: str, rewrite: str, ok: bool) -> None:
    assert plausible_rewrite(question, rewrite) is ok


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Rewritten question: When did Anna send it?", "When did Anna send it?"),
        ('"When did Anna send it?"\nThat is the question.', "When did Anna send it?"),
        ("\n\n  «Когда отправили отчёт?»  ", "Когда отправили отчёт?"),
    ],
)
def test_the_first_line_without_labels_or_quotes_is_kept(raw: str, clean: str) -> None:
    assert _clean(raw) == clean


def test_the_rewrite_sees_the_latest_turns_within_its_budget() -> None:
    turns = [Turn("user", f"old question {i} " + "x" * 900) for i in range(20)] + [Turn("assistant", "y" * 5000)]
    prompt = _rewrite_messages("and then?", turns)[-1]["content"]
    assert "old question 19" in prompt and "old question 0 " not in prompt
    assert "y" * 600 + " ..." in prompt and "y" * 601 not in prompt
    assert prompt.endswith("Last question: and then?\n\nRewritten question:")


def _source(n: int, path: str, cited: bool, title: str | None = None, page: int | None = None) -> dict[str, Any]:
    return {"n": n, "path": path, "document": "d", "title": title, "page": page, "cited": cited}


def test_references_list_the_cited_sources_or_all_when_none_is_cited() -> None:
    sources = [_source(1, "a/pump.md", False, "Pump"), _source(2, "b/spec.pdf", True, "spec.pdf", page=3)]
    assert references(sources, "What?") == "\n\nSources:\n[2] b/spec.pdf, p. 3"
    uncited = [{**s, "cited": False} for s in sources]
    assert references(uncited, "Что?") == "\n\nИсточники:\n[1] a/pump.md (Pump)\n[2] b/spec.pdf, p. 3"
    assert references([], "What?") == ""
