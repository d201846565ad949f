"""Sentences stating a decision or an action item, found by their set phrases, and the ones a summary
left out."""

from __future__ import annotations

from backend.services.summary_cues import CueSentence, cue_sentences, missing_from

MINUTES = [
    "Обсудили ход работ. Решили: насосы закупаем у «Гелиоса». Сверили сроки поставок.",
    "Поручить Петрову подготовить отчёт до 15 марта. Утвердили бюджет 2 450 000 рублей.",
    "Discussed the schedule. Agreed: Lawson runs the installation. Walker will send the plan by May 3.",
]


def test_decisions_are_the_sentences_with_their_set_words_numbered_by_chunk() -> None:
    found = cue_sentences(MINUTES, "decisions", first=4)
    assert found == [
        CueSentence(4, "Решили: насосы закупаем у «Гелиоса»."),
        CueSentence(5, "Утвердили бюджет 2 450 000 рублей."),
        CueSentence(6, "Agreed: Lawson runs the installation."),
    ]
    assert found[0].note() == "- Решили: насосы закупаем у «Гелиоса». [4]"


def test_action_items_name_who_does_what_by_when() -> None:
    assert [c.text for c in cue_sentences(MINUTES, "action_items")] == [
        "Поручить Петрову подготовить отчёт до 15 марта.", "Walker will send the plan by May 3."]  # fmt: skip


def test_other_styles_have_no_cues() -> None:
    assert cue_sentences(MINUTES, "brief") == [] and cue_sentences(MINUTES, "detailed") == []


def test_a_decision_counts_as_in_the_summary_in_another_word_form_not_when_only_its_cue_word_is() -> None:
    decisions = cue_sentences(MINUTES, "decisions")
    summary = "- Насосы закупаются у Гелиоса [1]\n- Решили утвердить бюджет [2]"
    assert [c.text for c in missing_from(summary, decisions)] == [
        "Утвердили бюджет 2 450 000 рублей.", "Agreed: Lawson runs the installation."]  # fmt: skip
    assert missing_from(summary + "\n- Budget 2 450 000; Lawson runs the installation", decisions) == []
