"""Lexical analysis: Russian and English stems, stop words, ё, mixed text, stable hashed ids."""

from __future__ import annotations

import pytest

from backend.services.text_analysis import document_vector, query_vector, term_id, terms


def test_russian_inflections_meet_at_one_stem() -> None:
    assert terms("совещание") == terms("совещания") == terms("совещанием")
    assert terms("поставки насосов") == terms("поставка насоса")


def test_english_inflections_meet_at_one_stem() -> None:
    assert terms("deliveries pumps") == terms("delivery pump")


def test_yo_stop_words_case_and_digits() -> None:
    assert terms("Ёлка") == terms("елка")
    assert terms("The pump is at 9 bar and в насосе 9 бар") == ["pump", "9", "bar", "насос", "9", "бар", "~нас"]


def test_mixed_text_stems_each_word_by_its_script() -> None:
    assert sorted(terms("отчёт по deliveries")) == sorted(terms("отчет") + terms("delivery"))


def test_cyrillic_stems_add_a_prefix_term_that_joins_forms_snowball_leaves_apart() -> None:
    # Snowball gives "пита" and "питан" here; the shared prefix term lets the lexical side match them.
    assert terms("питание") != terms("питать")
    assert "~пит" in terms("питание") and "~пит" in terms("питать")
    assert not any(t.startswith("~") for t in terms("feeding power supply"))  # Latin words: stems only


def test_ids_are_stable_and_31_bit() -> None:
    assert term_id("насос") == term_id("насос") and 0 <= term_id("насос") < 2**31
    assert term_id("pump") != term_id("насос")


def test_bm25_weights_saturate_and_queries_are_binary() -> None:
    ids, values = document_vector("pump pump pump pump valve")
    weights = dict(zip(ids, values, strict=True))
    pump, valve = weights[term_id("pump")], weights[term_id("valv")]
    assert pump > valve and pump < 4 * valve  # more is better, with diminishing returns
    q_ids, q_values = query_vector("pumps, PUMP and the valves")
    assert sorted(q_ids) == sorted({term_id("pump"), term_id("valv")}) and q_values == [1.0, 1.0]


@pytest.mark.parametrize("text", ["", "   ", "the and of", "и в на"])
def test_text_without_terms_gives_an_empty_vector(text: str) -> None:
    assert document_vector(text) == ([], []) and query_vector(text) == ([], [])
