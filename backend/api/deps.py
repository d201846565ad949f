"""FastAPI dependencies as Annotated aliases: routes declare what they need, the container provides it.

Every dependency is `async def` although none awaits: FastAPI runs a plain `def` dependency in its thread
pool, a hop to a worker thread and back for each one on every request (docs/performance.md).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.api.errors import APIError
from backend.api.security import ANONYMOUS, KeyRing, Principal, RateLimiter
from backend.config import Settings
from backend.container import Container
from backend.services.answering import AnswerService
from backend.services.conversation import ConversationService
from backend.services.ingest import IngestService
from backend.services.retrieval import RetrievalService
from backend.services.status import StatusService
from backend.services.summarizing import SummaryService


async def get_container(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_settings(c: ContainerDep) -> Settings:
    return c.settings


async def get_ingest(c: ContainerDep) -> IngestService:
    return c.ingest


async def get_retrieval(c: ContainerDep) -> RetrievalService:
    return c.retrieval


async def get_answers(c: ContainerDep) -> AnswerService:
    return c.answers


async def get_status(c: ContainerDep) -> StatusService:
    return c.status


async def get_conversations(c: ContainerDep) -> ConversationService:
    return c.conversations


async def get_summaries(c: ContainerDep) -> SummaryService:
    return c.summaries


SettingsDep = Annotated[Settings, Depends(get_settings)]
IngestDep = Annotated[IngestService, Depends(get_ingest)]
RetrievalDep = Annotated[RetrievalService, Depends(get_retrieval)]
AnswerDep = Annotated[AnswerService, Depends(get_answers)]
StatusDep = Annotated[StatusService, Depends(get_status)]
ConversationDep = Annotated[ConversationService, Depends(get_conversations)]
SummaryDep = Annotated[SummaryService, Depends(get_summaries)]


async def get_principal(request: Request) -> Principal:
    """Authenticate the request (Authorization: Bearer <key>) and charge its key's rate limit."""
    ring: KeyRing = request.app.state.keyring
    limiter: RateLimiter = request.app.state.rate_limiter
    if ring.disabled:
        principal, caller = ANONYMOUS, f"address:{request.client.host if request.client else '-'}"
    else:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise APIError(401, "missing_api_key", "send an API key: Authorization: Bearer <key>",
                           headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        found = ring.authenticate(token.strip())
        if found is None:
            raise APIError(401, "invalid_api_key", "the API key is not valid; ask the operator for one",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})  # fmt: skip
        principal, caller = found, f"key:{found.name}"
    wait = limiter.acquire(caller)
    if wait:
        retry = RateLimiter.retry_after(wait)
        message = f"too many requests for this key; retry in {retry} s (RATE_LIMIT_PER_MINUTE)"
        raise APIError(429, "rate_limited", message, headers={"Retry-After": retry})
    request.state.principal = principal.name
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_read(principal: Principal, space: str) -> None:
    if not principal.can_read(space):
        raise APIError(403, "forbidden", f"this API key may not read space {space!r}")


def require_write(principal: Principal, space: str) -> None:
    if not principal.can_write(space):
        raise APIError(403, "forbidden", f"this API key may not write to space {space!r}")


def require_model(principal: Principal, status: StatusService, model: str | None) -> str | None:
    """`model` once checked: configured (else 400 unknown_model) and allowed to this key (else 403); the
    default model (None) is checked too, for keys limited to some models."""
    name = status.check_model(model)
    if not principal.can_use(name):
        raise APIError(403, "forbidden", f"this API key may not use model {name!r}")
    return model


def require_admin(principal: Principal) -> None:
    if not principal.admin:
        raise APIError(403, "forbidden", "deleting needs an API key with the admin scope")
