"""GET /models: the named models this API key may use (LLM_MODELS), for /ask, /summarize and the web page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import PrincipalDep, StatusDep

router = APIRouter(tags=["models"])


@router.get("/models")
async def list_models(status: StatusDep, principal: PrincipalDep) -> dict[str, Any]:
    """Each model: its name (what `model` takes), whether it is the default, its server kind, its GPU swap
    group and whether it is awake now (None: not known yet; a sleeping model is woken when named)."""
    models = [m for m in status.models() if principal.can_use(str(m["name"]))]
    return {"models": [{k: v for k, v in m.items() if k != "base_url"} for m in models]}
