"""ASGI middleware: request ids, access logs, per-route metrics, and the request-body size limit."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.observability import Metrics, log_fields, request_id_var

log = logging.getLogger("backend.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _too_large_message(limit: int) -> str:
    return f"request body exceeds {limit} bytes; send fewer or smaller files (MAX_UPLOAD_MB sets the limit)"


class _BodyTooLarge(HTTPException):
    """Raised from `receive` mid-body; an HTTPException so FastAPI's body parsing passes it through as 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_message(limit))


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex[:16]
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        status = 500
        started = False
        limit = self.max_body_bytes

        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(send, request_id, limit)
            self._record(scope, 413, start)
            request_id_var.reset(token)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            status = 413
            if not started:
                await self._too_large(send, request_id, limit)
        finally:
            self._record(scope, status, start)
            request_id_var.reset(token)

    def _record(self, scope: Scope, status: int, start: float) -> None:
        elapsed = time.perf_counter() - start
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "?")
        self.metrics.http_requests.labels(method, path, str(status)).inc()
        self.metrics.http_latency.labels(method, path).observe(elapsed)
        log.info(
            "%s %s %d",
            method,
            scope.get("path"),
            status,
            # Which key (by its name, never the key) made the request: an audit trail per tenant.
            extra=log_fields(
                route=path, status=status, ms=round(elapsed * 1000, 1), caller=scope.get("state", {}).get("principal")
            ),
        )

    @staticmethod
    async def _too_large(send: Send, request_id: str, limit: int) -> None:
        body: dict[str, Any] = {
            "error": {
                "code": "too_large",
                "message": _too_large_message(limit),
            }
        }
        raw = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                    (b"x-request-id", request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})
