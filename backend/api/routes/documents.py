"""Documents of a space: upload (POST /documents), plan a folder sync, list, delete."""

from __future__ import annotations

import time
from pathlib import PurePosixPath
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, UploadFile

from backend.api.deps import IngestDep, PrincipalDep, SettingsDep, require_admin, require_read, require_write
from backend.api.errors import ERROR_RESPONSES, APIError
from backend.api.schemas import (
    DocumentList,
    DocumentOut,
    FileResultOut,
    PlanRequest,
    PlanResponse,
    UploadResponse,
)
from backend.config import SPACE_PATTERN
from backend.services.ingest import DocumentRecord, SourceFile
from backend.services.parsing import SUPPORTED_EXTENSIONS

DOCUMENT_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

router = APIRouter(prefix="/documents", tags=["documents"])

SpaceQuery = Annotated[str, Query(pattern=SPACE_PATTERN, description="Space name.")]


def clean_path(raw: str) -> str:
    """A document path as given by a client: relative, POSIX, no '..', no control characters."""
    if not raw or len(raw) > 1024 or any(ord(ch) < 32 for ch in raw):
        raise APIError(400, "invalid_path", f"invalid document path {raw[:80]!r}: 1-1024 printable characters")
    parts = [p for p in PurePosixPath(raw.replace("\\", "/")).parts if p not in ("/", ".")]
    if not parts or ".." in parts:
        raise APIError(400, "invalid_path", f"invalid document path {raw[:80]!r}: must be relative, without '..'")
    return "/".join(parts)


def _doc_out(r: DocumentRecord) -> DocumentOut:
    return DocumentOut(
        id=r.id,
        path=r.path,
        title=r.title,
        chunks=r.own_chunks,
        size=r.size,
        content_sha256=r.content_sha256,
        indexed_at=r.indexed_at,
        status="ready" if r.version else "pending",
        parent=r.parent,
        message=r.message,
        attachments=len(r.attachments),
    )


@router.post("", response_model=UploadResponse, responses=ERROR_RESPONSES)
async def upload(
    ingest: IngestDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    space_id: Annotated[str, Form(pattern=SPACE_PATTERN, description="Target space (created if new).")],
    files: Annotated[list[UploadFile], File(description=f"Files: {', '.join(SUPPORTED_EXTENSIONS)}.")],
    paths: Annotated[
        list[str] | None,
        Form(description="Optional document paths, one per file (default: the file names)."),
    ] = None,
    modified: Annotated[
        list[float] | None,
        Form(description="Optional modification times (unix seconds), one per file: what date filters match."),
    ] = None,
) -> UploadResponse:
    """Index uploaded files. Unchanged files are skipped; a re-uploaded path replaces its document."""
    require_write(principal, space_id)
    if len(files) > settings.max_files_per_upload:
        raise APIError(
            413,
            "too_many_files",
            f"{len(files)} files in one upload; the limit is {settings.max_files_per_upload} (MAX_FILES_PER_UPLOAD)",
        )
    if paths is not None and len(paths) != len(files):
        raise APIError(400, "paths_mismatch", f"{len(paths)} paths for {len(files)} files; send one path per file")
    if modified is not None and len(modified) != len(files):
        raise APIError(
            400, "modified_mismatch", f"{len(modified)} modification times for {len(files)} files; send one per file"
        )
    names = paths if paths is not None else [f.filename or "" for f in files]
    cleaned = [clean_path(n) for n in names]
    if len(set(cleaned)) != len(cleaned):
        raise APIError(400, "duplicate_path", "the same document path appears twice in one upload")
    times: list[float | None] = list(modified) if modified is not None else [None] * len(files)
    sources = [
        SourceFile(path, await f.read(), modified_at=t) for path, f, t in zip(cleaned, files, times, strict=True)
    ]
    start = time.perf_counter()
    results = await ingest.ingest(space_id, sources)
    out = [FileResultOut(**r.__dict__) for r in results]
    if all(r.status == "failed" for r in results):
        raise APIError(
            422,
            "no_indexable_file",
            "no file could be indexed: " + "; ".join(f"{r.path}: {r.reason}" for r in results),
            [r.model_dump() for r in out],
        )
    return UploadResponse(
        space=space_id,
        files=out,
        chunks_written=sum(r.chunks for r in results if r.status in ("new", "changed")),
        seconds=round(time.perf_counter() - start, 3),
    )


@router.post("/plan", response_model=PlanResponse, responses=ERROR_RESPONSES)
async def plan(body: PlanRequest, ingest: IngestDep, principal: PrincipalDep) -> PlanResponse:
    """Compare a folder manifest (path and sha256 of each file) with the space; changes nothing. Needs
    write access: it is the first step of a sync."""
    require_write(principal, body.space_id)
    manifest = {clean_path(e.path): e.sha256 for e in body.files}
    result = await ingest.plan(body.space_id, manifest)
    return PlanResponse(
        space=body.space_id,
        new=result.new,
        changed=result.changed,
        unchanged=result.unchanged,
        missing=[_doc_out(r) for r in result.missing],
    )


@router.get("", response_model=DocumentList, responses=ERROR_RESPONSES)
async def list_documents(space_id: SpaceQuery, ingest: IngestDep, principal: PrincipalDep) -> DocumentList:
    require_read(principal, space_id)
    records = await ingest.documents(space_id)
    return DocumentList(space=space_id, documents=[_doc_out(r) for r in sorted(records, key=lambda r: r.path)])


@router.delete("/{document_id}", response_model=DocumentOut, responses=ERROR_RESPONSES)
async def delete_document(
    # A UUID as GET /documents lists it: anything else is a 422 here, never a store error (a Qdrant server
    # and Qdrant Edge both refuse an id that is not a UUID).
    document_id: Annotated[str, Path(pattern=DOCUMENT_ID_PATTERN, description="Document id (from GET /documents).")],
    space_id: SpaceQuery,
    ingest: IngestDep,
    principal: PrincipalDep,
) -> DocumentOut:
    require_admin(principal)
    record = await ingest.delete_document(space_id, document_id)
    if record is None:
        raise APIError(404, "document_not_found", f"no document {document_id} in space {space_id!r}")
    return _doc_out(record)
