"""POST /summarize: a summary of one document or of everything a filter matches, reading every chunk."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from backend.api.deps import PrincipalDep, StatusDep, SummaryDep, require_model, require_read
from backend.api.errors import ERROR_RESPONSES, APIError
from backend.api.routes.ask import chunk_filter
from backend.api.routes.documents import SpaceQuery
from backend.api.schemas import SummarizeRequest, SummaryList, SummaryResponse
from backend.services.answering import LLMUnavailableError
from backend.services.errors import SwitchQueueFullError
from backend.services.summarizing import Progress, SelectionError, SummaryEvent, SummaryResult, Token

router = APIRouter(tags=["summarize"])

_SSE_DOC = {
    "description": (
        "With `stream: true`: `text/event-stream` with events `progress` ({done, total}: LLM calls; total grows "
        "when a batch is read again or a merging round is reached) while the "
        "selection is read, `token` ({delta}) repeated as the summary is written, then `done` (the "
        "SummaryResponse fields), or `error` ({error:{code,message}}) if the LLM fails midway."
    ),
    "content": {"text/event-stream": {}},
}


@router.post("/summarize", response_model=SummaryResponse, responses={**ERROR_RESPONSES, 200: _SSE_DOC})
async def summarize(body: SummarizeRequest, summaries: SummaryDep, status: StatusDep, principal: PrincipalDep) -> Any:
    """Summarise a document (`document_id`) or a selection (`filters`); every selected chunk is read."""
    require_read(principal, body.space_id)
    model = require_model(principal, status, body.model)
    if (body.document_id is None) == (body.filters is None):
        raise APIError(422, "invalid_selection", "give either document_id or filters ({} for the whole space)")
    try:
        chunks = await summaries.select(body.space_id, body.document_id, chunk_filter(body.filters))
    except SelectionError as exc:
        raise APIError(exc.status, exc.code, str(exc)) from exc
    selection: dict[str, Any] = (
        {"document_id": body.document_id} if body.document_id is not None
        else {"filters": body.filters.model_dump(mode="json", exclude_defaults=True) if body.filters else {}}
    )  # fmt: skip
    events = summaries.summarize(body.space_id, selection, chunks, body.style, body.language, model)
    if body.stream:
        return StreamingResponse(_sse_events(events), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip
    async for event in events:
        if isinstance(event, SummaryResult):
            return _response(event)
    raise AssertionError("a summary ends with its result")


def _response(result: SummaryResult) -> dict[str, Any]:
    return SummaryResponse.model_validate(result.to_dict()).model_dump()


@router.get("/summaries", response_model=SummaryList, responses=ERROR_RESPONSES)
async def list_summaries(space_id: SpaceQuery, summaries: SummaryDep, principal: PrincipalDep) -> SummaryList:
    """The space's stored summaries; `current` is false once a document they read has changed."""
    require_read(principal, space_id)
    return SummaryList(space=space_id, summaries=await summaries.stored(space_id))


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _sse_events(events: AsyncIterator[SummaryEvent]) -> AsyncIterator[str]:
    # A client that goes away cancels this generator, and with it the LLM call in flight: nothing is orphaned.
    try:
        async for event in events:
            if isinstance(event, Progress):
                yield _sse("progress", {"done": event.done, "total": event.total})
            elif isinstance(event, Token):
                yield _sse("token", {"delta": event.delta})
            else:
                yield _sse("done", _response(event))
    except LLMUnavailableError as exc:
        yield _sse("error", {"error": {"code": "llm_unavailable", "message": str(exc)}})
    except SwitchQueueFullError as exc:
        yield _sse("error", {"error": {"code": "model_switch_queue_full", "message": str(exc)}})
