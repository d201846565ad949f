"""The summary's batching: every chunk in exactly one batch, in order, none cut, none over the budget
unless it alone is; the notes kept from a map call."""

from __future__ import annotations

import pytest

from backend.services.summarizing import _note_lines, _pack


@pytest.mark.parametrize(
    ("sizes", "budget", "runs"),
    [
        ([10, 10, 10], 25, [(0, 2), (2, 3)]),
        ([10, 10, 10], 30, [(0, 3)]),
        ([50, 10, 10], 25, [(0, 1), (1, 3)]),  # a chunk over the budget goes alone, whole
        ([10, 50, 10], 25, [(0, 1), (1, 2), (2, 3)]),
        ([], 25, []),
    ],
)
def test_pack_covers_every_item_in_order(sizes: list[int], budget: int, runs: list[tuple[int, int]]) -> None:
    assert _pack(sizes, budget) == runs
    covered = [i for start, end in runs for i in range(start, end)]
    assert covered == list(range(len(sizes)))


def test_notes_are_list_items_and_cited_lines() -> None:
    assert _note_lines("Here are the notes:\n- pumps bought [2]\n\nBudget cut [3]\n* owner Anna") == [
        "- pumps bought [2]", "Budget cut [3]", "* owner Anna"]  # fmt: skip
    assert _note_lines("The team met.\nNothing else.") == ["The team met. Nothing else."]
    assert _note_lines("  \n") == []
