"""Split parsed sections into chunks measured in the embedder's own tokens, with overlap.

Chunks never cross a section (heading or page) boundary; inside a section they are packed greedily from
whole sentences, keeping paragraph breaks; a sentence longer than a chunk is cut at token boundaries.
A run of over MAX_RUN_CHARS characters of base64 / hex / URL-safe alphabet without a space (an inline
attachment, a key, a data URI) is no text anyone asks about, yet a subword tokenizer turns it into
thousands of chunks to embed (1.2 MB: 5 minutes on 2 cores): it is replaced by a marker that says how
much was left out, where the reader of the chunk sees it. Long runs of letters (CJK text has no spaces)
are kept and cut at token boundaries like any long sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backend.services.parsing import Section

# (text) -> character spans of its tokens
Tokenize = Callable[[str], list[tuple[int, int]]]

_SENTENCE_END = re.compile(r"(?<=[.!?…;:])\s+|\n")
MAX_RUN_CHARS = 1000
_ENCODED_RUN = re.compile(rf"[A-Za-z0-9+/=_%.-]{{{MAX_RUN_CHARS + 1},}}")
# Normal text runs 3-6 characters per token. A WordPiece tokenizer turns a run without spaces longer
# than 100 characters (base64 in mail, minified code) into ONE unknown token, so token counts alone would
# let a megabyte into one chunk: pieces with more characters per token than this are cut by characters.
MAX_CHARS_PER_TOKEN = 12


@dataclass
class Chunk:
    index: int
    text: str
    heading: str | None
    page: int | None
    tokens: int
    meta: dict[str, Any] | None = None  # payload fields beyond the text's place (conversations: who, when)


@dataclass
class _Unit:
    text: str
    tokens: int
    paragraph_start: bool


def leave_out_encoded_runs(text: str) -> str:
    """`text` with every run of encoded data over MAX_RUN_CHARS characters replaced by a marker."""
    return _ENCODED_RUN.sub(lambda m: f"[{len(m.group(0)):,} characters of encoded data left out]", text)


def chunk_sections(sections: list[Section], tokenize: Tokenize, *, max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for section in sections:
        units = _units(leave_out_encoded_runs(section.text), tokenize, max_tokens)
        for text, tokens in _pack(units, max_tokens, overlap_tokens):
            chunks.append(Chunk(len(chunks), text, section.heading, section.page, tokens))
    return chunks


def _units(text: str, tokenize: Tokenize, max_tokens: int) -> list[_Unit]:
    """Sentences (with their token counts), long ones cut into token windows."""
    units: list[_Unit] = []
    for paragraph in re.split(r"\n\s*\n", text):
        first = True
        for sentence in _SENTENCE_END.split(paragraph):
            sentence = " ".join(sentence.split())
            if not sentence:
                continue
            spans = tokenize(sentence)
            if not spans:
                continue
            for start in range(0, len(spans), max_tokens):
                window = spans[start : start + max_tokens]
                piece = sentence[window[0][0] : window[-1][1]] if len(spans) > max_tokens else sentence
                units.extend(_bounded(piece, len(window), first and start == 0, tokenize, max_tokens))
            first = False
    return units


def _bounded(piece: str, tokens: int, first: bool, tokenize: Tokenize, max_tokens: int) -> list[_Unit]:
    """`piece` as one unit, or cut into character windows when its tokens swallow too many characters."""
    limit = max_tokens * MAX_CHARS_PER_TOKEN
    if len(piece) <= limit:
        return [_Unit(piece, tokens, first)]
    size = max_tokens * 4  # about a chunk of ordinary text
    pieces = [piece[i : i + size] for i in range(0, len(piece), size)]
    # Such a piece counts at least its characters / MAX_CHARS_PER_TOKEN, so chunks stay a bounded length.
    weight = [max(len(tokenize(p)), -(-len(p) // MAX_CHARS_PER_TOKEN)) for p in pieces]
    return [_Unit(p, min(max_tokens, w), first and i == 0) for i, (p, w) in enumerate(zip(pieces, weight, strict=True))]


def _pack(units: list[_Unit], max_tokens: int, overlap_tokens: int) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    current: list[_Unit] = []
    size = 0
    fresh = 0  # units in `current` not already emitted in the previous chunk
    for unit in units:
        if current and size + unit.tokens > max_tokens:
            out.append((_join(current), size))
            # Carry trailing sentences into the next chunk, as long as they fit the overlap budget.
            carried: list[_Unit] = []
            carried_size = 0
            for prev in reversed(current):
                if carried_size + prev.tokens > overlap_tokens or carried_size + prev.tokens + unit.tokens > max_tokens:
                    break
                carried.insert(0, prev)
                carried_size += prev.tokens
            current, size, fresh = carried, carried_size, 0
        current.append(unit)
        size += unit.tokens
        fresh += 1
    if current and fresh:
        out.append((_join(current), size))
    return out


def _join(units: list[_Unit]) -> str:
    parts: list[str] = []
    for i, unit in enumerate(units):
        if i:
            parts.append("\n\n" if unit.paragraph_start else " ")
        parts.append(unit.text)
    return "".join(parts)
