"""Separate a reasoning model's thinking from its answer, in a stream of text deltas.

Qwen3, DeepSeek-R1 and gpt-oss style models write `<think>...</think>` before the answer when the
server does not split it out (vLLM without --reasoning-parser, Ollama without "think"). Tags may
arrive split across deltas, so text that could be the start of a tag is held back until it is known.
"""

from __future__ import annotations

from typing import Literal

Piece = tuple[Literal["reasoning", "answer"], str]

OPEN, CLOSE = "<think>", "</think>"


class ThinkSplitter:
    def __init__(self) -> None:
        self._state: Literal["start", "think", "gap", "answer"] = "start"
        self._buf = ""

    def feed(self, text: str) -> list[Piece]:
        self._buf += text
        out: list[Piece] = []
        while self._buf:
            if self._state == "start":
                head = self._buf.lstrip()
                if head.startswith(OPEN):
                    self._state, self._buf = "think", head[len(OPEN) :]
                elif OPEN.startswith(head):
                    break  # "", "<", "<th" ...: not decided yet
                else:
                    self._state = "answer"
            elif self._state == "think":
                end = self._buf.find(CLOSE)
                if end >= 0:
                    if end:
                        out.append(("reasoning", self._buf[:end]))
                    self._state, self._buf = "gap", self._buf[end + len(CLOSE) :]
                    continue
                keep = _partial_suffix(self._buf, CLOSE)
                if len(self._buf) > keep:
                    out.append(("reasoning", self._buf[: len(self._buf) - keep]))
                    self._buf = self._buf[len(self._buf) - keep :]
                break
            elif self._state == "gap":  # the blank lines between thinking and answer
                self._buf = self._buf.lstrip()
                if self._buf:
                    self._state = "answer"
            else:
                out.append(("answer", self._buf))
                self._buf = ""
        return out

    def flush(self) -> list[Piece]:
        """End of stream: whatever is held back is what it looked like (an unclosed think is reasoning)."""
        rest, self._buf = self._buf, ""
        if not rest:
            return []
        return [("reasoning" if self._state == "think" else "answer", rest)]


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is the start of `tag`."""
    for n in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


def split_final(answer: str) -> tuple[str, str]:
    """(reasoning, answer) of a finished text whose template opened <think> in the prompt (R1 style):
    only the closing tag appears, and everything before it was thinking."""
    if CLOSE in answer and OPEN not in answer:
        thinking, _, rest = answer.partition(CLOSE)
        return thinking.strip(), rest.strip()
    return "", answer
