"""create_app(settings) -> the FastAPI app; its lifespan opens the adapters and closes them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from backend.api.errors import install_error_handlers
from backend.api.middleware import RequestContextMiddleware
from backend.api.routes import ask, documents, health, models, openai_api, plan, search, spaces, summarize, web
from backend.api.security import KeyRing, RateLimiter
from backend.config import ConfigError, Settings, load_settings
from backend.container import Container
from backend.observability import Metrics, configure_logging
from backend.services.errors import EmbedderError, RerankerError, StoreError

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, http_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """`http_transport` replaces the network under the LLM client; tests use it to inject faults."""
    settings = settings or load_settings()
    keyring = KeyRing.from_settings(settings)  # no keys and not explicitly disabled: refuse to start
    if keyring.disabled:
        log.warning("AUTH_DISABLED=true: anyone who can reach this port may read, write and delete")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            container = await Container.open(settings, metrics=app.state.metrics, transport=http_transport)
        except (StoreError, EmbedderError, RerankerError) as exc:
            # One line that says what to fix, before the server's own traceback.
            log.error("cannot start: %s", exc)
            raise
        app.state.container = container
        try:
            yield
        finally:
            await container.close()

    app = FastAPI(
        title="RAG service",
        version="0.1.0",
        description="Ask questions over your documents; answers cite their sources.",
        lifespan=lifespan,
    )
    # Metrics exist before the container so the middleware can report from the first request.
    app.state.metrics = Metrics()
    app.state.keyring = keyring
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics, max_body_bytes=settings.max_upload_bytes)
    if settings.cors_origin_list:
        # Browsers may call from these origins only; the key still has to come with each request.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    install_error_handlers(app)
    for module in (ask, search, summarize, documents, spaces, models, plan, health, openai_api):
        app.include_router(module.router)
    if settings.web_ui:
        app.include_router(web.router)
        app.mount("/ui", web.static_files(), name="ui")
    return app


def app_from_env() -> FastAPI:
    """Entry point for `uvicorn --factory backend.main:app_from_env`."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        return create_app(settings)
    except ConfigError as exc:
        log.error("cannot start: %s", exc)  # one line that says what to fix, before uvicorn's traceback
        raise
