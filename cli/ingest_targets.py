"""Where index_cli sends its work: the store directly (LocalTarget) or a running service (RemoteTarget).

Embedded Qdrant can be opened by one process only, so while the service runs, index_cli hands the
same plan/ingest/delete steps to it over HTTP instead of meeting a lock error.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import httpx

from backend.adapters.store import DocumentRecord, StoreLockedError, VectorStore, document_id
from backend.config import Settings
from backend.container import build_ingest, check_space, load_embedder, open_store
from backend.observability import Metrics
from backend.services.ingest import FileResult, IngestService, ProgressCallback, SourceFile, SyncPlan


class TargetError(Exception):
    """The target refused or failed; the message is for the user."""


class IngestTarget(Protocol):
    description: str
    max_batch_bytes: int

    async def plan(self, space: str, manifest: dict[str, str]) -> SyncPlan: ...
    async def ingest(self, space: str, files: list[SourceFile], progress: ProgressCallback) -> list[FileResult]: ...
    async def delete(self, space: str, doc_id: str) -> None: ...
    async def drop_space(self, space: str) -> None: ...
    async def close(self) -> None: ...


class LocalTarget:
    def __init__(self, settings: Settings, store: VectorStore) -> None:
        self.store = store
        self.service: IngestService = build_ingest(settings, store, load_embedder(settings), Metrics())
        self.description = f"store {store.location}"
        self.max_batch_bytes = 16 * 1024 * 1024
        self.written: set[str] = set()

    async def plan(self, space: str, manifest: dict[str, str]) -> SyncPlan:
        if await self.store.space_exists(space):
            await check_space(self.store, self.service, space)
        return await self.service.plan(space, manifest)

    async def ingest(self, space: str, files: list[SourceFile], progress: ProgressCallback) -> list[FileResult]:
        self.written.add(space)
        return await self.service.ingest(space, files, on_progress=progress)

    async def delete(self, space: str, doc_id: str) -> None:
        await self.service.delete_document(space, doc_id)

    async def drop_space(self, space: str) -> None:
        if await self.store.space_exists(space):
            await self.service.drop_space(space)

    async def close(self) -> None:
        try:
            for space in sorted(self.written):  # here, in-process: nothing else waits (VectorStore.build_index_if_due)
                await self.store.build_index_if_due(space)
        finally:
            self.store.close()


class RemoteTarget:
    def __init__(self, base_url: str, max_upload_bytes: int) -> None:
        self.base_url = base_url.rstrip("/")
        self.description = f"service {self.base_url}"
        # Leave room for multipart framing under the service's body limit.
        self.max_batch_bytes = max(1, int(max_upload_bytes * 0.9))
        # The service's API key comes from the environment, never the command line (process lists show it).
        key = os.environ.get("RAG_API_KEY", "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(600, connect=5), headers=headers)

    async def plan(self, space: str, manifest: dict[str, str]) -> SyncPlan:
        body = {"space_id": space, "files": [{"path": p, "sha256": h} for p, h in manifest.items()]}
        data = await self._call("POST", "/documents/plan", json=body)
        missing = [
            DocumentRecord(
                id=d["id"],
                space=space,
                path=d["path"],
                title=d["title"],
                version=None,
                chunk_count=d["chunks"],
                size=d["size"],
                indexed_at=d["indexed_at"],
                content_sha256=d.get("content_sha256"),
            )
            for d in data["missing"]
        ]
        return SyncPlan(data["new"], data["changed"], data["unchanged"], missing)

    async def ingest(self, space: str, files: list[SourceFile], progress: ProgressCallback) -> list[FileResult]:
        # A file the service would refuse as a whole upload is reported here; the rest still go.
        too_big = [f for f in files if len(f.data) > self.max_batch_bytes]
        results = [
            FileResult(f.path, "failed", document_id(space, f.path), reason=(
                f"{len(f.data)} bytes: larger than the service accepts in one upload (MAX_UPLOAD_MB there)"))
            for f in too_big
        ]  # fmt: skip
        files = [f for f in files if len(f.data) <= self.max_batch_bytes]
        if files:
            form = [("files", (f.path.rsplit("/", 1)[-1], f.data)) for f in files]
            payload: dict[str, object] = {"space_id": space, "paths": [f.path for f in files]}
            if all(f.modified_at is not None for f in files):
                payload["modified"] = [str(f.modified_at) for f in files]
            resp = await self._send("POST", "/documents", data=payload, files=form)
            try:
                body = resp.json()
            except ValueError:
                raise TargetError(self._message(resp)) from None
            if resp.status_code == 422 and body.get("error", {}).get("code") == "no_indexable_file":
                rows = body["error"]["details"]
            elif resp.status_code == 200:
                rows = body["files"]
            else:
                raise TargetError(self._message(resp))
            results += [
                FileResult(r["path"], r["status"], r["document_id"], r["chunks"], r.get("reason"),
                           warnings=r.get("warnings") or [], reused=r.get("reused") or 0)
                for r in rows
            ]  # fmt: skip
        progress(len(results), sum(r.chunks for r in results if r.status in ("new", "changed")))
        return results

    async def delete(self, space: str, doc_id: str) -> None:
        await self._call("DELETE", f"/documents/{doc_id}", params={"space_id": space})

    async def drop_space(self, space: str) -> None:
        resp = await self._send("DELETE", f"/spaces/{space}")
        if resp.status_code not in (200, 404):
            raise TargetError(self._message(resp))

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = await self._send(method, path, **kwargs)
        if resp.status_code >= 400:
            raise TargetError(self._message(resp))
        return resp.json()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise TargetError(f"cannot reach the service at {self.base_url}: {exc}") from exc

    @staticmethod
    def _message(resp: httpx.Response) -> str:
        try:
            return f"service answered {resp.status_code}: {resp.json()['error']['message']}"
        except (ValueError, KeyError, TypeError):
            return f"service answered {resp.status_code}: {resp.text[:300]}"


async def service_alive(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            resp = await http.get(url.rstrip("/") + "/health")
            return resp.status_code == 200 and resp.json().get("service") == "rag-service"
    except (httpx.HTTPError, ValueError):
        return False


async def choose_target(settings: Settings, service_url: str | None) -> IngestTarget:
    """--service wins; else the store directly; if the embedded store is locked, the running service."""
    if service_url:
        if not await service_alive(service_url):
            raise TargetError(f"no RAG service answers at {service_url}/health")
        return RemoteTarget(service_url, settings.max_upload_bytes)
    try:
        store = open_store(settings)
    except StoreLockedError as exc:
        url = settings.resolved_service_url
        if await service_alive(url):
            return RemoteTarget(url, settings.max_upload_bytes)
        raise TargetError(f"{exc} No service answers at {url}; if it runs elsewhere, pass --service URL.") from exc
    return LocalTarget(settings, store)
