"""GET /spaces: every space with its size and embedding model."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import StatusDep
from backend.api.schemas import SpaceList, SpaceOut

router = APIRouter(tags=["spaces"])


@router.get("/spaces", response_model=SpaceList)
async def list_spaces(status: StatusDep) -> SpaceList:
    return SpaceList(spaces=[
        SpaceOut(
            name=s.name, documents=s.documents, chunks=s.chunks,
            embedding_model=s.embedding_model, dimension=s.dimension,
        )
        for s in await status.spaces()
    ])
