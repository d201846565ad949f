"""GET /models: the named models this API key may use (LLM_MODELS), for /ask, /summarize and the web page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import PrincipalDep, StatusDep

router = APIRouter(tags=["models"])


@router.get("/models")
async def list_models(status: StatusDep, principal: PrincipalDep) -> dict[str, Any]:
    """Each model: its name (what `model` takes), whether it is the default, its server kind, its GPU swap
    group and whether it is awake now (None: not known yet; a sleeping model is woken when named), and
    for a model on several servers each replica's circuit state and requests (in flight, answered, failed)."""
    models = [m for m in status.models() if principal.can_use(str(m["name"]))]
    return {"models": [_public(m) for m in models]}


def _public(model: dict[str, Any]) -> dict[str, Any]:
    """Without server addresses: a key holder may use a model, not learn where its servers are."""
    out = {k: v for k, v in model.items() if k != "base_url"}
    if out.get("replicas"):
        out["replicas"] = [{k: v for k, v in r.items() if k != "base_url"} for r in out["replicas"]]
    return out
