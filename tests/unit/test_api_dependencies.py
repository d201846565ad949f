"""Every route's dependencies run on the event loop: FastAPI sends a plain `def` dependency to its thread
pool, a hop to a worker thread and back on every request (docs/performance.md measures what two of
them cost a request)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from backend.config import Settings
from backend.main import create_app


def _api_routes(routes: Sequence[BaseRoute]) -> list[APIRoute]:
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif (router := getattr(route, "original_router", None)) is not None:  # an included router
            found += _api_routes(router.routes)
    return found


def _dependencies(dependant: Dependant) -> list[Dependant]:
    found = []
    for sub in dependant.dependencies:
        found += [sub, *_dependencies(sub)]
    return found


def test_no_route_depends_on_a_function_the_thread_pool_must_run(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, qdrant_path=tmp_path / "qdrant", auth_disabled=True)  # type: ignore[call-arg]
    app = create_app(settings)  # the store and the LLM open in the lifespan, which never runs here
    routes = _api_routes(app.routes)
    assert {"/ask", "/search", "/plan"} <= {r.path for r in routes}
    sync = sorted(
        {
            f"{route.path}: {dep.call.__name__}"
            for route in routes
            for dep in _dependencies(route.dependant)
            if dep.call is not None and not inspect.iscoroutinefunction(dep.call)
        }
    )
    assert sync == [], f"dependencies run in the thread pool: {sync}; make them `async def`"
