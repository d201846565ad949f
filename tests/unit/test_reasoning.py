"""Thinking is kept out of the answer however the tags are split across stream deltas."""

from __future__ import annotations

import pytest

from backend.services.reasoning import ThinkSplitter, split_final

TEXT = "<think>The user asks about pumps. Passage 1 says 9 bar.</think>\n\nThe maximum is 9 bar [1]."


def run(deltas: list[str]) -> tuple[str, str]:
    splitter = ThinkSplitter()
    pieces = [p for d in deltas for p in splitter.feed(d)] + splitter.flush()
    return (
        "".join(t for k, t in pieces if k == "reasoning"),
        "".join(t for k, t in pieces if k == "answer"),
    )


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 13, 1000])
def test_any_split_of_the_tags_gives_the_same_result(size: int) -> None:
    deltas = [TEXT[i : i + size] for i in range(0, len(TEXT), size)]
    assert run(deltas) == ("The user asks about pumps. Passage 1 says 9 bar.", "The maximum is 9 bar [1].")


def test_plain_answers_pass_through_untouched() -> None:
    assert run(["The pump ", "runs at <b>9</b> bar."]) == ("", "The pump runs at <b>9</b> bar.")
    assert run(["<", "tag> is not think"]) == ("", "<tag> is not think")
    assert run(["  ", "Hello"]) == ("", "  Hello")


def test_an_unclosed_think_is_all_reasoning() -> None:
    assert run(["<think>still thinking when the tokens ran o", "ut"]) == ("still thinking when the tokens ran out", "")


def test_r1_style_output_without_the_opening_tag_is_split_at_the_end() -> None:
    assert split_final("I should check passage 2.</think>\nIt is 9 bar [2].") == (
        "I should check passage 2.",
        "It is 9 bar [2].",
    )
    assert split_final("No thinking here.") == ("", "No thinking here.")
