"""GET /plan and POST /plan: the GPU memory planner (`python -m cli.plan`) over HTTP.

GET takes catalogue models as repeated `model=NAME[@FORMAT]` query parameters; POST takes the same fields
as JSON and also inline config.json objects. Paths on the server are not accepted: a caller plans with
what it sends, never with files that happen to lie on this machine.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import get_principal
from backend.api.errors import ERROR_RESPONSES, APIError
from backend.services.gpu_plan.hardware import DEFAULT_GPU
from backend.services.gpu_plan.service import PlanInputError, PlanInputs, build_plan, catalogue_to_list, plan_to_dict

# Any valid key may plan: it reads no space. The key is still needed (and rate-limited).
router = APIRouter(tags=["plan"], dependencies=[Depends(get_principal)])


class InlineModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    config: dict[str, Any] = Field(description="The model's config.json as an object.")
    format: str | None = Field(default=None, description="Weight format; default: what the config says.")


class PlanFields(BaseModel):
    """The planner's inputs; `python -m cli.plan --help` describes each."""

    model_config = ConfigDict(extra="forbid")
    format: str | None = Field(default=None, description="Weight format for models without @FORMAT.")
    max_model_len: int | None = Field(default=None, ge=16, le=10_000_000)
    seqs: int = Field(default=1, ge=1, le=65_536, description="Sequences that must fit at full length.")
    kv_cache_dtype: str = "auto"
    gpu: str = DEFAULT_GPU
    gpu_memory_gib: float | None = Field(default=None, gt=0, le=4096)
    gpu_bandwidth_gbs: float | None = Field(default=None, gt=0, le=100_000)
    tensor_parallel_size: int = Field(default=1, ge=1, le=8)
    host_ram_gib: float | None = Field(default=None, ge=0, le=1_000_000)
    reserve_gib: float | None = Field(default=None, ge=0, le=4096, description="Default: 2 GiB per model.")
    cpu_offload_gb: float = Field(default=0, ge=0, le=1_000_000)
    max_num_batched_tokens: int | None = Field(default=None, ge=16, le=10_000_000)
    max_num_seqs: int | None = Field(default=None, ge=1, le=65_536)
    typical_tokens: int = Field(default=4096, ge=16, le=10_000_000)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    repo: list[str] = Field(default_factory=list, max_length=8, description="Checkpoint per model.")


class PlanQuery(PlanFields):
    model: list[str] = Field(min_length=1, max_length=8, description="NAME[@FORMAT], repeatable.")


class PlanBody(PlanFields):
    model: list[str | InlineModel] = Field(min_length=1, max_length=8)


def _plan(fields: PlanFields, models: list[str | dict[str, Any]]) -> dict[str, Any]:
    values = fields.model_dump(exclude={"model", "repo"})
    try:
        plan = build_plan(PlanInputs(models=models, repos=fields.repo, **values))
    except PlanInputError as exc:
        raise APIError(422, "invalid_plan_input", str(exc)) from exc
    return plan_to_dict(plan)


# Plain `def`: planning is CPU work (milliseconds), so FastAPI runs it in its thread pool, off the event loop.
@router.get("/plan", responses=ERROR_RESPONSES)
def plan_get(query: Annotated[PlanQuery, Query()]) -> dict[str, Any]:
    """Whether the models fit the GPU under vLLM, the settings to use, and the cheapest fixes if not."""
    return _plan(query, list(query.model))


@router.post("/plan", responses=ERROR_RESPONSES)
def plan_post(body: PlanBody) -> dict[str, Any]:
    """As GET /plan; a model may also be `{"name", "config": <config.json>, "format"}`."""
    models: list[str | dict[str, Any]] = [m if isinstance(m, str) else m.model_dump() for m in body.model]
    return _plan(body, models)


@router.get("/plan/catalogue")
def plan_catalogue() -> list[dict[str, Any]]:
    """The models the planner knows by name, with their size and KV cache per token."""
    return catalogue_to_list()
