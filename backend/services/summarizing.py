"""Summaries of a selection (one document, or every chunk a filter matches) that read every chunk.

Top-k retrieval cannot summarise: the answer needs all of the selection, which rarely fits one prompt.
So the selection is read in document order in batches that each fit the model's window (the same
token-counted budget as /ask): the map stage writes, per batch, the points that matter for the asked
style, each ending with the [n] of the chunk it comes from (chunks are numbered across the whole
selection, so citations survive every stage); the reduce stage merges the notes, in as many rounds as
their size needs, and the last call writes the summary, streamed. A selection that fits one prompt
goes straight to that last call. Every chunk is read, never a silent cut: `coverage` says so.

Small local models drop citations and decisions along the way, so the written summary is checked: each
sentence's [n] against the selected chunks (moved to the chunk that clearly holds it, added where one
does, services/citations.py), and for `decisions` and `action_items` the sentences stating one
(services/summary_cues.py) are notes from the start, and any the summary leaves out are added to it word
for word with their [n] (`checks` counts both).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

from backend.adapters.llm import LLMError
from backend.adapters.llm.fallback import AllBackendsFailedError, FallbackLLM
from backend.adapters.llm.models import ModelRouter
from backend.adapters.store import ChunkFilter, ChunkPoint, VectorStore
from backend.observability import Metrics
from backend.services.answering import LLMUnavailableError, conversation_of, estimate_tokens
from backend.services.citations import check_citations, cited_numbers
from backend.services.errors import SpaceNotFoundError
from backend.services.summary_cues import CueSentence, cue_sentences, missing_from
from backend.services.text_analysis import is_cyrillic

log = logging.getLogger(__name__)

Style = Literal["brief", "detailed", "decisions", "action_items"]
Language = Literal["ru", "en"]

_WHAT = {
    "en": {
        "brief": "the main points",
        "detailed": "every topic: what was said and concluded, with names, dates and amounts",
        "decisions": "the decisions (sentences saying what was decided, agreed or approved)",
        "action_items": "the action items (who is to do what, and by when)",
    },
    "ru": {
        "brief": "главное",
        "detailed": "каждую тему: что сказано и решено, с именами, датами и суммами",
        "decisions": "принятые решения (предложения со словами «решили», «постановили», «согласовали», «утвердили»)",
        "action_items": "поручения (кто что должен сделать и к какому сроку)",
    },
}
# Small local models follow a concrete extraction ("write out ... each on its own line, ending with [n]")
# better than "summarise", and take an offered "write none" even when the passage holds the answer, so none
# is offered; the format keeps every point tied to its passage. Measured: docs/evaluation.md, summaries.
_MAP = {
    "en": (
        "From the numbered passages, write out only {what}. Each on its own line starting with '- ', with its "
        "names, dates and amounts exactly as written, ending with its passage number in square brackets. "
        "Nothing else."
    ),
    "ru": (
        "Выпиши из пронумерованных фрагментов только {what}. Каждый пункт отдельной строкой, начиная с «- », "
        "имена, даты и суммы дословно, в конце номер его фрагмента в квадратных скобках. Больше ничего не пиши."
    ),
}
_REDUCE = {
    "en": (
        "Below are points taken from a text, each ending with the number of its source in square brackets. "
        "Keep only {what}; drop repeats; keep names, dates and amounts exactly and each point's number at its "
        "end; add nothing. Each point on its own line starting with '- '. Nothing else."
    ),
    "ru": (
        "Ниже пункты из текста, в конце каждого номер источника в квадратных скобках. Оставь только {what}; "
        "убери повторы; имена, даты, суммы и номер в конце пункта сохрани; ничего не добавляй. Каждый пункт "
        "отдельной строкой, начиная с «- ». Больше ничего не пиши."
    ),
}
_FINAL = _MAP  # a selection that fits one prompt: its points are the summary
_NONE_FOUND = {"en": "The selection holds nothing of the kind asked for.", "ru": "В выбранном нет ничего такого."}
_NOTHING = ("- none", "- нет", "none", "нет", "- nothing", "nothing")


class SelectionError(Exception):
    """The selection cannot be summarised: empty, unknown document, or over MAX_SUMMARY_CHUNKS."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.status = code, status


@dataclass
class Progress:
    done: int  # LLM calls finished
    total: int  # LLM calls the selection needs, as far as known (reduce rounds are added when reached)


@dataclass
class Token:
    delta: str


@dataclass
class SummaryResult:
    summary: str
    style: Style
    language: Literal["ru", "en"]
    sources: list[dict[str, Any]]  # the cited chunks; [n] numbers the selection in document order
    chunks_selected: int  # all of them read
    map_calls: int
    reduce_calls: int  # merging rounds' calls
    final_calls: int  # calls that wrote the summary: one, or one per part when the notes did not fit one
    model: str
    backend: str
    fallback_used: bool
    completion_tokens: int
    prompt_tokens: int | None
    seconds: float
    created_at: float
    # citations moved / added / unsupported by the check; cue sentences restored; outputs cut at max tokens
    checks: dict[str, int]
    cached: bool = False  # a stored result of the same selection, document versions, style and model

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "llm_calls": self.map_calls + self.reduce_calls + self.final_calls,
                "coverage": {"chunks_read": self.chunks_selected, "chunks_selected": self.chunks_selected}}  # fmt: skip


@dataclass
class SummaryPlan:
    lang: Language
    budget: int  # tokens of text one call may read
    size: Callable[[str], int]  # tokens of a text, as packing counts them
    texts: list[str]
    batches: list[tuple[int, int]]  # [start, end) of each map call's chunks


def _sources(chunks: list[ChunkPoint], cited: list[int]) -> list[dict[str, Any]]:
    out = []
    for n in cited:
        p = chunks[n - 1].payload
        out.append({"n": n, "id": chunks[n - 1].id, "document": p.get("document_id"), "path": p.get("path"),
                    "title": p.get("title"), "heading": p.get("heading"), "page": p.get("page"),
                    "chunk": p.get("chunk"), "text": p.get("text", ""),
                    "conversation": conversation_of(p)})  # fmt: skip
    return out


def _file_of(chunk: ChunkPoint) -> str:
    """The indexed file a chunk belongs to: its document, or for an attachment the mail file that owns it."""
    return str(chunk.payload.get("owner") or chunk.payload.get("document_id"))


def _versions(chunks: list[ChunkPoint]) -> dict[str, str]:
    """{document id: version} of the files the selection's chunks come from."""
    return {_file_of(c): str(c.payload.get("version")) for c in chunks}


def _at_indexed_version(chunks: list[ChunkPoint], indexed: dict[str, str | None]) -> list[ChunkPoint]:
    """The chunks of their file's indexed version; one also tagged with a version being written (kept by the
    rewrite: [indexed, new]) is read as the indexed version's."""
    out = []
    for c in chunks:
        version, tag = indexed.get(_file_of(c)), c.payload.get("version")
        if version is not None and (tag == version or (isinstance(tag, list) and version in tag)):
            c.payload["version"] = version
            out.append(c)
    return out


def summary_key(
    space: str, selection: dict[str, Any], style: str, language: str | None = None, model: str | None = None
) -> str:
    asked: dict[str, Any] = {"space": space, "selection": selection, "style": style}
    if language is not None:  # the documents' language needs no mention (keys stored before it stay valid)
        asked["language"] = language
    if model is not None:  # likewise the default model
        asked["model"] = model
    canonical = json.dumps(asked, sort_keys=True)
    return str(uuid.uuid5(_KEYS, canonical))


_KEYS = uuid.UUID("0f5d8a42-51c4-4a8e-8d0b-7f3f3b1f6e21")


SummaryEvent = Progress | Token | SummaryResult
_FIELDS = set(SummaryResult.__dataclass_fields__)


def _passages(chunks: list[ChunkPoint], first: int) -> str:
    return "\n\n".join(f"[{first + i}]\n{c.payload.get('text', '')}" for i, c in enumerate(chunks))


class SummaryService:
    def __init__(
        self,
        store: VectorStore,
        llm: ModelRouter,
        metrics: Metrics,
        *,
        max_tokens: int,
        temperature: float,
        context_tokens: int,
        max_chunks: int,
        batch_tokens: int = 0,
        check: bool = True,
    ) -> None:
        self.store = store
        self.llm = llm
        self.metrics = metrics
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.context_tokens = context_tokens
        self.max_chunks = max_chunks
        self.batch_tokens = batch_tokens  # 0: as much of the window as a call can take
        self.check = check  # CITATION_CHECK: citations checked against the chunks, left-out cue sentences added

    async def select(self, space: str, document_id: str | None, filters: ChunkFilter | None) -> list[ChunkPoint]:
        """The selected chunks in document order; SelectionError when there is nothing or too much."""
        if not await self.store.space_exists(space):
            raise SpaceNotFoundError(space)
        chunks = await self.store.select_chunks(space, filters, document_id=document_id, limit=self.max_chunks + 1)
        # A file being rewritten holds its new version's chunks beside the indexed one's until the commit:
        # the summary reads the indexed version alone, as if the write had not begun.
        chunks = _at_indexed_version(chunks, {r.id: r.version for r in await self.store.list_documents(space)})
        if len(chunks) > self.max_chunks:
            raise SelectionError(
                "selection_too_large",
                f"the selection holds more than {self.max_chunks} chunks (MAX_SUMMARY_CHUNKS); narrow it with "
                "filters (folders, dates, participants, a chat or thread) or raise the limit",
                413,
            )
        if not chunks:
            if document_id is not None:
                raise SelectionError("document_not_found", f"no document {document_id} in space {space!r}", 404)
            raise SelectionError("empty_selection", f"no chunk of space {space!r} matches the filters", 422)
        return sorted(chunks, key=lambda c: (str(c.payload.get("path", "")), int(c.payload.get("chunk") or 0)))

    async def summarize(
        self,
        space: str,
        selection: dict[str, Any],
        chunks: list[ChunkPoint],
        style: Style,
        language: Language | None = None,
        model: str | None = None,
    ) -> AsyncIterator[SummaryEvent]:
        """Progress events during the map stage, the summary's tokens, then the SummaryResult; a stored
        result of the same selection, document versions, style and model is returned at once instead.
        Raises LLMUnavailableError when no backend answers a call (fallback happens within each call).
        `language`: the summary's; default the documents' (Russian when their text is mostly Cyrillic).
        `model`: a name of LLM_MODELS; None for the default."""
        llm = self.llm.chain(model)
        key, versions = summary_key(space, selection, style, language, model), _versions(chunks)
        stored = await self.store.get_summary(space, key)
        fields = (stored or {}).get("result") or {}
        if (stored and _FIELDS - {"cached"} <= fields.keys() and stored.get("versions") == versions
                and stored.get("model") == await llm.primary_model()):  # fmt: skip
            result = SummaryResult(**{k: v for k, v in fields.items() if k in _FIELDS})
            result.cached = True
            self.metrics.summary_cache_hits.labels(space).inc()
            yield Token(result.summary)
            yield result
            return
        async for event in self._write(space, chunks, style, language, model):
            if isinstance(event, SummaryResult):
                result_dict = {k: v for k, v in event.__dict__.items() if k != "cached"}
                await self.store.put_summary(space, key, {
                    "selection": selection, "style": style, "model": event.model, "versions": versions,
                    "documents": sorted(versions), "created_at": event.created_at, "result": result_dict})  # fmt: skip
            yield event

    async def stored(self, space: str) -> list[dict[str, Any]]:
        """The space's stored summaries, each saying whether its documents are still at the versions it read."""
        if not await self.store.space_exists(space):
            raise SpaceNotFoundError(space)
        current = {r.id: r.version for r in await self.store.list_documents(space)}
        out = []
        for key, entry in await self.store.list_summaries(space):
            result = entry.get("result", {})
            versions = entry.get("versions") or {}
            out.append({"id": key, "selection": entry.get("selection"), "style": entry.get("style"),
                        "model": entry.get("model"), "language": result.get("language"),
                        "created_at": entry.get("created_at"), "chunks": result.get("chunks_selected"),
                        "documents": entry.get("documents", []),
                        "current": all(current.get(d) == v for d, v in versions.items())})  # fmt: skip
        return sorted(out, key=lambda e: -float(e["created_at"] or 0))

    async def _sizer(self, chunks: list[ChunkPoint], llm: FallbackLLM) -> Callable[[str], int]:
        """Tokens of a text for packing: the safe estimate (a token per Cyrillic character), scaled down by
        what the server's tokenizer counts for a sample of the selection (one request), with 15% to spare.
        Without a count the estimate stands: more, smaller batches, never an overfull prompt."""
        sample = "\n\n".join(str(c.payload.get("text", "")) for c in chunks[:20])[:20_000]
        counted = await llm.count_prompt_tokens([{"role": "user", "content": sample}]) if sample else None
        ratio = 1.0
        if counted:
            ratio = min(1.0, max(0.2, 1.15 * counted / max(1, estimate_tokens(sample))))
        return lambda text: math.ceil(estimate_tokens(text) * ratio)

    async def plan(
        self, chunks: list[ChunkPoint], style: Style, language: Language | None = None, model: str | None = None
    ) -> SummaryPlan:
        """The summary's language and the selection's batches for the map stage (one batch: no map stage)."""
        llm = self.llm.chain(model)
        sample = " ".join(str(c.payload.get("text", ""))[:300] for c in chunks[:40])
        lang: Language = language or ("ru" if is_cyrillic(sample) else "en")
        window = await llm.context_window(self.context_tokens)
        budget = window - self.max_tokens - 64  # room for the instruction's own framing
        if self.batch_tokens:
            budget = min(budget, self.batch_tokens)
        size = await self._sizer(chunks, llm)
        instruction = _FINAL[lang].format(what=_WHAT[lang][style])
        texts = [str(c.payload.get("text", "")) for c in chunks]
        batches = _pack([size(t) + 8 for t in texts], budget - size(instruction))
        return SummaryPlan(lang, budget, size, texts, batches)

    async def _write(
        self, space: str, chunks: list[ChunkPoint], style: Style, language: Language | None, model: str | None
    ) -> AsyncIterator[SummaryEvent]:
        started = time.perf_counter()
        plan = await self.plan(chunks, style, language, model)
        lang, budget, size, texts, batches = plan.lang, plan.budget, plan.size, plan.texts, plan.batches
        what = _WHAT[lang][style]
        run = _Run(self, started, self.llm.chain(model))
        instruction = _FINAL[lang].format(what=what)
        cues = cue_sentences(texts, style) if self.check else []
        if len(batches) == 1:
            yield Progress(0, 1)
            async for event in run.final(instruction, _passages(chunks, 1)):
                yield event
        else:
            # map: every chunk read, notes citing the selection-wide [n]
            yield Progress(0, len(batches) + 1)
            notes: list[str] = []
            pending = [(start, end, False) for start, end in batches]
            while pending:
                start, end, halved = pending.pop(0)
                written = await run.complete(_MAP[lang].format(what=what), _passages(chunks[start:end], start + 1))
                run.map_calls += 1
                if run.last_cut and end - start > 1 and not halved:
                    # The notes reached LLM_MAX_TOKENS: the batch is read again in two halves. Once only: a model
                    # that copies its passages fills any room, and each halving would double the calls.
                    run.cut_short -= 1
                    middle = (start + end) // 2
                    pending[:0] = [(start, middle, True), (middle, end, True)]
                else:
                    notes.extend(_with_cues(_note_lines(written), [c for c in cues if start < c.number <= end]))
                yield Progress(run.map_calls, run.map_calls + len(pending) + 1)
            # reduce: merge notes until they fit one prompt, then the final call streams
            reduce_intro = _REDUCE[lang].format(what=what)
            groups = _pack([size(n) + 2 for n in notes], budget - size(reduce_intro))
            while len(groups) > 1:
                merged: list[str] = []
                for start, end in groups:
                    merged.extend(_note_lines(await run.complete(reduce_intro, "\n".join(notes[start:end]))))
                    run.reduce_calls += 1
                if len(merged) >= len(notes):  # merging no longer shrinks them: write each group's part
                    break
                notes = merged
                groups = _pack([size(n) + 2 for n in notes], budget - size(reduce_intro))
            # Never a silent cut: notes that still do not fit one prompt are written part by part.
            for i, (start, end) in enumerate(groups):
                if i:
                    run.parts.append("\n")
                    yield Token("\n")
                async for event in run.final(reduce_intro, "\n".join(notes[start:end])):
                    yield event
            if not groups:  # no batch yielded a note: say so rather than ask the model to write from nothing
                run.parts.append(_NONE_FOUND[lang])
                yield Token(_NONE_FOUND[lang])
        text = "".join(run.parts).strip()
        checks = {"moved": 0, "added": 0, "unsupported": 0, "restored": 0, "cut_short": run.cut_short}
        if self.check:
            # CPU work over every selected chunk: off the event loop
            checked = await asyncio.to_thread(check_citations, text, texts)
            text = checked.text
            checks.update(moved=checked.moved, added=checked.added, unsupported=checked.unsupported)
            left_out = missing_from(text, cues)
            if left_out:
                if text.startswith(_NONE_FOUND[lang]):
                    text = ""
                restored = "\n".join(c.note() for c in left_out)
                yield Token("\n" + restored)
                text = f"{text}\n{restored}".strip()
                checks["restored"] = len(left_out)
        cited = sorted(cited_numbers(text, len(chunks)))
        sources = _sources(chunks, cited)
        seconds = time.perf_counter() - started
        self.metrics.summaries.labels(space, style).inc()
        self.metrics.summary_llm_calls.labels(space, "map").inc(run.map_calls)
        self.metrics.summary_llm_calls.labels(space, "reduce").inc(run.reduce_calls)
        self.metrics.summary_llm_calls.labels(space, "final").inc(run.final_calls)
        self.metrics.summary_duration.observe(seconds)
        yield SummaryResult(text, style, lang, sources, len(chunks), run.map_calls, run.reduce_calls,
                            run.final_calls, run.model, run.backend, run.fallback_used, run.completion_tokens,
                            run.prompt_tokens, round(seconds, 3), round(time.time(), 3), checks)  # fmt: skip


def _with_cues(notes: list[str], cues: list[CueSentence]) -> list[str]:
    """A batch's notes, and its cue sentences the model's notes left out (as notes citing their chunk)."""
    return notes + [c.note() for c in missing_from("\n".join(notes), cues)]


def _pack(sizes: list[int], budget: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) runs whose sizes add up to at most `budget` (an item alone may exceed it:
    a chunk is never cut)."""
    runs: list[tuple[int, int]] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + size > budget:
            runs.append((start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        runs.append((start, len(sizes)))
    return runs


def _note_lines(text: str) -> list[str]:
    """The notes of a map or reduce answer: its list items and the lines that cite a passage, less "none"
    (a model that wrote neither is kept whole: its words are all the batch left)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    notes = [line for line in lines if "[" in line or line.startswith(("-", "*", "•"))]
    kept = [n for n in notes if re.sub(r"\s*\[[\d,\s]+\]\s*$", "", n).strip().rstrip(".").casefold() not in _NOTHING]
    if notes:
        return kept
    return [" ".join(lines)] if lines else []


class _Run:
    """The LLM calls of one summary: each through the fallback chain, counted and timed."""

    def __init__(self, service: SummaryService, started: float, llm: FallbackLLM) -> None:
        self.s = service
        self.llm = llm
        self.started = started
        self.map_calls = 0
        self.reduce_calls = 0
        self.final_calls = 0
        self.model = ""
        self.backend = ""
        self.fallback_used = False
        self.completion_tokens = 0
        self.prompt_tokens: int | None = 0
        self.parts: list[str] = []
        self.last_cut = False  # the last call stopped at LLM_MAX_TOKENS
        self.cut_short = 0  # such calls whose output was kept

    async def _stream(self, instruction: str, text: str) -> AsyncIterator[str]:
        # The task as the system message, the text to work on as the user's: small models then echo less of it.
        messages = [{"role": "system", "content": instruction}, {"role": "user", "content": text}]
        self.last_cut = False
        try:
            begun = await self.llm.start(messages, max_tokens=self.s.max_tokens, temperature=self.s.temperature)
        except AllBackendsFailedError as exc:
            raise LLMUnavailableError(f"no LLM backend could summarise: {exc}", []) from exc
        self.model, self.backend = begun.model, begun.backend
        self.fallback_used = self.fallback_used or begun.role == "fallback"
        event = begun.first
        rest = begun.rest
        while True:
            if event.delta:
                yield event.delta
            if event.finish_reason is not None:
                self.last_cut = event.finish_reason == "length"
                self.cut_short += self.last_cut
            if event.usage is not None:
                self.completion_tokens += event.usage.completion_tokens
                if self.prompt_tokens is not None and event.usage.prompt_tokens is not None:
                    self.prompt_tokens += event.usage.prompt_tokens
                else:
                    self.prompt_tokens = None
            try:
                event = await anext(rest)
            except StopAsyncIteration:
                return

    async def complete(self, instruction: str, text: str) -> str:
        """One map or reduce call, whole; a server failing midway is asked again once (through the chain)."""
        for attempt in (1, 2):
            try:
                return "".join([d async for d in self._stream(instruction, text)])
            except LLMError as exc:
                if attempt == 2:
                    raise LLMUnavailableError(f"the LLM server failed twice during a summary: {exc}", []) from exc
                log.warning("summary: an LLM call failed midway (%s); asking again", exc)
        raise AssertionError("unreachable")

    async def final(self, instruction: str, text: str) -> AsyncIterator[SummaryEvent]:
        self.final_calls += 1
        async for delta in self._stream(instruction, text):
            self.parts.append(delta)
            yield Token(delta)
