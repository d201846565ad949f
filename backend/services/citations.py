"""Citations checked against the passages they point to: a wrong [n] is moved, a missing one added.

Small local models write the right fact with the wrong passage number about a third of the time (Qwen2.5
1.5B on XQuAD dev, right answers only: 66-70% of its own citations hold the answer, 97-99% after this
check; docs/evaluation.md). Each sentence of the answer is compared with every passage by the words
they share, weighted by how rare each word is among the passages (so words of the question, found
everywhere, count little). A citation to a passage that
supports the sentence clearly less than the best one is moved to the best one; a sentence without a
citation gets one when a single passage clearly supports it. Where no passage clearly supports a
sentence (a paraphrase, a translation, an invention), its citations are left as the model wrote them,
and a sentence that no passage even weakly supports is counted as unsupported: the answer says so, and
the page warns its reader (a small model sometimes invents a figure rather than say it does not know).
A sentence in another language than its passages (a Russian answer from English documents), or one that
cites a passage in the other language, is judged by the words a translation keeps, numbers and names
in the passages' script ("Glimmer", "9"; a number written as a word counts as its digits, "трёх" as
"three" and "3"): one that has none is not counted as unsupported. So is a
sentence that no passage of its own language supports in a prompt that holds both (a Russian archive
with an English report: the Russian minutes beside it hold the question's words, not the translation).
A sentence that only says where the answer is ("This answer is found in passage [3].", which Qwen2.5
appends in English to a Russian answer too) is dropped: its citation goes to the sentence before it
when that one cites nothing, and otherwise the claim's own (checked) citation stands.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

from backend.services.text_analysis import is_cyrillic, terms

# Phrases with which an answer says the documents do not hold the answer (the prompt asks for that).
_ABSTAIN = re.compile(
    r"(do(es)? not (contain|mention|say|include|provide)|no (information|mention)|not (found|mentioned|stated) in"
    r"|cannot (find|answer)|не (содерж|упомина|указ|говорит|сказано)|нет (информации|данных|сведений|ответа)"
    r"|в документах (этого |об этом )?нет)",
    re.IGNORECASE,
)
CITATION = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
# Where a sentence ends: terminal punctuation (with any citations right after it) before a capital
# letter or the end, or a line end. "U.S.", "et al. 1998" and "соавт. и" do not end one.
_END = re.compile(r"[.!?…]+(?:\s*\[\d{1,3}(?:\s*[,;]\s*\d{1,3})*\])*(?=\s+[\"«(]?[A-ZА-ЯЁ]|\s*$)|\n")
_TRAILING_PUNCT = re.compile(r"[.!?…:;]+$")

STRONG = 0.5  # share of a sentence's (rarity-weighted) words a passage must hold to be cited by us
WEAK = 0.35  # below this share in every passage, a sentence is unsupported
MARGIN = 0.15  # a written citation this close to the best passage's support is kept
MIN_TERMS = 2  # shorter sentences ("Да.", "Two [1].") carry too little to judge
# How a model names the passages, and other words with which it talks about them rather than their content.
_PASSAGE_NAMES = "passage passages source sources document documents фрагмент фрагменты источник документ документы"
_META = frozenset(terms(f"{_PASSAGE_NAMES} see seen mention mentioned according согласно указано упоминается"))

# A sentence about where the answer is, not what it is: it names the passages and says nothing else.
_PASSAGE_NOUNS = frozenset(
    terms(f"{_PASSAGE_NAMES} context contexts excerpt excerpts text отрывок отрывке отрывках контекст тексте")
)
_REPORTING = frozenset(
    t
    for t in terms(
        "answer answers information info found find stated state states supported support supports given "
        "provided contained contains described both first second third fourth fifth last above "
        "ответ ответа информация информации найден найдено найдена содержится содержатся указан "
        "приведено приведен описано сказано говорится оба обоих первом втором третьем четвертом пятом последнем"
    )
    if not t.startswith("~")
)
_NEGATION = re.compile(r"\b(not|no|never|n't|не|нет|ни)\b", re.IGNORECASE)

# Cardinal numbers written as words, in the forms Russian declines them to: "за три игры" and "в течение
# трех игр" state one fact, "3 astronauts" and "three astronauts" too, but their stems differ. One, "один",
# is left out (a pronoun as often as a number), and so are forms that are also common words ("семью":
# a family; "сорока": a magpie).
_NUMBER_FORMS = """
2 два две двух двум двумя two
3 три трех трёх трем трём тремя three
4 четыре четырех четырёх четырем четырём четырьмя four
5 пять пяти пятью five
6 шесть шести шестью six
7 семь семи seven
8 восемь восьми восемью восьмью eight
9 девять девяти девятью nine
10 десять десяти десятью ten
11 одиннадцать одиннадцати одиннадцатью eleven
12 двенадцать двенадцати двенадцатью twelve
13 тринадцать тринадцати тринадцатью thirteen
14 четырнадцать четырнадцати четырнадцатью fourteen
15 пятнадцать пятнадцати пятнадцатью fifteen
16 шестнадцать шестнадцати шестнадцатью sixteen
17 семнадцать семнадцати семнадцатью seventeen
18 восемнадцать восемнадцати восемнадцатью eighteen
19 девятнадцать девятнадцати девятнадцатью nineteen
20 двадцать двадцати двадцатью twenty
30 тридцать тридцати тридцатью thirty
40 сорок forty
50 пятьдесят пятидесяти пятьюдесятью fifty
60 шестьдесят шестидесяти шестьюдесятью sixty
70 семьдесят семидесяти семьюдесятью seventy
80 восемьдесят восьмидесяти восемьюдесятью eighty
90 девяносто девяноста ninety
100 сто
"""
_NUMBER_WORDS = {word: int(n) for n, *words in map(str.split, _NUMBER_FORMS.strip().splitlines()) for word in words}
_WORD = re.compile(r"\w+")


def _digits_for_number_words(text: str) -> str:
    """A number reads the same in words and in digits, in any case form: "в течение трех игр" -> "... 3 игр"."""
    return _WORD.sub(lambda w: str(_NUMBER_WORDS.get(w.group().lower(), w.group())), text)


@dataclass
class CheckedAnswer:
    text: str
    cited: set[int]  # passage numbers the checked answer cites
    written: set[int] = field(default_factory=set)  # valid numbers the model wrote
    moved: int = 0  # sentences whose citation was moved to a better-supporting passage
    added: int = 0  # sentences that got a citation they lacked
    unsupported: int = 0  # sentences no passage supports even weakly

    def describe(self) -> dict[str, object]:
        return {"written": sorted(self.written), "moved": self.moved, "added": self.added,
                "unsupported": self.unsupported}  # fmt: skip


def abstains(answer: str) -> bool:
    """Does the answer say that the documents do not hold the answer?"""
    return bool(_ABSTAIN.search(answer))


def cited_numbers(answer: str, n_sources: int) -> set[int]:
    found: set[int] = set()
    for group in CITATION.findall(answer):
        for num in re.split(r"\s*[,;]\s*", group):
            if num.isdigit() and 1 <= int(num) <= n_sources:
                found.add(int(num))
    return found


def _support(words: Counter[str], passages: list[set[str]], idf: dict[str, float], default: float) -> list[float]:
    """Each passage's share of the sentence's words, each word weighted by its rarity among the passages."""
    total = sum(idf.get(t, default) for t in words)
    if not total:
        return [0.0] * len(passages)
    return [sum(idf[t] for t in words if t in p) / total for p in passages]


def _weak_across(
    words: Counter[str], script: bool, passages: list[set[str]], idf: dict[str, float], default: float
) -> bool:
    """Across languages only what a translation keeps can be looked for: names and numbers. Whether the
    sentence has some and no passage holds them."""
    kept = Counter({t: k for t, k in words.items() if is_cyrillic(t) != script or any(c.isdigit() for c in t)})
    return bool(kept) and max(_support(kept, passages, idf, default)) < WEAK


def check_citations(answer: str, passages: list[str]) -> CheckedAnswer:
    n = len(passages)
    written = cited_numbers(answer, n)
    if not n or not answer.strip():
        return CheckedAnswer(answer, written, written)
    bags = [set(terms(_digits_for_number_words(p))) for p in passages]
    scripts = [is_cyrillic(p) for p in passages]
    mixed = len(set(scripts)) > 1
    df = Counter(t for bag in bags for t in bag)
    idf = {t: math.log(1 + n / c) for t, c in df.items()}
    unseen = math.log(1 + n)  # a word no passage holds weighs like the rarest one
    out: list[str] = []
    cited: set[int] = set()
    moved = added = unsupported = 0
    for sentence in _without_pointers(_sentences(answer), n):
        own = cited_numbers(sentence, n)
        words = Counter(t for t in terms(_digits_for_number_words(CITATION.sub(" ", sentence))) if t not in _META)
        if len(words) < MIN_TERMS:
            out.append(sentence)
            cited |= own
            continue
        support = _support(words, bags, idf, unseen)
        best = max(range(n), key=lambda i: (support[i], -i))  # ties: the better-ranked passage
        clear = support[best] >= STRONG
        script = is_cyrillic(sentence)
        if script in scripts and all(scripts[c - 1] == script for c in own):
            # In a prompt of both languages, a sentence none of its own language's passages holds may be a
            # translation of one in the other: it is judged as one then.
            weak = support[best] < WEAK and (not mixed or _weak_across(words, script, bags, idf, unseen))
        else:
            weak = _weak_across(words, script, bags, idf, unseen)
        unsupported += weak and not abstains(sentence)
        if own:
            keep = {c for c in own if support[c - 1] >= support[best] - MARGIN}
            if not keep and clear:
                sentence = _replace_citations(sentence, best + 1)
                own = {best + 1}
                moved += 1
        elif clear:
            sentence = _add_citation(sentence, best + 1)
            own = {best + 1}
            added += 1
        cited |= own
        out.append(sentence)
    return CheckedAnswer("".join(out), cited, written, moved, added, unsupported)


def _points_at_passages(sentence: str) -> bool:
    """Is the sentence only a pointer to the passages ("This is stated in passage [2].")?"""
    words = {t for t in terms(CITATION.sub(" ", sentence)) if not t.startswith("~")}
    if not words & _PASSAGE_NOUNS or _NEGATION.search(sentence) or abstains(sentence):
        return False
    return words <= _PASSAGE_NOUNS | _REPORTING | _META


def _without_pointers(sentences: list[str], n: int) -> list[str]:
    """The sentences less those that only point at passages; a pointer's citation moves to the sentence
    before it when that one cites nothing (the model's way of citing it)."""
    out: list[str] = []
    for sentence in sentences:
        if not out or not _points_at_passages(sentence):
            out.append(sentence)
            continue
        numbers = sorted(cited_numbers(sentence, n))
        last = next((i for i in range(len(out) - 1, -1, -1) if out[i].strip()), None)
        if numbers and last is not None and not cited_numbers(out[last], n):
            out[last] = _add_citations(out[last], numbers)
    while len(out) > 1 and not out[-1].strip():  # the line breaks before a dropped last pointer
        out.pop()
    return out


def _sentences(text: str) -> list[str]:
    out, start = [], 0
    for end in _END.finditer(text):
        out.append(text[start : end.end()])
        start = end.end()
    if start < len(text):
        out.append(text[start:])
    return out


def _replace_citations(sentence: str, number: int) -> str:
    first = True

    def swap(_: re.Match[str]) -> str:
        nonlocal first
        text, first = (f"[{number}]" if first else ""), False
        return text

    return re.sub(r" +(?=[.!?…]|$)", "", CITATION.sub(swap, sentence))


def _add_citation(sentence: str, number: int) -> str:
    return _add_citations(sentence, [number])


def _add_citations(sentence: str, numbers: list[int]) -> str:
    marks = "".join(f"[{number}]" for number in numbers)
    body = sentence.rstrip()
    tail = sentence[len(body) :]
    punct = _TRAILING_PUNCT.search(body)
    if punct:
        return f"{body[: punct.start()].rstrip()} {marks}{punct.group(0)}{tail}"
    return f"{body} {marks}{tail}"
