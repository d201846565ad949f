"""The planner's one entry point for the CLI and the API: inputs as the user writes them -> Plan -> dict."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from backend.services.gpu_plan.architecture import ConfigError, spec_from_config, spec_from_file
from backend.services.gpu_plan.catalogue import CATALOGUE, get_entry
from backend.services.gpu_plan.formats import FORMATS, FormatError, get_format, kv_bytes
from backend.services.gpu_plan.hardware import DEFAULT_GPU, HardwareError, get_gpu
from backend.services.gpu_plan.pair import PairPlan, plan_pair
from backend.services.gpu_plan.planner import GIB, ModelPlan, ModelRequest, Plan, Setup, make_plan

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
EMBEDDER_GIB = 2.0  # the backend's embedder on the GPU (EMBEDDING_DEVICE=cuda), one per stack


class PlanInputError(ValueError):
    """Inputs the planner cannot use; the message names the input and what to give instead."""


@dataclass
class PlanInputs:
    models: list[str | dict[str, Any]]  # "name[@format]", a config.json path (CLI), or {"name", "config"}
    format: str | None = None  # default for models without @format: the checkpoint's own
    max_model_len: int | None = None
    seqs: int = 1
    kv_cache_dtype: str = "auto"
    gpu: str = DEFAULT_GPU
    gpu_memory_gib: float | None = None
    gpu_bandwidth_gbs: float | None = None
    tensor_parallel_size: int = 1
    host_ram_gib: float | None = None
    reserve_gib: float | None = None  # default: EMBEDDER_GIB per model (each model is its own stack)
    cpu_offload_gb: float = 0
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    typical_tokens: int = 4096
    gpu_memory_utilization: float | None = None
    repos: list[str] = field(default_factory=list)  # checkpoint per model, overriding the catalogue's


def _resolve(item: str | dict[str, Any], inputs: PlanInputs, allow_paths: bool, repo: str) -> ModelRequest:
    format_name = inputs.format
    reasoning = ""
    if isinstance(item, dict):
        config = item.get("config")
        if not isinstance(config, dict):
            raise PlanInputError("an inline model needs 'config': the contents of its config.json")
        name = str(item.get("name") or config.get("_name_or_path") or "custom")
        spec = spec_from_config(config, name=name, hf_id=name)
        format_name = item.get("format") or format_name
        repo = repo or name
    else:
        text, _, at_format = item.partition("@")
        format_name = at_format or format_name
        if text.lower() in CATALOGUE:
            entry = get_entry(text)
            spec = entry.spec()
            reasoning = entry.reasoning_parser
            fmt_key = (format_name or spec.native_format).lower()
            repo = repo or entry.repos.get(fmt_key, "")
            if not repo and fmt_key == "fp8" and "bf16" in entry.repos:
                repo = entry.repos["bf16"]  # served with --quantization fp8 (quantised on load)
            if not repo and fmt_key == spec.native_format:
                repo = entry.hf_id
        elif allow_paths and (Path(text).is_file() or Path(text).is_dir()):
            spec = spec_from_file(Path(text))
            # A local folder is not a path inside the vLLM container: only a Hugging Face id is servable.
            repo = repo or (spec.hf_id if _HF_ID.match(spec.hf_id) else "")
        elif allow_paths:
            raise PlanInputError(
                f"{text!r} is neither a catalogue model ({', '.join(CATALOGUE)}) nor an existing config.json"
            )
        else:
            raise PlanInputError(f"unknown model {text!r}; choose one of {', '.join(CATALOGUE)}")
    fmt = get_format(format_name or spec.native_format)
    return ModelRequest(spec, fmt, inputs.max_model_len, inputs.seqs, repo, reasoning)


def build_plan(inputs: PlanInputs, allow_paths: bool = False) -> Plan:
    """Resolve the inputs and plan. Raises PlanInputError with a message a user can act on."""
    requests, setup = _resolve_all(inputs, allow_paths)
    try:
        return make_plan(requests, setup)
    except FormatError as exc:
        raise PlanInputError(str(exc)) from exc


def build_pair(inputs: PlanInputs, allow_paths: bool = False) -> PairPlan:
    """Two models on one card: together, or taking turns in sleep mode (gpu_plan.pair)."""
    if len(inputs.models) != 2:
        raise PlanInputError(f"--pair plans two models; got {len(inputs.models)}")
    if inputs.reserve_gib is None:  # one backend, so one embedder, serves both models
        inputs = replace(inputs, reserve_gib=EMBEDDER_GIB)
    requests, setup = _resolve_all(inputs, allow_paths)
    try:
        return plan_pair(requests, setup)
    except FormatError as exc:
        raise PlanInputError(str(exc)) from exc


def _resolve_all(inputs: PlanInputs, allow_paths: bool) -> tuple[list[ModelRequest], Setup]:
    if not inputs.models:
        raise PlanInputError("name at least one model")
    if inputs.repos and len(inputs.repos) != len(inputs.models):
        raise PlanInputError("give one --repo per model, in the same order")
    if inputs.seqs < 1 or (inputs.max_model_len is not None and inputs.max_model_len < 16):
        raise PlanInputError("seqs must be >= 1 and max_model_len >= 16 tokens")
    if inputs.tensor_parallel_size not in (1, 2, 4, 8):
        raise PlanInputError("tensor_parallel_size must be 1, 2, 4 or 8")
    if inputs.gpu_memory_utilization is not None and not 0 < inputs.gpu_memory_utilization <= 1:
        raise PlanInputError("gpu_memory_utilization must be in (0, 1]")
    if inputs.gpu_memory_utilization is not None and len(inputs.models) > 1:
        raise PlanInputError("gpu_memory_utilization applies to one model; with several the planner splits the card")
    try:
        repos = inputs.repos or [""] * len(inputs.models)
        requests = [_resolve(m, inputs, allow_paths, r) for m, r in zip(inputs.models, repos, strict=True)]
        gpu = get_gpu(inputs.gpu, inputs.gpu_memory_gib, inputs.gpu_bandwidth_gbs)
        kv_bytes(inputs.kv_cache_dtype, requests[0].format)  # validates the name
    except (ConfigError, FormatError, HardwareError) as exc:
        raise PlanInputError(str(exc)) from exc
    setup = Setup(
        gpu=gpu,
        tensor_parallel=inputs.tensor_parallel_size,
        kv_cache_dtype=inputs.kv_cache_dtype,
        cpu_offload_gib=inputs.cpu_offload_gb,
        host_ram_gib=inputs.host_ram_gib,
        reserve_gib=EMBEDDER_GIB * len(inputs.models) if inputs.reserve_gib is None else inputs.reserve_gib,
        max_num_batched_tokens=inputs.max_num_batched_tokens,
        max_num_seqs=inputs.max_num_seqs,
        typical_tokens=inputs.typical_tokens,
        gpu_memory_utilization=inputs.gpu_memory_utilization,
    )
    return requests, setup


# --- the answer as data ------------------------------------------------------------------------------


def _r(x: float, digits: int = 2) -> float:
    return round(x, digits)


def model_to_dict(mp: ModelPlan) -> dict[str, Any]:
    req, spec = mp.request, mp.request.spec
    d = mp.decode
    return {
        "model": spec.name,
        "checkpoint": req.repo or None,
        "format": req.format.name,
        "params_b": _r(mp.params / 1e9),
        "active_params_b": _r(mp.active_params / 1e9),
        "max_model_len": req.context,
        "seqs": req.seqs,
        "kv_cache_dtype_bytes": mp.kv_dtype_bytes,
        "memory_gib": {
            "weights": _r(mp.weights_gib),
            "cpu_offload": _r(mp.offload_gib),
            "activations": _r(mp.activation_gib),
            "non_torch": _r(mp.non_torch_gib),
            "kv_cache_needed": _r(req.seqs * mp.kv_gib_per_sequence),
            "total_needed": _r(mp.need_gib + mp.outside_gib),
            "outside_budget": _r(mp.outside_gib),
        },
        "kv_cache": {
            "bytes_per_token": round(mp.kv_bytes_per_token),
            "mib_per_sequence": _r(mp.kv_gib_per_sequence * 1024, 1),
            "available_gib": _r(mp.kv_available_gib),
            "tokens": mp.kv_cache_tokens,
            "max_concurrency_at_max_model_len": _r(mp.max_concurrency),
            "concurrency_at_typical_tokens": mp.concurrency_typical,
        },
        "gpu_memory_utilization": mp.gpu_memory_utilization,
        "fits": mp.fits,
        "largest_max_model_len": mp.largest_max_model_len,
        "recommended_max_num_seqs": mp.max_num_seqs,
        "decode_ceiling_tok_s": None
        if d is None
        else {
            "single_stream": round(d.single_stream_tok_s),
            "batch": d.batch,
            "batch_total": round(d.batch_tok_s),
            "offload_slowdown": _r(d.offload_slowdown, 1),
        },
        "notes": mp.notes,
    }


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    s = plan.setup
    return {
        "fits": plan.fits,
        "gpu": {
            "name": s.gpu.name,
            "memory_gib": s.gpu.memory_gib,
            "bandwidth_gbs": s.gpu.bandwidth_gbs,
            "count": s.tensor_parallel,
        },
        "assumptions": {
            "kv_cache_dtype": s.kv_cache_dtype,
            "tensor_parallel_size": s.tensor_parallel,
            "reserve_gib": s.reserve_gib,
            "host_ram_gib": s.host_ram_gib,
            "cpu_offload_gb": s.cpu_offload_gib,
            "max_num_batched_tokens": s.batched_tokens,
            "max_num_seqs_profiled": s.seqs_cap,
            "typical_tokens": s.typical_tokens,
        },
        "free_gib": _r(plan.free_gib),
        "deficit_gib": _r(plan.deficit_gib),
        "models": [model_to_dict(m) for m in plan.models],
        "fixes": [
            {"summary": f.summary, "changes": f.changes, "cost": f.cost, "plan": plan_to_dict(f.plan)}
            for f in plan.fixes
        ],
        "notes": plan.notes,
    }


def catalogue_to_list() -> list[dict[str, Any]]:
    out = []
    for entry in CATALOGUE.values():
        spec = entry.spec()
        out.append(
            {
                "model": entry.key,
                "hf_id": entry.hf_id,
                "description": entry.description,
                "params_b": _r(spec.params().total / 1e9),
                "native_format": spec.native_format,
                "max_position_embeddings": spec.max_position_embeddings,
                "kv_bytes_per_token_bf16": round(spec.kv_bytes_per_token(2)),
                "checkpoints": entry.repos,
            }
        )
    return out


__all__ = ["FORMATS", "GIB", "PlanInputError", "PlanInputs", "build_plan", "catalogue_to_list", "plan_to_dict"]


def pair_to_dict(pair: PairPlan) -> dict[str, Any]:
    return {
        "mode": pair.mode,
        "together": plan_to_dict(pair.together),
        "alone": [plan_to_dict(p) for p in pair.alone],
        "asleep_gib": [_r(x) for x in pair.asleep_gib],
        "wake_s_estimate": [_r(x, 1) for x in pair.wake_s],
        "host_ram_needed_gib": _r(pair.host_ram_needed_gib),
        "notes": pair.notes,
    }
