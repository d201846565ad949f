"""Citation checking: a wrong [n] moves to the passage that supports the sentence, a missing one is added,
and nothing changes where no passage clearly supports a sentence."""

from __future__ import annotations

from backend.services.citations import abstains, check_citations, cited_numbers

PASSAGES = [
    "Котельная на Садовой улице переведена на газ в марте 2024 года. Работы вёл подрядчик Теплосеть.",
    "Насос Glimmer работает при давлении до 9 бар; его обслуживают раз в полгода.",
    "The Glimmer pump runs at a maximum pressure of 9 bar and is serviced twice a year.",
    "Совещание 15 марта: Петров предложил перенести срок сдачи проекта на май.",
]


def test_citations_are_found_in_common_forms() -> None:
    assert cited_numbers("Yes [1]. Also [2][3] and [4, 5].", 5) == {1, 2, 3, 4, 5}
    assert cited_numbers("See [2]; not [9] nor [0] nor [x].", 3) == {2}
    assert cited_numbers("no citations here", 3) == set()


def test_a_citation_to_a_passage_that_does_not_hold_the_fact_moves_to_the_one_that_does() -> None:
    checked = check_citations("Перенести срок на май предложил Петров [1].", PASSAGES)
    assert checked.text == "Перенести срок на май предложил Петров [4]."
    assert checked.cited == {4} and checked.written == {1} and checked.moved == 1 and checked.added == 0


def test_a_sentence_without_a_citation_gets_the_passage_that_supports_it() -> None:
    checked = check_citations("The Glimmer pump runs at up to 9 bar. It is serviced twice a year.", PASSAGES)
    assert checked.text == "The Glimmer pump runs at up to 9 bar [3]. It is serviced twice a year [3]."
    assert checked.cited == {3} and checked.added == 2 and checked.written == set()


def test_right_citations_and_unsupported_sentences_are_left_as_written() -> None:
    right = "Котельную перевели на газ в марте 2024 года [1]."
    assert check_citations(right, PASSAGES).text == right
    invented = "Квартальный отчёт подписал главный бухгалтер [2]."  # no passage holds it: nothing to move to
    checked = check_citations(invented, PASSAGES)
    assert checked.text == invented and checked.cited == {2} and checked.moved == 0
    abstained = "В документах нет ответа на этот вопрос."
    assert check_citations(abstained, PASSAGES).cited == set()


def test_either_of_two_passages_holding_the_fact_may_stay_cited() -> None:
    # Passages 2 and 3 both hold the pressure (in two languages); the model's choice is kept.
    kept = "Давление насоса Glimmer до 9 бар [2]."
    assert check_citations(kept, PASSAGES).text == kept


def test_abbreviations_and_numbers_do_not_split_sentences() -> None:
    passages = ["Reconstructions by Jones et al. 1998 and Briffa 2000 agree with the U.S. data.", "Unrelated text."]
    checked = check_citations("Jones et al. 1998 and Briffa 2000 support the U.S. data.", passages)
    assert checked.text == "Jones et al. 1998 and Briffa 2000 support the U.S. data [1]."


def test_a_sentence_no_passage_supports_is_counted_unsupported() -> None:
    invented = check_citations("Зарплата генерального директора — 100000 рублей [3].", PASSAGES)
    assert invented.unsupported == 1 and invented.text.endswith("[3].")  # flagged, not silently re-cited
    grounded = check_citations("Петров предложил перенести срок на май [4]. Котельную перевели на газ [1].", PASSAGES)
    assert grounded.unsupported == 0
    # Saying the documents do not hold the answer, or talking about the passages, is not an invention.
    assert check_citations("В документах нет ответа на этот вопрос.", PASSAGES).unsupported == 0
    assert check_citations("The pump runs at 9 bar [3]. This can be seen from passage [3].", PASSAGES).unsupported == 0
    assert abstains("В документах этого нет.") and abstains("The documents do not contain it.")
    assert not abstains("Петров предложил перенести срок.")


def test_a_sentence_in_another_language_than_its_passages_is_judged_by_its_numbers_and_names() -> None:
    english = ["The ship's cat sleeps in the engine room.", "The Glimmer pump runs at a maximum pressure of 9 bar."]
    # A Russian answer from English documents shares none of their words: nothing to judge it by
    assert check_citations("Корабельный кот спит в машинном отделении [1].", english).unsupported == 0
    translated = check_citations("Максимальное давление насоса Glimmer — 9 бар [2].", english)
    assert translated.unsupported == 0 and translated.cited == {2}
    # a number no passage holds is still an invention, in any language
    assert check_citations("Зарплата директора — 100000 рублей [2].", english).unsupported == 1
    assert check_citations("The director earns 100000 roubles [2].", english).unsupported == 1
    assert check_citations("The director's salary is 100000 roubles.", PASSAGES[:2]).unsupported == 1


def test_in_a_prompt_of_both_languages_a_sentence_its_own_language_lacks_is_judged_as_a_translation() -> None:
    # A Russian archive with an English report: the Russian answer translates the report, which it does not
    # cite, and the Russian minutes beside it hold only the question's words.
    mixed = [
        "Протокол совещания: обсудили расход газа в котельной и сроки ремонта.",
        "Facilities report: after the burners were replaced, gas consumption fell by 12 percent.",
    ]
    translated = check_citations("После замены горелок расход газа снизился на 12 процентов.", mixed)
    assert translated.unsupported == 0
    # nothing a translation keeps: nothing to judge it by
    assert check_citations("Горелки заменила подрядная организация.", mixed).unsupported == 0
    # a number neither language holds is still an invention
    assert check_citations("Подрядчику заплатили 15400 рублей.", mixed).unsupported == 1
    # in a prompt of one language nothing changed: a sentence no passage holds is flagged
    assert check_citations("После замены горелок расход газа снизился на 12 процентов.", mixed[:1]).unsupported == 1
    assert check_citations("Горелки заменила подрядная организация.", mixed[:1]).unsupported == 1


def test_a_sentence_that_only_points_at_a_passage_is_dropped_and_lends_its_citation() -> None:
    # Qwen2.5 appends "This answer is found in passage [n]." (in English, to Russian answers too).
    pointed = check_citations("Давление насоса Glimmer до 9 бар. This answer is found in passage [2].", PASSAGES)
    assert pointed.text == "Давление насоса Glimmer до 9 бар [2]." and pointed.cited == {2}
    # the claim's own citation stands (checked as any); the pointer's second opinion goes
    claim = check_citations("Петров предложил перенести срок на май [4]. Это указано во фрагменте [1].", PASSAGES)
    assert claim.text == "Петров предложил перенести срок на май [4]." and claim.cited == {4}
    listed = check_citations("Котельную перевели на газ в марте 2024 года.\n\nPassage [1]", PASSAGES)
    assert listed.text == "Котельную перевели на газ в марте 2024 года [1]." and listed.cited == {1}
    # a sentence with content of its own, or one saying what the passages lack, is no pointer
    kept = [
        "The pump runs at 9 bar [3]. It is described as reliable in passage [3].",
        "The pump runs at 9 bar [3]. The passages do not mention its price.",
        "Passage [3] says the pump runs at 9 bar.",
    ]
    for answer in kept:
        assert check_citations(answer, PASSAGES).text == answer


def test_a_number_in_words_is_a_number_a_translation_keeps() -> None:
    # A Russian answer from an English passage is judged by the numbers and names a translation keeps:
    # "трёх" is 3 whether the passage writes "three" or "3", and 3 is not the passage's "two".
    for passage in ("The crew of AS-205 had three astronauts.", "The crew of AS-205 had 3 astronauts."):
        assert check_citations("Экипаж состоял из трёх астронавтов [1].", [passage]).unsupported == 0
    wrong = check_citations("Экипаж состоял из трёх астронавтов [1].", ["The crew of AS-205 had two astronauts."])
    assert wrong.unsupported == 1
    declined = check_citations("Экипаж состоял из двадцати астронавтов [1].", ["The crew had twenty astronauts."])
    assert declined.unsupported == 0
