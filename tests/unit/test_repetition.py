"""A model caught in a loop: found at the end of the text, kept once, and its stream closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from backend.adapters.llm import StreamEvent
from backend.adapters.store import ScoredChunk
from backend.observability import Metrics
from backend.services.answering import AnswerStream, ContextBudget, Source
from backend.services.repetition import loop_end
from backend.services.retrieval import RetrievalResult

LOOP = "Вот ответ из первого контекстного документа:  "  # Qwen2.5-Coder-1.5B, greedy (docs/evaluation.md)


def test_a_phrase_written_three_times_running_is_a_loop_kept_once() -> None:
    text = "Ответ.\n" + LOOP * 3
    assert loop_end(text) == len("Ответ.\n" + LOOP)
    assert loop_end("Ответ.\n" + LOOP * 2) is None  # twice may be a model restating itself
    # wherever the stream stops inside the loop, the phrase is kept once from where the loop began
    assert loop_end(text + LOOP[:5]) == len("Ответ.\n" + LOOP)
    assert loop_end(LOOP * 3 + LOOP[:7]) == len(LOOP)


def test_answers_tables_and_leaders_that_repeat_by_design_are_not_loops() -> None:
    assert loop_end("Петров предложил перенести срок сдачи отчёта на май [1]. Сидоров согласился [2].") is None
    table = "| Имя | Отдел | Телефон |\n|------------|------------|------------|"
    assert loop_end(table) is None
    assert loop_end("Содержание" + "." * 60) is None
    assert loop_end("да, да, да, да, да, да, да") is None  # shorter than a phrase: left alone
    assert loop_end("") is None


def test_the_answer_stream_stops_at_a_loop_and_closes_the_llm_stream() -> None:
    closed: list[bool] = []
    produced: list[int] = []

    async def events() -> AsyncIterator[StreamEvent]:
        try:
            for i in range(200):  # a model that would write to its token limit
                produced.append(i)
                yield StreamEvent(delta=LOOP[:20] if i % 2 == 0 else LOOP[20:])
            yield StreamEvent(finish_reason="length")
        finally:
            closed.append(True)

    async def run() -> tuple[AnswerStream, str]:
        now = time.perf_counter()
        answer = AnswerStream(
            sources=[Source(1, ScoredChunk("id", 0.9, {"text": "Отчёт о котельной.", "path": "a.md"}))],
            model="m", backend="llama.cpp", context=ContextBudget(4096, 100, "server", 0),
            retrieval=RetrievalResult([], 1.0, 1.0), started=now, first_event=StreamEvent(delta="Ответ.\n"),
            rest_events=events(), llm_start=now, ttft_s=0.1, metrics=Metrics(),
        )  # fmt: skip
        streamed = "".join([text async for _, text in answer.pieces()])
        return answer, streamed

    answer, streamed = asyncio.run(run())
    assert answer.answer == "Ответ.\n" + LOOP.strip()
    assert answer.finish_reason == "repetition" and answer.notices
    assert len(produced) == 6 and closed == [True]  # stopped at the third writing, the generation ended
    assert streamed.startswith("Ответ.\n" + LOOP * 2)  # what had been streamed before the loop was seen
