"""Sentences that state a decision or an action item, found by the words such sentences are written with.

Minutes and mail state decisions in set phrases: Russian protocols write «Решили:», «Постановили:»,
«Согласовали», «Утвердили», «Договорились»; English ones "Decided", "Agreed", "Approved", "Resolved".
Action items name who is to do what by when («Поручить», «Ответственный», «до 15 марта», "will ... by",
"action item"). A small local model asked to write out the decisions of a few passages misses some of
them (docs/evaluation.md, summaries), so `decisions` and `action_items` summaries take these sentences
as notes beside the model's, and a sentence the model's summary then leaves out is added to it word for
word with its citation. Other styles have no such cue and rely on the model alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from backend.services.text_analysis import SENTENCE_END, terms

_MONTHS_RU = r"(января|февраля|марта|апреля|мая|июня|июля|августа|сентября|октября|ноября|декабря)"
_MONTHS_EN = r"(January|February|March|April|May|June|July|August|September|October|November|December)"
_CUES = {
    "decisions": re.compile(
        r"\b(решил[аи]?|решено|решение|постановил[аи]?|постановлено|согласовал[аи]?|согласовано|утвердил[аи]?"
        r"|утверждено|утверждён|договорил(ись|ась|ся)|приняли решение|принято решение"
        r"|decided|decision|agreed|approved|resolved)\b",
        re.IGNORECASE,
    ),
    "action_items": re.compile(
        r"\b(поручи(ть|ли|л|ла)?|поручено|ответственн(ый|ая|ые|ым|ой)|должен|должна|должны|обязан[аы]?"
        rf"|к сроку|в срок до|до \d{{1,2}} {_MONTHS_RU}|к \d{{1,2}} {_MONTHS_RU}|action items?|to-?do|owner"
        rf"|responsible|assigned|will \w+(?: \w+){{0,8}} by|due (by|on)|by {_MONTHS_EN} \d{{1,2}}|deadline)\b",
        re.IGNORECASE,
    ),
}
MAX_SENTENCE = 400  # characters: a longer "sentence" is a paragraph the splitter could not cut
COVERED = 0.6  # share of a cue sentence's words the summary must hold for the sentence to count as in it


@dataclass(frozen=True)
class CueSentence:
    number: int  # the chunk's [n] in the selection
    text: str

    def note(self) -> str:
        return f"- {self.text.rstrip()} [{self.number}]"


def cue_sentences(texts: list[str], style: str, first: int = 1) -> list[CueSentence]:
    """The sentences of the chunks (numbered from `first`) that carry the style's cue, in order, each once."""
    cue = _CUES.get(style)
    if cue is None:
        return []
    out: list[CueSentence] = []
    seen: set[str] = set()
    for i, text in enumerate(texts):
        for sentence in SENTENCE_END.split(text):
            sentence = " ".join(sentence.split()).lstrip("-*• ")
            if not sentence or len(sentence) > MAX_SENTENCE or not cue.search(sentence):
                continue
            key = sentence.casefold()
            if key not in seen:
                seen.add(key)
                out.append(CueSentence(first + i, sentence))
    return out


def missing_from(summary: str, sentences: list[CueSentence]) -> list[CueSentence]:
    """The cue sentences whose words the summary does not (mostly) hold: the ones the model left out."""
    have = set(terms(summary))
    out = []
    for s in sentences:
        words = set(terms(s.text)) - _CUE_TERMS
        if words and len(words & have) / len(words) < COVERED:
            out.append(s)
    return out


# The cue words themselves say nothing about which decision a sentence is.
_CUE_TERMS = frozenset(
    terms(
        "решили решено решение постановили согласовали утвердили договорились приняли принято поручить "
        "ответственный должен должны decided decision agreed approved resolved action item responsible owner"
    )
)
