"""GET /spaces: every space with its size and embedding model; DELETE /spaces/{space}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam

from backend.api.deps import IngestDep, PrincipalDep, StatusDep, require_admin
from backend.api.errors import ERROR_RESPONSES
from backend.api.schemas import SpaceList, SpaceOut
from backend.config import SPACE_PATTERN

router = APIRouter(tags=["spaces"])


@router.get("/spaces", response_model=SpaceList)
async def list_spaces(status: StatusDep, principal: PrincipalDep) -> SpaceList:
    """The spaces this API key may read."""
    return SpaceList(
        spaces=[
            SpaceOut(
                name=s.name,
                documents=s.documents,
                chunks=s.chunks,
                embedding_model=s.embedding_model,
                dimension=s.dimension,
                schema_version=s.schema,
                lexical_analyzer=s.lexical,
                indexed_chunks=s.indexed_chunks,
                index_building=s.index_building,
            )
            for s in await status.spaces()
            if principal.can_read(s.name)
        ]
    )


@router.delete("/spaces/{space}", responses=ERROR_RESPONSES)
async def delete_space(
    space: Annotated[str, PathParam(pattern=SPACE_PATTERN)], ingest: IngestDep, principal: PrincipalDep
) -> dict[str, str]:
    """Delete a space with all its documents and chunks (used by `index_cli --recreate`). Needs admin."""
    require_admin(principal)
    await ingest.drop_space(space)
    return {"deleted": space}
