"""POST /search: retrieval only, the chunks /ask would hand to the LLM."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import PrincipalDep, RetrievalDep, SettingsDep, require_read
from backend.api.errors import ERROR_RESPONSES
from backend.api.routes.ask import check_question, search_options
from backend.api.schemas import SearchRequest, SearchResponse
from backend.services.answering import Source

router = APIRouter(tags=["search"])


@router.post("/search", response_model=SearchResponse, responses=ERROR_RESPONSES)
async def search(
    body: SearchRequest, retrieval: RetrievalDep, settings: SettingsDep, principal: PrincipalDep
) -> SearchResponse:
    require_read(principal, body.space_id)
    check_question(body.q, settings)
    found = await retrieval.retrieve(body.space_id, body.q, body.top_k or settings.top_k, search_options(body))
    timings = {"embed_ms": round(found.embed_ms, 1), "search_ms": round(found.search_ms, 1)}
    if found.rerank_ms is not None:
        timings["rerank_ms"] = round(found.rerank_ms, 1)
    return SearchResponse.model_validate(
        {
            "sources": [Source(i + 1, c).to_dict() for i, c in enumerate(found.chunks)],
            "retrieval": found.describe(),
            "timings": timings,
        }
    )
