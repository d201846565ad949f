"""STAND-IN for a Qdrant server: Qdrant's REST wire protocol in front of the embedded engine.

No Qdrant server binary can be installed on this project's machines (not on PyPI, Debian or npm), yet
the service's remote path (QDRANT_URL: qdrant-client's REST client, its timeouts and error mapping) and
the "Qdrant server unreachable" fault need a server to talk to. This speaks the documented REST API
(https://api.qdrant.tech, the same request and response models qdrant-client generates from it) for
the endpoints the service uses, and answers them from Qdrant Edge on disk (Qdrant's own engine, in-process:
backend/adapters/edge_engine.py), so the data, filters, payload indexes and scoring are the real engine's.
Requests are parsed with the client's own pydantic models, so a body the real server would reject is
rejected here too (400).

Not covered: gRPC, snapshots, aliases, and every endpoint the service does not call (404). Cluster
settings are accepted and reported back, not acted on: a collection's shard_number, replication_factor
and write_consistency_factor appear in its info as they were asked for, and `GET /standin/requests` (not
part of Qdrant's API) lists each request's method, path and query (read `consistency`, write `ordering`)
so tests can see what the service asked of a cluster.

    python -m tests.standins.qdrant_rest --port 6333 --path /tmp/qdrant-standin
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, TypeAdapter, ValidationError
from qdrant_client.http import models

from backend.adapters.edge_engine import EdgeEngine

# Reported by GET /: the protocol spoken is that of the qdrant-client the models come from (the client
# warns when its minor version is more than one away from the server's).
SERVER_VERSION = importlib.metadata.version("qdrant-client")


def _ok(result: Any, started: float) -> JSONResponse:
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json", exclude_none=True)
    elif isinstance(result, list):
        result = [r.model_dump(mode="json", exclude_none=True) if isinstance(r, BaseModel) else r for r in result]
    return JSONResponse({"result": result, "status": "ok", "time": time.perf_counter() - started})


def _error(status: int, message: str, started: float) -> JSONResponse:
    return JSONResponse({"status": {"error": message}, "time": time.perf_counter() - started}, status_code=status)


def create_standin(path: Path) -> FastAPI:
    engine = EdgeEngine(path)  # queried from the handlers' thread pool at once, as a server's shard is

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.close()

    app = FastAPI(title="STAND-IN Qdrant REST API (Qdrant Edge behind the wire protocol)", lifespan=lifespan)
    cluster: dict[str, dict[str, int]] = {}  # collection -> the cluster settings it was created with
    requests: deque[dict[str, Any]] = deque(maxlen=20_000)

    @app.middleware("http")
    async def record(request: Request, call_next: Callable[[Request], Any]) -> Any:
        requests.append({"method": request.method, "path": request.url.path, "query": dict(request.query_params)})
        return await call_next(request)

    @app.get("/standin/requests")
    def recorded() -> list[dict[str, Any]]:
        return list(requests)

    async def call(request: Request, fn: Callable[..., Any], body_type: Any = None) -> JSONResponse:
        started = time.perf_counter()
        try:
            body = TypeAdapter(body_type).validate_python(await request.json()) if body_type else None
        except (ValidationError, ValueError) as exc:
            return _error(400, f"Format error in JSON body: {exc}", started)
        try:
            result = fn(body) if body_type else fn()
        except ValueError as exc:  # the engine adapter's "not found" and bad-argument errors
            status = 404 if "not found" in str(exc).lower() else 400
            return _error(status, f"Bad request: {exc}", started)
        return _ok(result, started)

    @app.get("/")
    def root() -> dict[str, str]:
        return {"title": "qdrant - vector search engine (STAND-IN)", "version": SERVER_VERSION}

    @app.get("/healthz", response_class=PlainTextResponse)
    @app.get("/readyz", response_class=PlainTextResponse)
    @app.get("/livez", response_class=PlainTextResponse)
    def health() -> str:
        return "healthz check passed"

    @app.get("/collections")
    async def collections(request: Request) -> JSONResponse:
        return await call(request, lambda: engine.get_collections())

    @app.get("/collections/{name}/exists")
    async def exists(request: Request, name: str) -> JSONResponse:
        return await call(request, lambda: {"exists": engine.collection_exists(name)})

    @app.get("/collections/{name}")
    async def get_collection(request: Request, name: str) -> JSONResponse:
        def info() -> models.CollectionInfo:
            found = engine.get_collection(name)
            for key, value in cluster.get(name, {}).items():
                setattr(found.config.params, key, value)
            return found

        return await call(request, info)

    @app.put("/collections/{name}")
    async def create_collection(request: Request, name: str) -> JSONResponse:
        def create(b: models.CreateCollection) -> bool:
            if engine.collection_exists(name):
                raise ValueError(f"Wrong input: Collection `{name}` already exists!")
            asked = {"shard_number": b.shard_number, "replication_factor": b.replication_factor,
                     "write_consistency_factor": b.write_consistency_factor}  # fmt: skip
            cluster[name] = {k: v for k, v in asked.items() if v is not None}
            return engine.create_collection(name, vectors_config=b.vectors, sparse_vectors_config=b.sparse_vectors,
                                            metadata=b.metadata)  # fmt: skip

        return await call(request, create, models.CreateCollection)

    @app.patch("/collections/{name}")
    async def update_collection(request: Request, name: str) -> JSONResponse:
        def update(b: models.UpdateCollection) -> bool:
            return engine.update_collection(name, sparse_vectors_config=b.sparse_vectors, metadata=b.metadata,
                                            vectors_config=b.vectors)  # fmt: skip

        return await call(request, update, models.UpdateCollection)

    @app.delete("/collections/{name}")
    async def delete_collection(request: Request, name: str) -> JSONResponse:
        return await call(request, lambda: engine.delete_collection(name))

    @app.put("/collections/{name}/index")
    async def create_index(request: Request, name: str) -> JSONResponse:
        def create(b: models.CreateFieldIndex) -> models.UpdateResult:
            return engine.create_payload_index(name, b.field_name, b.field_schema)  # type: ignore[arg-type]

        return await call(request, create, models.CreateFieldIndex)

    @app.put("/collections/{name}/points")
    async def upsert(request: Request, name: str) -> JSONResponse:
        def put(b: models.PointsList) -> models.UpdateResult:
            return engine.upsert(name, b.points)

        return await call(request, put, models.PointsList)

    @app.post("/collections/{name}/points/delete")
    async def delete(request: Request, name: str) -> JSONResponse:
        return await call(request, lambda b: engine.delete(name, b), models.PointsSelector)

    @app.post("/collections/{name}/points/payload")
    async def set_payload(request: Request, name: str) -> JSONResponse:
        def put(b: models.SetPayload) -> models.UpdateResult:
            return engine.set_payload(name, b.payload, b.filter if b.filter is not None else (b.points or []), b.key)

        return await call(request, put, models.SetPayload)

    @app.post("/collections/{name}/points")
    async def retrieve(request: Request, name: str) -> JSONResponse:
        def get(b: models.PointRequest) -> list[models.Record]:
            return engine.retrieve(name, b.ids, with_payload=b.with_payload if b.with_payload is not None else False,
                                   with_vectors=b.with_vector if b.with_vector is not None else False)  # fmt: skip

        return await call(request, get, models.PointRequest)

    @app.post("/collections/{name}/points/scroll")
    async def scroll(request: Request, name: str) -> JSONResponse:
        def page(b: models.ScrollRequest) -> dict[str, Any]:
            points, offset = engine.scroll(
                name, scroll_filter=b.filter, limit=b.limit or 10, offset=b.offset, order_by=b.order_by,  # type: ignore[arg-type]
                with_payload=b.with_payload if b.with_payload is not None else True,
                with_vectors=b.with_vector if b.with_vector is not None else False,
            )  # fmt: skip
            return {"points": [p.model_dump(mode="json", exclude_none=True) for p in points],
                    "next_page_offset": offset}  # fmt: skip

        return await call(request, page, models.ScrollRequest)

    @app.post("/collections/{name}/points/count")
    async def count(request: Request, name: str) -> JSONResponse:
        return await call(request, lambda b: engine.count(name, count_filter=b.filter), models.CountRequest)

    def _query(name: str, b: models.QueryRequest) -> models.QueryResponse:
        return engine.query_points(
            name, query=b.query, using=b.using, prefetch=b.prefetch, query_filter=b.filter,  # type: ignore[arg-type]
            search_params=b.params, limit=b.limit or 10, offset=b.offset, score_threshold=b.score_threshold,
            with_payload=b.with_payload if b.with_payload is not None else False,
            with_vectors=b.with_vector if b.with_vector is not None else False, lookup_from=b.lookup_from,
        )  # fmt: skip

    @app.post("/collections/{name}/points/query")
    async def query(request: Request, name: str) -> JSONResponse:
        return await call(request, lambda b: _query(name, b), models.QueryRequest)

    @app.post("/collections/{name}/points/query/batch")
    async def query_batch(request: Request, name: str) -> JSONResponse:
        return await call(request, lambda b: [_query(name, q) for q in b.searches], models.QueryRequestBatch)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6333)
    parser.add_argument("--path", type=Path, required=True, help="folder of the engine's data (Qdrant Edge shards)")
    args = parser.parse_args()
    uvicorn.run(create_standin(args.path), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
