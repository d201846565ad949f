"""Metric functions against hand-computed values."""

from __future__ import annotations

import math

import pytest

from backend.services import eval_metrics as m


def test_rank_counts_distinct_documents_in_chunk_order() -> None:
    ranked = ["a", "a", "b", "a", "c", "d"]  # chunks; documents in order: a, b, c, d
    assert m.rank_of("a", ranked, 10) == 1
    assert m.rank_of("c", ranked, 10) == 3
    assert m.rank_of("d", ranked, 3) == 0  # 4th document, cut-off 3
    assert m.rank_of("z", ranked, 10) == 0


def test_ndcg_recall_mrr_for_a_single_relevant_document() -> None:
    assert m.ndcg_at(1) == 1.0
    assert m.ndcg_at(3) == pytest.approx(0.5)  # 1/log2(4)
    assert m.ndcg_at(2) == pytest.approx(1 / math.log2(3))
    assert m.ndcg_at(0) == 0.0
    assert (m.recall_at(1, 1), m.recall_at(2, 1), m.recall_at(5, 5), m.recall_at(0, 10)) == (1.0, 0.0, 1.0, 0.0)
    assert (m.mrr_at(1), m.mrr_at(4), m.mrr_at(0)) == (1.0, 0.25, 0.0)
    # three questions ranked 1, 3 and missed: nDCG@10 = (1 + 0.5 + 0) / 3
    assert m.mean([m.ndcg_at(r) for r in (1, 3, 0)]) == pytest.approx(0.5)


def test_squad_normalisation_with_yo_for_russian() -> None:
    assert m.normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert m.normalize_answer("«Ёлка», сказал он.") == "елка сказал он"
    assert m.exact_match("the eiffel tower", ["Eiffel Tower"]) == 1.0
    assert m.exact_match("Ёлка", ["елка"]) == 1.0


def test_token_f1_takes_the_best_gold() -> None:
    # prediction "red big car" vs gold "big red truck": 2 common, P = R = 2/3 -> F1 = 2/3
    assert m.token_f1("red big car", ["big red truck"]) == pytest.approx(2 / 3)
    assert m.token_f1("red big car", ["blue", "red big car"]) == 1.0
    assert m.token_f1("nothing", ["else"]) == 0.0


def test_gold_presence_is_on_word_boundaries() -> None:
    assert m.contains_gold("It runs at 42 kelvin [1].", ["42 kelvin"]) == 1.0
    assert m.contains_gold("It runs at 142 kelvin.", ["42 kelvin"]) == 0.0
    assert m.contains_gold("Столица — Квакбург.", ["Квакбург"]) == 1.0


def test_abstention_phrases_in_both_languages() -> None:
    assert m.abstains("The documents do not contain this information.")
    assert m.abstains("Документы не содержат ответа на этот вопрос.")
    assert not m.abstains("The pump runs at 9 bar [1].")


def test_a_gold_answer_in_another_word_form_counts_where_asked() -> None:
    contains_gold, contains_gold_any_form = m.contains_gold, m.contains_gold_any_form
    assert contains_gold("Ньютон потерял мяч.", ["Ньютона"]) == 0.0  # the SQuAD convention
    assert contains_gold_any_form("Ньютон потерял мяч.", ["Ньютона"]) == 1.0
    assert contains_gold_any_form("Сварку ацетилено-кислородную показали в 1901 году.", ["1901 году"]) == 1.0
    assert contains_gold_any_form("Ацетилено-кислородная сварка.", ["ацетилено-кислородной сварки"]) == 1.0
    assert contains_gold_any_form("Кальвин был студентом.", ["Гийом Фарель"]) == 0.0
    assert contains_gold_any_form("They ran two tests.", ["two"]) == 1.0


def test_an_answer_is_in_the_question_language_by_its_script_and_one_without_letters_in_any() -> None:
    assert m.same_language("Петров предложил перенести срок [4].", "Кто предложил перенести срок?")
    assert not m.same_language("Petrov proposed it [4].", "Кто предложил перенести срок?")
    assert not m.same_language("Петров [4].", "Who proposed moving the deadline?")
    assert m.same_language("17-16 [1].", "Какой был счёт?") and m.same_language("17-16 [1].", "What was the score?")
