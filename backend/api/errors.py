"""The error body every failure uses, {error: {code, message}}, and the handlers that produce it."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.services.answering import LLMUnavailableError
from backend.services.errors import (
    AttachmentDeleteError,
    EmbedderError,
    EmbeddingMismatchError,
    SpaceGoneError,
    SpaceNeedsMigrationError,
    SpaceNotFoundError,
    StoreError,
    StoreFullError,
    StoreUnavailableError,
    SwitchQueueFullError,
    UnknownModelError,
)

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[Any] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class APIError(Exception):
    """An error with its HTTP status, raised by routes and dependencies."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers


def error_response(
    status: int, code: str, message: str, details: list[Any] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


# Responses documented in OpenAPI for the routes that can produce them.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid request"},
    401: {"model": ErrorBody, "description": "Missing or invalid API key (Authorization: Bearer <key>)"},
    403: {"model": ErrorBody, "description": "The API key may not do this in this space"},
    404: {"model": ErrorBody, "description": "Unknown space or document"},
    422: {"model": ErrorBody, "description": "Request validation failed"},
    429: {"model": ErrorBody, "description": "Too many requests for this key; see Retry-After"},
    503: {"model": ErrorBody, "description": "A dependency (LLM, vector store) is unavailable"},
    507: {"model": ErrorBody, "description": "The embedded store's disk is nearly full: writes refused"},
}


def _describe(errors: list[Any]) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form"))
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


# Errors raised below the API, and what the caller is told. Lookup follows the exception's MRO, so
# EmbeddingMismatchError keeps its 409 although it is a StoreError.
DOMAIN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    SpaceNotFoundError: (404, "space_not_found"),
    SpaceGoneError: (404, "space_not_found"),
    AttachmentDeleteError: (409, "attachment_of_file"),
    EmbeddingMismatchError: (409, "embedding_mismatch"),
    SpaceNeedsMigrationError: (409, "space_needs_migration"),
    StoreFullError: (507, "storage_full"),
    StoreError: (503, "store_unavailable"),
    EmbedderError: (503, "embedder_unavailable"),
    UnknownModelError: (400, "unknown_model"),
}


def _domain_handler(status: int, code: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return error_response(status, code, str(exc))

    return handle


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        return error_response(422, "invalid_request", _describe(errors), errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":  # no route matched: say which, and where the API is
            message = f"no route {request.method} {request.url.path[:200]}; the API is described at /docs"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path[:200]}; see /docs for its methods"
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    for exc_type, (status, code) in DOMAIN_ERRORS.items():
        app.add_exception_handler(exc_type, _domain_handler(status, code))

    @app.exception_handler(StoreUnavailableError)
    async def _store_unavailable(_: Request, exc: StoreUnavailableError) -> JSONResponse:
        retry = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
        return error_response(503, "store_unavailable", str(exc), headers=retry)

    @app.exception_handler(SwitchQueueFullError)
    async def _switch_queue_full(_: Request, exc: SwitchQueueFullError) -> JSONResponse:
        retry = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
        return error_response(429, "model_switch_queue_full", str(exc), headers=retry)

    @app.exception_handler(LLMUnavailableError)
    async def _llm_unavailable(_: Request, exc: LLMUnavailableError) -> JSONResponse:
        # The retrieved sources still help the user when no LLM can write the answer.
        return JSONResponse(
            {"error": {"code": "llm_unavailable", "message": str(exc)}, "sources": exc.sources}, status_code=503
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; the log has details (request id)")
