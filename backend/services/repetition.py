"""A model caught in a loop: the same phrase written again and again until the token limit.

Greedy decoding without a repetition penalty (the default for the local model, docs/evaluation.md,
"Repetition penalty") sometimes falls into one: "Вот ответ из первого контекстного документа:" forty
times over, 512 tokens and 20 s of a 2-core machine's time for nothing (0-4 answers in 153 on XQuAD).
The answer stream watches its own tail and stops there, keeping the phrase once.
"""

from __future__ import annotations

import re

REPEATS = 3  # a phrase written this many times running is a loop, not an answer
_SHORTEST, _LONGEST = 12, 240  # the lengths of phrase looked for, in characters
_WORD = re.compile(r"\w{2,}")


def loop_end(text: str) -> int | None:
    """When `text` ends with one phrase written REPEATS times running, where its first writing ends (the text
    to keep); else None. A phrase must hold two words: table rules and dot leaders repeat by design."""
    n = len(text)
    for size in range(_SHORTEST, min(_LONGEST, n // REPEATS) + 1):
        phrase = text[n - size :]
        if all(text[n - k * size : n - (k - 1) * size] == phrase for k in range(2, REPEATS + 1)):
            if len(_WORD.findall(phrase)) < 2:
                continue
            start = n - REPEATS * size  # the stream may stop mid-phrase: go back to where the loop began
            while start > 0 and text[start - 1] == text[start - 1 + size]:
                start -= 1
            return start + size
    return None
