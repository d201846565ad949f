"""A plan as .env.vllm settings: the VLLM_* lines docker-compose.vllm.yml and docker/vllm-entrypoint.sh read.

Writing into an existing file replaces those keys in place and keeps every other line, so a user's
ports, tokens and comments survive. With several models each gets its own file (its own compose project).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from backend.services.gpu_plan.planner import ModelPlan, Plan


class EnvWriteError(ValueError):
    pass


def env_values(plan: Plan, index: int = 0, env_file_name: str = ".env.vllm") -> dict[str, str]:
    mp: ModelPlan = plan.models[index]
    req, setup = mp.request, plan.setup
    if not mp.fits or not plan.fits:
        raise EnvWriteError(
            f"{req.spec.name} does not fit as planned; re-run with one of the listed fixes before --write-env"
        )
    if not req.repo:
        raise EnvWriteError(
            f"no known {req.format.label} checkpoint of {req.spec.name}: give its Hugging Face id with --repo"
        )
    online_fp8 = req.format.name == "fp8" and not re.search(r"fp8", req.repo, re.IGNORECASE)
    values = {
        "VLLM_MODEL": req.repo,
        "VLLM_SERVED_MODEL_NAME": req.spec.name,
        "VLLM_GPU_MEMORY_UTILIZATION": f"{mp.gpu_memory_utilization:.2f}",
        "VLLM_MAX_MODEL_LEN": str(req.context),
        "VLLM_MAX_NUM_SEQS": str(mp.max_num_seqs),
        "VLLM_TENSOR_PARALLEL_SIZE": str(setup.tensor_parallel),
        "VLLM_QUANTIZATION": "fp8" if online_fp8 else "",
        "VLLM_KV_CACHE_DTYPE": setup.kv_cache_dtype,
        "VLLM_CPU_OFFLOAD_GB": f"{setup.cpu_offload_gib:g}",
        "VLLM_REASONING_PARSER": req.reasoning_parser,
        "VLLM_EXTRA_ARGS": f"--max-num-batched-tokens {setup.max_num_batched_tokens}"
        if setup.max_num_batched_tokens
        else "",
        # The backend budgets prompts from vLLM's reported window; this is its fallback.
        "LLM_CONTEXT_TOKENS": str(req.context),
        "STACK_ENV_FILE": env_file_name,
    }
    if len(plan.models) > 1:
        values["BACKEND_PORT"] = str(9000 + index)
    return values


def plan_header(plan: Plan, index: int) -> str:
    mp = plan.models[index]
    others = ", ".join(m.request.spec.name for i, m in enumerate(plan.models) if i != index)
    lines = [
        f"# --- written by `python -m cli.plan` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ---",
        f"# {mp.request.spec.name} ({mp.request.format.label}) on {plan.setup.gpu.name}: "
        f"{mp.kv_available_gib:.1f} GiB KV cache, {mp.max_concurrency:.1f} sequences of {mp.request.context:,} tokens",
    ]
    if others:
        lines.append(f"# Shares the card with: {others} (each model is its own stack: see docs/gpu-planning.md)")
    return "\n".join(lines)


def render(values: dict[str, str], existing: str | None, header: str) -> str:
    """`existing` with each key's first assignment replaced (a commented-out `# KEY=` too); keys it lacks
    are appended under `header`."""
    if existing is None:
        return header + "\n" + "".join(f"{k}={v}\n" for k, v in values.items())
    lines = existing.splitlines()
    missing = dict(values)
    for i, line in enumerate(lines):
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if match and match.group(1) in missing:
            key = match.group(1)
            lines[i] = f"{key}={missing.pop(key)}"
    text = "\n".join(lines).rstrip("\n") + "\n"
    if missing:
        text += "\n" + header + "\n" + "".join(f"{k}={v}\n" for k, v in missing.items())
    return text


def write_env(plan: Plan, path: Path) -> list[Path]:
    """Write (or update) `path` for the first model and `<path>.<model>` for the others; returns the files."""
    written = []
    for index, mp in enumerate(plan.models):
        target = path if index == 0 else path.with_name(f"{path.name}.{mp.request.spec.name}-{index + 1}")
        source = target if target.exists() else (path if path.exists() else None)
        existing = source.read_text(encoding="utf-8") if source else None
        values = env_values(plan, index, env_file_name=target.name)
        target.write_text(render(values, existing, plan_header(plan, index)), encoding="utf-8")
        written.append(target)
    return written
