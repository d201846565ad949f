"""Conversations (the OpenAI-compatible chat endpoint): the last user message, read with the turns before
it, becomes one standalone question, which is then retrieved for and answered like POST /ask.

A follow-up such as "and how often is it serviced?" retrieves nothing useful on its own: the LLM first
rewrites it into "How often is the Zephyr pump serviced?". When the rewrite fails (no LLM answers, or
it returns nothing usable) the question is searched together with the previous user question, and
the response says so.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from backend.adapters.llm import LLMError
from backend.adapters.llm.fallback import AllBackendsFailedError
from backend.adapters.llm.models import ModelRouter
from backend.services.reasoning import ThinkSplitter, split_final
from backend.services.text_analysis import is_cyrillic

log = logging.getLogger(__name__)

REWRITE_PROMPT = (
    "You rewrite the last question of a conversation so that it can be understood without the conversation. "
    "Replace pronouns and vague references (it, that, this one, he, там, его, это) with what they refer to. "
    "Keep the language of the question. Do not answer it. Reply with the rewritten question only."
)
_WORD = re.compile(r"\w+")
# Two worked examples: small models copy the pattern instead of answering the question.
_EXAMPLES = [
    ("User: Who wrote the report on the boiler room?\nAssistant: Anna Smirnova wrote it [1].",
     "When did she send it?", "When did Anna Smirnova send the report on the boiler room?"),
    ("User: Какой подрядчик ремонтирует насосную станцию?\nAssistant: Ремонт ведёт ООО «Гидромонтаж» [2].",
     "А сколько стоит его работа?", "Сколько стоит работа ООО «Гидромонтаж» по ремонту насосной станции?"),
]  # fmt: skip
# How much of the earlier conversation the rewrite sees: the latest turns, each assistant reply shortened.
HISTORY_CHARS = 6000
ASSISTANT_TURN_CHARS = 600


@dataclass
class Turn:
    role: str  # "user", "assistant" or "system"
    content: str


@dataclass
class StandaloneQuestion:
    text: str  # what is retrieved for and answered
    original: str  # the last user message as sent
    rewritten: bool
    method: str  # "as_is": no earlier turns; "llm": rewritten by the LLM; "joined": rewrite failed
    rewrite_ms: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {"question": self.text, "original": self.original, "rewritten": self.rewritten,
                "method": self.method, "rewrite_ms": self.rewrite_ms}  # fmt: skip


class ConversationService:
    def __init__(self, llm: ModelRouter, *, enabled: bool = True, max_tokens: int = 256) -> None:
        self.llm = llm
        self.enabled = enabled
        self.max_tokens = max_tokens

    async def standalone_question(self, turns: list[Turn], model: str | None = None) -> StandaloneQuestion:
        """`turns` ends with the user's question (the API checks that); `model` rewrites it (the one that
        answers next: on a shared GPU no switch comes between)."""
        question = turns[-1].content.strip()
        earlier = [t for t in turns[:-1] if t.role in ("user", "assistant") and t.content.strip()]
        if not earlier:
            return StandaloneQuestion(question, question, False, "as_is")
        if not self.enabled:
            return self._joined(question, earlier, None)
        started = time.perf_counter()
        try:
            text = await self._complete(_rewrite_messages(question, earlier), model)
        except (AllBackendsFailedError, LLMError) as exc:
            log.warning("question rewrite failed, searching with the previous question joined: %s", exc)
            return self._joined(question, earlier, (time.perf_counter() - started) * 1000)
        elapsed = (time.perf_counter() - started) * 1000
        cleaned = _clean(text)
        if not plausible_rewrite(question, cleaned):
            log.warning("question rewrite unusable (%r), searching with the previous question joined", cleaned[:200])
            return self._joined(question, earlier, elapsed)
        return StandaloneQuestion(cleaned, question, cleaned != question, "llm", round(elapsed, 1))

    @staticmethod
    def _joined(question: str, earlier: list[Turn], elapsed: float | None) -> StandaloneQuestion:
        previous = next((t.content.strip() for t in reversed(earlier) if t.role == "user"), "")
        text = f"{previous} {question}".strip()
        return StandaloneQuestion(text, question, text != question, "joined",
                                  round(elapsed, 1) if elapsed is not None else None)  # fmt: skip

    async def _complete(self, messages: list[dict[str, str]], model: str | None) -> str:
        begun = await self.llm.chain(model).start(messages, max_tokens=self.max_tokens, temperature=0.0)
        splitter, parts = ThinkSplitter(), []
        for piece_kind, text in splitter.feed(begun.first.delta):
            if piece_kind == "answer":
                parts.append(text)
        async for event in begun.rest:
            for piece_kind, text in splitter.feed(event.delta):
                if piece_kind == "answer":
                    parts.append(text)
        parts.extend(text for piece_kind, text in splitter.flush() if piece_kind == "answer")
        return split_final("".join(parts).strip())[1]


def plausible_rewrite(question: str, rewrite: str) -> bool:
    """Is `rewrite` the question made standalone, rather than an answer, a summary or another question?
    A rewrite only replaces references, so it keeps most of the question's words (compared by their first
    five letters, which survives Russian inflection) and stays a question when the original was one."""
    if not rewrite or len(rewrite) > 3 * len(question) + 200:
        return False
    if question.rstrip().endswith("?") and "?" not in rewrite:
        return False
    stems = {w[:5] for w in _WORD.findall(question.lower()) if len(w) >= 4}
    kept = {w[:5] for w in _WORD.findall(rewrite.lower())}
    return not stems or len(stems & kept) >= len(stems) / 2


def _rewrite_messages(question: str, earlier: list[Turn]) -> list[dict[str, str]]:
    lines: list[str] = []
    used = 0
    for turn in reversed(earlier):  # the latest turns matter most
        text = " ".join(turn.content.split())
        if turn.role == "assistant" and len(text) > ASSISTANT_TURN_CHARS:
            text = text[:ASSISTANT_TURN_CHARS] + " ..."
        line = f"{'User' if turn.role == 'user' else 'Assistant'}: {text}"
        if used + len(line) > HISTORY_CHARS and lines:
            break
        lines.append(line)
        used += len(line)
    messages = [{"role": "system", "content": REWRITE_PROMPT}]
    for history, last, rewritten in _EXAMPLES:
        messages += [{"role": "user", "content": _rewrite_request(history, last)},
                     {"role": "assistant", "content": rewritten}]  # fmt: skip
    messages.append({"role": "user", "content": _rewrite_request("\n".join(reversed(lines)), question)})
    return messages


def _rewrite_request(history: str, question: str) -> str:
    return f"Conversation:\n{history}\n\nLast question: {question}\n\nRewritten question:"


def _clean(text: str) -> str:
    """The first non-empty line, without a label or quotes the model may have added."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    for label in ("Rewritten question:", "Standalone question:", "Question:", "Вопрос:"):
        if line.lower().startswith(label.lower()):
            line = line[len(label) :].strip()
    return line.strip("\"'«»“” ").strip()


def references(sources: list[dict[str, Any]], question: str) -> str:
    """Numbered references for the end of a chat answer: the cited sources (all of them if the model cited
    none), so that a client that ignores the `sources` field still shows where the answer comes from."""
    shown = [s for s in sources if s["cited"]] or sources
    if not shown:
        return ""
    lines = []
    for s in shown:
        where = s["path"] or s["document"] or "?"
        if s.get("title") and s["title"] not in (where, where.rsplit("/", 1)[-1]):
            where += f" ({s['title']})"
        if s.get("page"):
            where += f", p. {s['page']}"
        lines.append(f"[{s['n']}] {where}")
    heading = "Источники" if is_cyrillic(question) else "Sources"
    return f"\n\n{heading}:\n" + "\n".join(lines)
