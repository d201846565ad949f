"""Ranking steps on hand-computed values: weighted score fusion, per-document cap, MMR, lexical windows."""

from __future__ import annotations

import pytest

from backend.adapters.store import ScoredChunk
from backend.services.fusion import cap_per_document, dense_side, mmr, weighted_fusion
from backend.services.retrieval import mostly_other_script
from backend.services.text_analysis import cyrillic_share, is_cyrillic, lexical_windows, share_in_other_language


def cand(cid: str, dense: float, sparse: float, doc: str = "", vector: list[float] | None = None) -> ScoredChunk:
    return ScoredChunk(cid, 0.0, {"document_id": doc or cid}, dense_score=dense, sparse_score=sparse, vector=vector)


def test_weighted_fusion_min_max_normalises_each_side_then_weights() -> None:
    # dense 0.9/0.5/0.1 -> 1/0.5/0; sparse 0/10/5 -> 0/1/0.5; at 0.5/0.5: a 0.5, b 0.75, c 0.25
    ranked = weighted_fusion([cand("a", 0.9, 0), cand("b", 0.5, 10), cand("c", 0.1, 5)], 0.5)
    assert [(c.id, c.score) for c in ranked] == [("b", 0.75), ("a", 0.5), ("c", 0.25)]


@pytest.mark.parametrize(("weight", "order"), [(1.0, ["a", "b", "c"]), (0.0, ["b", "c", "a"]), (0.2, ["b", "c", "a"])])
def test_the_weight_decides_which_side_leads(weight: float, order: list[str]) -> None:
    ranked = weighted_fusion([cand("a", 0.9, 0), cand("b", 0.5, 10), cand("c", 0.1, 5)], weight)
    assert [c.id for c in ranked] == order


def test_a_side_with_no_signal_cannot_reorder_the_other() -> None:
    # No lexical match anywhere: the dense order stands whatever the weight.
    ranked = weighted_fusion([cand("a", 0.2, 0), cand("b", 0.8, 0), cand("c", 0.5, 0)], 0.1)
    assert [c.id for c in ranked] == ["b", "c", "a"]
    assert weighted_fusion([], 0.5) == []


def test_the_sentence_nearest_the_question_takes_its_share_of_the_dense_side() -> None:
    # a: chunk 0.80, best sentence 0.70 -> 0.74 at 0.6; b: chunk 0.75, best sentence 0.90 -> 0.84; c: no sentences
    a, b, c = cand("a", 0.80, 0), cand("b", 0.75, 0), cand("c", 0.78, 0)
    a.sentence_score, b.sentence_score = 0.70, 0.90
    assert [x.id for x in weighted_fusion([a, b, c], 1.0)] == ["a", "c", "b"]  # sentences off: the chunk's cosine
    assert [x.id for x in weighted_fusion([a, b, c], 1.0, sentence_weight=0.6)] == ["b", "c", "a"]  # c stays 0.78
    assert dense_side(b, 0.6) == pytest.approx(0.84)
    assert dense_side(c, 0.6) == 0.78


def test_the_power_mean_favours_a_candidate_one_side_ranks_first_and_keeps_the_scale() -> None:
    # after min-max, (dense, sparse): a (1, 0.5), b (0.5, 0.5), c (0, 1), d (0.5, 0)
    found = [cand("a", 0.9, 5), cand("b", 0.5, 5), cand("c", 0.1, 10), cand("d", 0.5, 0)]
    # plain sum at 0.5: c ties b at 0.5; quadratic mean: c (first on the lexical side) sqrt(0.5) > b 0.5,
    # and b, scored 0.5 by both sides, stays 0.5
    again = [cand(x.id, x.dense_score or 0, x.sparse_score or 0) for x in found]
    linear = {x.id: x.score for x in weighted_fusion(again, 0.5)}
    assert linear == pytest.approx({"a": 0.75, "b": 0.5, "c": 0.5, "d": 0.25})
    squared = weighted_fusion(found, 0.5, power=2)
    assert [x.id for x in squared] == ["a", "c", "b", "d"]
    assert {x.id: x.score for x in squared} == pytest.approx(
        {"a": 0.625**0.5, "b": 0.5, "c": 0.5**0.5, "d": 0.125**0.5}
    )


def test_a_chunk_in_the_other_language_is_judged_by_its_dense_side_among_chunks_of_both() -> None:
    # A Russian question: two Russian chunks share its words, the English one (the answer) cannot.
    ru_a, ru_b, en = cand("ru_a", 0.80, 10), cand("ru_b", 0.78, 4), cand("en", 0.79, 0)
    # as before: dense 1/0/0.5, sparse 1/0.4/0 -> ru_a 1.0, ru_b 0.16, en 0.3
    assert [c.id for c in weighted_fusion([ru_a, ru_b, en], 0.6)] == ["ru_a", "en", "ru_b"]
    # the English cosine raised by 0.04 (0.83): dense ru_a 2/5, ru_b 0, en 1; its lexical side = its dense 1
    ranked = weighted_fusion([ru_a, ru_b, en], 0.6, [False, False, True], 0.04)
    assert [(c.id, round(c.score, 3)) for c in ranked] == [("en", 1.0), ("ru_a", 0.64), ("ru_b", 0.16)]
    # without the offset: dense 1/0/0.5, the English lexical side 0.5 (its dense); a shared name or number
    # (lexical 12, the highest: 1) still counts where its lexical side is the higher one
    flags = [False, False, True]
    plain = weighted_fusion([cand("ru_a", 0.80, 10), cand("ru_b", 0.78, 4), cand("en", 0.79, 0)], 0.6, flags)
    named = weighted_fusion([cand("ru_a", 0.80, 10), cand("ru_b", 0.78, 4), cand("en", 0.79, 12)], 0.6, flags)
    assert {c.id: round(c.score, 3) for c in plain}["en"] == 0.5
    assert {c.id: round(c.score, 3) for c in named}["en"] == 0.7
    # all candidates in the other language (an English archive asked in Russian): compared among themselves
    alone = [cand("x", 0.80, 10), cand("y", 0.78, 0)]
    assert [round(c.score, 3) for c in weighted_fusion(alone, 0.6, [True, True], 0.04)] == [1.0, 0.0]


def test_the_fusion_reads_a_chunks_script_by_the_majority_of_its_letters() -> None:
    def stored(text: str | None) -> ScoredChunk:
        return ScoredChunk("c", 0.0, {} if text is None else {"cyrillic_share": round(cyrillic_share(text), 3)})

    russian_naming_english = "Протокол: Apple и Google подписали меморандум."  # over a tenth of Latin letters
    assert mostly_other_script(stored(russian_naming_english), question_cyrillic=False)
    assert not share_in_other_language(cyrillic_share(russian_naming_english), question_cyrillic=False)  # the floor's
    assert mostly_other_script(stored("The pump runs at 9 bar."), question_cyrillic=True)
    assert not mostly_other_script(stored("Насос держит 9 бар."), question_cyrillic=True)
    assert not mostly_other_script(stored("2024-05-01 12:00"), question_cyrillic=True)  # no letters: neither
    assert not mostly_other_script(stored(None), question_cyrillic=True)  # indexed before the script was stored


def test_per_document_cap_keeps_the_best_chunks_of_each_document() -> None:
    ranked = [
        cand("1", 0, 0, "x"),
        cand("2", 0, 0, "x"),
        cand("3", 0, 0, "y"),
        cand("4", 0, 0, "x"),
        cand("5", 0, 0, "y"),
    ]
    assert [c.id for c in cap_per_document(ranked, 1)] == ["1", "3"]
    assert [c.id for c in cap_per_document(ranked, 2)] == ["1", "2", "3", "5"]
    assert cap_per_document(ranked, 0) == ranked


def test_mmr_skips_a_near_duplicate_for_a_different_relevant_chunk() -> None:
    a = ScoredChunk("a", 1.0, {}, vector=[1.0, 0.0])
    a_copy = ScoredChunk("a2", 0.95, {}, vector=[0.99, 0.05])
    other = ScoredChunk("b", 0.8, {}, vector=[0.0, 1.0])
    low = ScoredChunk("c", 0.0, {}, vector=[0.7, 0.7])
    # relevance (min-max): a 1, a2 0.95, b 0.8, c 0. At lambda 0.5, second pick: a2 0.475 - 0.5*0.999 < b 0.4 - 0
    assert [c.id for c in mmr([a, a_copy, other, low], 2, 0.5)] == ["a", "b"]
    assert [c.id for c in mmr([a, a_copy, other, low], 3, 1.0)] == ["a", "a2", "b"]  # 1: relevance only


def test_lexical_windows_grow_around_each_chunk_to_the_word_budget() -> None:
    texts = ["a1 a2", "b1 b2", "c1 c2", "d1 d2"]
    assert lexical_windows(texts, 2) == texts  # each chunk already fills the budget
    assert lexical_windows(texts, 4) == ["a1 a2 b1 b2", "b1 b2 c1 c2", "c1 c2 d1 d2", "c1 c2 d1 d2"]
    assert lexical_windows(texts, 6) == ["a1 a2 b1 b2 c1 c2", "a1 a2 b1 b2 c1 c2", "b1 b2 c1 c2 d1 d2",
                                         "b1 b2 c1 c2 d1 d2"]  # fmt: skip
    assert lexical_windows(texts, 100) == [" ".join(texts)] * 4  # a short document: all of it
    assert lexical_windows([], 10) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Какое давление у насоса?", True), ("What pressure?", False), ("Когда выпустили iPhone 15 Pro Max?", True),
     ("Deploy the ML pipeline на сервере staging-prod", False), ("42", False)],
)  # fmt: skip
def test_a_question_is_cyrillic_when_most_letters_are(text: str, expected: bool) -> None:
    assert is_cyrillic(text) is expected
