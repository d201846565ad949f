"""POST /ask: an answer with numbered, cited sources, as one JSON or as Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from backend.api.deps import AnswerDep, PrincipalDep, SettingsDep, StatusDep, require_model, require_read
from backend.api.errors import ERROR_RESPONSES, APIError
from backend.api.schemas import AskRequest, AskResponse, FiltersIn, QueryBase
from backend.config import Settings
from backend.services.answering import AnswerStream
from backend.services.errors import LLMError
from backend.services.retrieval import ChunkFilter, SearchOptions

router = APIRouter(tags=["ask"])

_SSE_DOC = {
    "description": (
        "With `stream: true`: `text/event-stream` with events `sources` ({sources}), `token` "
        "({delta}) repeated (and `reasoning` ({delta}) with include_reasoning), then `done` (the AskResponse "
        "fields except sources, plus `cited`), or "
        "`error` ({error:{code,message}}) if the LLM fails mid-answer."
    ),
    "content": {"text/event-stream": {}},
}


def check_question(q: str, settings: Settings) -> None:
    if len(q) > settings.max_question_chars:
        raise APIError(
            422,
            "question_too_long",
            f"q has {len(q)} characters; the limit is {settings.max_question_chars} (MAX_QUESTION_CHARS)",
        )


def search_options(body: QueryBase) -> SearchOptions:
    return SearchOptions(mode=body.mode, fusion=body.fusion, filters=chunk_filter(body.filters))


def chunk_filter(f: FiltersIn | None) -> ChunkFilter | None:
    filters = None
    if f is not None:
        filters = ChunkFilter(
            file_types=f.file_types, folders=f.folders, title=f.title,
            modified_after=f.modified_after.timestamp() if f.modified_after else None,
            modified_before=f.modified_before.timestamp() if f.modified_before else None,
            indexed_after=f.indexed_after.timestamp() if f.indexed_after else None,
            indexed_before=f.indexed_before.timestamp() if f.indexed_before else None,
            participants=f.participants, chats=f.chat, threads=f.thread,
            sent_after=f.sent_after.timestamp() if f.sent_after else None,
            sent_before=f.sent_before.timestamp() if f.sent_before else None,
        )  # fmt: skip
    return filters


@router.post("/ask", response_model=AskResponse, responses={**ERROR_RESPONSES, 200: _SSE_DOC})
async def ask(
    body: AskRequest, answers: AnswerDep, status: StatusDep, settings: SettingsDep, principal: PrincipalDep
) -> Any:
    require_read(principal, body.space_id)
    model = require_model(principal, status, body.model)
    check_question(body.q, settings)
    top_k = body.top_k or settings.top_k
    if body.stream:
        answer = await answers.start(body.space_id, body.q, top_k, search_options(body), model)
        return StreamingResponse(
            _events(answer, body.include_reasoning),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        answer = await answers.complete(body.space_id, body.q, top_k, search_options(body), model)
    except LLMError as exc:
        raise APIError(503, "llm_failed", f"the LLM server failed while answering: {exc}") from exc
    return answer.summary(include_reasoning=body.include_reasoning)


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _events(answer: AnswerStream, include_reasoning: bool) -> AsyncIterator[str]:
    yield _sse("sources", {"sources": [s.to_dict() for s in answer.sources]})
    try:
        async for kind, text in answer.pieces():
            if kind == "answer":
                yield _sse("token", {"delta": text})
            elif include_reasoning:
                yield _sse("reasoning", {"delta": text})
    except LLMError as exc:
        yield _sse("error", {"error": {"code": "llm_failed", "message": f"the LLM server failed mid-answer: {exc}"}})
        return
    done = answer.summary(include_reasoning=include_reasoning)
    done["cited"] = [s["n"] for s in done.pop("sources") if s["cited"]]
    yield _sse("done", done)
