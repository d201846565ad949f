"""Liveness, readiness (each dependency with its latency) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from backend.api.deps import ContainerDep, StatusDep
from backend.api.schemas import CheckOut, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up (it does not check dependencies: see /ready)."""
    return {"status": "ok", "service": "rag-service"}


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def ready(status: StatusDep, request: Request) -> JSONResponse:
    """Each dependency with its latency; 503 when the service cannot answer, 200 while degraded."""
    state, checks = await status.readiness()
    body = ReadyResponse(
        auth="disabled" if request.app.state.keyring.disabled else "api_keys",
        status=state,
        checks={
            name: CheckOut(status="ok" if c.ok else "error", latency_ms=round(c.latency_ms, 1), detail=c.detail)
            for name, c in checks.items()
        },
    )
    return JSONResponse(body.model_dump(), status_code=503 if state == "unavailable" else 200)


@router.get("/metrics", include_in_schema=False)
async def metrics(c: ContainerDep) -> Response:
    return Response(generate_latest(c.metrics.registry), media_type=CONTENT_TYPE_LATEST)
