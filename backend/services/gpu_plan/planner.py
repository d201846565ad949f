"""Will these models fit on this GPU under vLLM, with which flags, and what to change when they do not.

vLLM's accounting (v1 `gpu_worker.determine_available_memory`): an instance may use
`gpu_memory_utilization x total`; inside that it holds the weights, the activation peak of a profiling
pass (`max_num_batched_tokens` tokens, plus logits for `max_num_seqs` sequences) and non-torch memory
(cuBLAS, NCCL); everything left is KV cache. Its CUDA context and CUDA graphs live outside that budget.
vLLM refuses to start unless the KV cache holds one `max_model_len` sequence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from backend.services.gpu_plan.architecture import ModelSpec
from backend.services.gpu_plan.formats import FORMATS, WeightFormat, kv_bytes, weight_bytes
from backend.services.gpu_plan.hardware import GPU

GIB = 1024**3
BLOCK_TOKENS = 16  # vLLM's default KV block on GPUs
# Per process, outside the utilisation budget: CUDA context (~0.5 GiB) and captured CUDA graphs (~1 GiB).
OUTSIDE_BUDGET_GIB = 1.5
# Inside the budget, besides weights and activations: vLLM's own profile of Llama-3-8B on an H100 showed
# 1.79 GiB (vllm-project/vllm#10511); tensor parallelism adds NCCL buffers (3.58 GiB at TP 2 there).
NON_TORCH_GIB = 1.8
NON_TORCH_TP_GIB = 1.8
HOST_RAM_KEPT_GIB = 16  # the OS, the RAG backend and vLLM's own CPU-side memory
UTILIZATION_STEP = 0.01


@dataclass(frozen=True)
class ModelRequest:
    spec: ModelSpec
    format: WeightFormat
    max_model_len: int | None = None  # None: the model's own maximum
    seqs: int = 1  # sequences that must fit at max_model_len at the same time
    repo: str = ""  # checkpoint to serve (empty: the spec's hf_id)
    reasoning_parser: str = ""

    @property
    def context(self) -> int:
        return self.max_model_len or self.spec.max_position_embeddings


@dataclass(frozen=True)
class Setup:
    gpu: GPU
    tensor_parallel: int = 1
    kv_cache_dtype: str = "auto"
    cpu_offload_gib: float = 0  # per GPU, as vLLM's --cpu-offload-gb
    host_ram_gib: float | None = None
    reserve_gib: float = 2.0  # other users of the card: the backend's embedder with EMBEDDING_DEVICE=cuda
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    typical_tokens: int = 4096  # one RAG request: system prompt + 5 chunks + question + answer
    gpu_memory_utilization: float | None = None  # single model only: check this value instead of choosing

    @property
    def batched_tokens(self) -> int:
        return self.max_num_batched_tokens or (8192 if self.gpu.large else 2048)

    @property
    def seqs_cap(self) -> int:
        return self.max_num_seqs or (1024 if self.gpu.large else 256)


@dataclass
class Decode:
    single_stream_tok_s: float
    batch: int
    batch_tok_s: float
    offload_slowdown: float = 1.0


@dataclass
class ModelPlan:
    request: ModelRequest
    kv_dtype_bytes: float
    params: int
    active_params: int
    weights_gib: float  # per GPU, resident
    offload_gib: float  # per GPU, streamed from host RAM
    activation_gib: float
    non_torch_gib: float
    outside_gib: float
    kv_bytes_per_token: float  # per GPU, all full-attention layers
    kv_gib_per_sequence: float  # per GPU, at max_model_len
    need_gib: float  # inside the budget for `seqs` full sequences
    gpu_memory_utilization: float = 0.0
    budget_gib: float = 0.0
    kv_available_gib: float = 0.0
    kv_cache_tokens: int = 0
    max_concurrency: float = 0.0  # full-length sequences the KV cache holds (vLLM logs the same figure)
    concurrency_typical: int = 0
    largest_max_model_len: int = 0
    max_num_seqs: int = 0
    fits: bool = False
    decode: Decode | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Fix:
    summary: str
    changes: dict[str, str]
    cost: float
    plan: Plan


@dataclass
class Plan:
    setup: Setup
    models: list[ModelPlan]
    fits: bool
    free_gib: float  # card memory nobody has claimed (after the reserve)
    deficit_gib: float
    fixes: list[Fix] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- the pieces --------------------------------------------------------------------------------------


def _kv_share(spec: ModelSpec, tp: int) -> float:
    """Share of a model's KV cache one GPU holds under tensor parallelism. KV heads are split across GPUs
    (replicated when there are fewer heads than GPUs); an MLA latent is replicated on every GPU."""
    if spec.attention.is_mla:
        return 1.0
    kv = spec.attention.num_kv_heads
    return max(kv / tp, 1) / kv


def activation_gib(spec: ModelSpec, setup: Setup) -> float:
    """Peak of vLLM's profiling pass: per batched token the residual stream, q/k/v/o and the MLP's
    gate/up/down widths (16-bit); plus fp32 logits and probabilities for every schedulable sequence.
    Reproduces vLLM's own 1.26 GiB for Llama-3-8B at 8,192 tokens / 256 sequences within 5%."""
    a, h, tp = spec.attention, spec.hidden_size, setup.tensor_parallel
    if spec.experts is None:
        ffn = spec.intermediate_size
    else:
        e = spec.experts
        ffn = e.per_token * e.intermediate + e.shared_count * (e.shared_intermediate or e.intermediate)
    per_token = 4 * h + ((a.num_heads + 2 * a.num_kv_heads) * a.head_dim + a.num_heads * a.head_dim + 3 * ffn) / tp
    logits = setup.seqs_cap * spec.vocab_size * 4 * 2
    return (setup.batched_tokens * per_token * 2 + logits) / GIB


def decode_ceiling(
    spec: ModelSpec, fmt: WeightFormat, setup: Setup, weights_total: float, kv_seq_bytes: float, batch: int
) -> Decode:
    """Upper bound on decode speed: each step reads the weights it uses once and each sequence's KV, at
    the card's peak bandwidth. Offloaded weights are read over PCIe where they lie (vLLM's UVA offloader,
    zero-copy): all of a dense model's, only the experts a step routes to of an MoE's. Real servers reach
    50-80% of the ceiling."""
    tp = setup.tensor_parallel
    p = spec.params()
    expert_bytes = p.experts * fmt.linear_bits / 8 if spec.experts else 0.0
    untied_embedding = p.embedding * fmt.other_bits / 8 if p.lm_head else 0.0  # only looked up, not read
    always = weights_total - expert_bytes - untied_embedding

    expert_fraction = expert_bytes / weights_total if weights_total else 0.0

    def step_seconds(b: int, offload_gib: float) -> float:
        share = 1.0
        if spec.experts:
            share = 1 - (1 - spec.experts.per_token / spec.experts.count) ** b  # experts any of b tokens hit
        read = (always + expert_bytes * share) / tp + b * kv_seq_bytes
        over_pcie = offload_gib * GIB * (expert_fraction * share + 1 - expert_fraction)
        return read / (setup.gpu.bandwidth_gbs * 1e9) + over_pcie / (setup.gpu.host_link_gbs * 1e9)

    one = step_seconds(1, setup.cpu_offload_gib)
    b = max(batch, 1)
    return Decode(
        single_stream_tok_s=1 / one,
        batch=b,
        batch_tok_s=b / step_seconds(b, setup.cpu_offload_gib),
        offload_slowdown=one / step_seconds(1, 0),
    )


def kv_cache_tokens(
    spec: ModelSpec, kv_dtype_bytes: float, available_bytes: float, max_model_len: int, share: float = 1.0
) -> int:
    """Tokens a KV cache of `available_bytes` holds, as vLLM logs it ("KV cache size: N tokens"): whole
    blocks of 16 tokens across all layers; a cache with sliding-window layers as concurrency x length."""
    if spec.sliding_layers == 0:
        per_block = spec.kv_bytes_per_token(kv_dtype_bytes) * share * BLOCK_TOKENS
        return int(max(available_bytes, 0) // per_block) * BLOCK_TOKENS
    per_seq = spec.kv_bytes_for_sequence(max_model_len, kv_dtype_bytes) * share
    return int(max(available_bytes, 0) / per_seq * max_model_len)


def _largest_len(spec: ModelSpec, kv_dtype: float, share: float, seqs: int, kv_available: float) -> int:
    """Largest max_model_len whose `seqs` sequences fit in `kv_available` bytes (capped at the model's)."""

    def fits(length: int) -> bool:
        return seqs * spec.kv_bytes_for_sequence(length, kv_dtype) * share <= kv_available

    limit = spec.max_position_embeddings
    if not fits(BLOCK_TOKENS):
        return 0
    if fits(limit):
        return limit
    lo, hi = BLOCK_TOKENS, limit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    step = 1024 if lo >= 8192 else 256 if lo >= 1024 else BLOCK_TOKENS
    return lo // step * step


def _model_costs(req: ModelRequest, setup: Setup) -> ModelPlan:
    spec, tp = req.spec, setup.tensor_parallel
    kvb = kv_bytes(setup.kv_cache_dtype, req.format)
    share = _kv_share(spec, tp)
    weights = weight_bytes(spec, req.format) / tp / GIB
    offload = min(setup.cpu_offload_gib, weights)
    per_seq = spec.kv_bytes_for_sequence(req.context, kvb) * share / GIB
    act = activation_gib(spec, setup)
    non_torch = NON_TORCH_GIB + (NON_TORCH_TP_GIB if tp > 1 else 0)
    return ModelPlan(
        request=req,
        kv_dtype_bytes=kvb,
        params=spec.params().total,
        active_params=spec.active_params_per_token(),
        weights_gib=weights - offload,
        offload_gib=offload,
        activation_gib=act,
        non_torch_gib=non_torch,
        outside_gib=OUTSIDE_BUDGET_GIB,
        kv_bytes_per_token=spec.kv_bytes_per_token(kvb) * share,
        kv_gib_per_sequence=per_seq,
        need_gib=weights - offload + act + non_torch + req.seqs * per_seq,
    )


def _fill(mp: ModelPlan, setup: Setup, utilization: float) -> None:
    """Everything that follows from the utilisation this instance gets."""
    req, spec, total = mp.request, mp.request.spec, setup.gpu.memory_gib
    share = _kv_share(spec, setup.tensor_parallel)
    mp.gpu_memory_utilization = utilization
    mp.budget_gib = utilization * total
    mp.kv_available_gib = mp.budget_gib - mp.weights_gib - mp.activation_gib - mp.non_torch_gib
    kv_avail = max(mp.kv_available_gib, 0.0) * GIB
    per_seq = mp.kv_gib_per_sequence * GIB
    mp.kv_cache_tokens = kv_cache_tokens(spec, mp.kv_dtype_bytes, kv_avail, req.context, share)
    mp.max_concurrency = kv_avail / per_seq if per_seq else 0.0
    typical = min(setup.typical_tokens, req.context)
    typical_bytes = spec.kv_bytes_for_sequence(typical, mp.kv_dtype_bytes) * share
    mp.concurrency_typical = int(kv_avail // typical_bytes) if typical_bytes else 0
    mp.largest_max_model_len = _largest_len(spec, mp.kv_dtype_bytes, share, req.seqs, kv_avail)
    mp.fits = mp.kv_available_gib > 0 and mp.max_concurrency >= req.seqs
    wanted = max(req.seqs, mp.concurrency_typical)
    mp.max_num_seqs = max(1, min(setup.seqs_cap, wanted if wanted < 16 else wanted // 8 * 8))
    weights_total = (mp.weights_gib + mp.offload_gib) * setup.tensor_parallel * GIB
    mp.decode = decode_ceiling(spec, req.format, setup, weights_total, typical_bytes, mp.max_num_seqs)


def _notes(mp: ModelPlan, setup: Setup) -> None:
    req, spec = mp.request, mp.request.spec
    if req.max_model_len and req.max_model_len > spec.max_position_embeddings:
        mp.notes.append(
            f"max_model_len {req.max_model_len:,} exceeds the model's {spec.max_position_embeddings:,} "
            "(vLLM refuses it unless RoPE scaling is configured)"
        )
    if spec.sliding_layers:
        window = next(w for w in spec.windows() if w is not None)
        mp.notes.append(
            f"{spec.sliding_layers} of {spec.num_layers} layers attend to the last {window:,} tokens only: "
            "their KV cache stops growing there (vLLM's hybrid KV-cache manager)"
        )
    if spec.attention.is_mla:
        mp.notes.append(
            f"MLA: one {spec.attention.kv_elements_per_token()}-element latent per token and layer "
            "(not 2 x heads x head_dim); replicated on every GPU under tensor parallelism"
        )
    if req.format.name in ("fp8",) and not setup.gpu.fp8:
        mp.notes.append(f"{setup.gpu.name} has no FP8 tensor cores: vLLM runs FP8 weights weight-only (Marlin)")
    if setup.kv_cache_dtype.startswith("fp8") and not setup.gpu.fp8:
        mp.notes.append("an FP8 KV cache on a card without FP8 support stores FP8 but computes in 16 bits")
    if req.format.note and req.format.name not in ("bf16", "fp16"):
        mp.notes.append(f"{req.format.label}: {req.format.note}")
    if spec.attention.num_heads % setup.tensor_parallel:
        mp.notes.append(
            f"tensor parallel {setup.tensor_parallel} does not divide {spec.attention.num_heads} attention heads: "
            "vLLM refuses it"
        )


def evaluate(requests: list[ModelRequest], setup: Setup) -> Plan:
    """One plan for the given models on one card (or `tensor_parallel` cards, each model spanning all)."""
    if not requests:
        raise ValueError("give at least one model")
    if setup.gpu_memory_utilization is not None and len(requests) > 1:
        raise ValueError("a fixed gpu_memory_utilization applies to one model; with several the planner splits")
    total = setup.gpu.memory_gib
    plans = [_model_costs(r, setup) for r in requests]
    available = total - setup.reserve_gib - sum(p.outside_gib for p in plans)
    spare = available - sum(p.need_gib for p in plans)
    if setup.gpu_memory_utilization is not None:
        _fill(plans[0], setup, setup.gpu_memory_utilization)
    else:
        # Spare memory goes to KV caches in proportion to what each model's sequences need; a shortfall
        # is shared in proportion to each model's whole need.
        weights = [p.kv_gib_per_sequence * p.request.seqs for p in plans] if spare >= 0 else [p.need_gib for p in plans]
        weight_sum = sum(weights) or 1.0
        for p, w in zip(plans, weights, strict=True):
            share_gib = p.need_gib + spare * w / weight_sum
            utilization = math.floor(share_gib / total / UTILIZATION_STEP + 1e-9) * UTILIZATION_STEP
            _fill(p, setup, round(max(utilization, 0.0), 2))
    for p in plans:
        _notes(p, setup)
    claimed = sum(p.budget_gib + p.outside_gib for p in plans)
    fits = all(p.fits for p in plans) and claimed <= total - setup.reserve_gib + 1e-9
    deficit = max(0.0, -spare) if setup.gpu_memory_utilization is None else max(0.0, -plans[0].kv_available_gib)
    if not fits and deficit == 0.0:  # utilisation rounding or a fixed utilisation left it short
        deficit = max(max(0.0, p.request.seqs * p.kv_gib_per_sequence - max(p.kv_available_gib, 0)) for p in plans)
    plan = Plan(setup, plans, fits, free_gib=total - setup.reserve_gib - claimed, deficit_gib=deficit)
    if claimed > total - setup.reserve_gib + 1e-9:
        most = math.floor((total - setup.reserve_gib - OUTSIDE_BUDGET_GIB) / total * 100) / 100
        plan.deficit_gib = max(plan.deficit_gib, claimed - (total - setup.reserve_gib))
        plan.notes.append(
            f"gpu_memory_utilization {setup.gpu_memory_utilization} leaves no room for vLLM's CUDA context and graphs "
            f"({OUTSIDE_BUDGET_GIB:g} GiB) and the {setup.reserve_gib:g} GiB reserve: at most {most:.2f} on this card"
        )
    if setup.cpu_offload_gib and setup.host_ram_gib is not None:
        host_need = setup.cpu_offload_gib * setup.tensor_parallel * len(plans)
        if host_need > setup.host_ram_gib - HOST_RAM_KEPT_GIB:
            plan.fits = False
            plan.notes.append(
                f"cpu_offload_gb needs {host_need:g} GiB of host RAM; {setup.host_ram_gib:g} GiB minus "
                f"{HOST_RAM_KEPT_GIB} GiB for the system leaves too little"
            )
    return plan


# --- making it fit -------------------------------------------------------------------------------------

_SMALLER_FORMATS = ("fp8", "awq")


def _describe_change(base: Setup, setup: Setup, formats: list[str], base_formats: list[str]) -> dict[str, str]:
    changes: dict[str, str] = {}
    if setup.kv_cache_dtype != base.kv_cache_dtype:
        changes["kv_cache_dtype"] = setup.kv_cache_dtype
    if formats != base_formats:
        changes["format"] = ",".join(sorted(set(formats)))
    if setup.tensor_parallel != base.tensor_parallel:
        changes["tensor_parallel_size"] = str(setup.tensor_parallel)
    if setup.cpu_offload_gib != base.cpu_offload_gib:
        changes["cpu_offload_gb"] = f"{setup.cpu_offload_gib:g}"
    return changes


def _summary(changes: dict[str, str], plan: Plan) -> str:
    parts = []
    if "kv_cache_dtype" in changes:
        parts.append("FP8 KV cache (half the KV memory, small quality cost)")
    if "format" in changes:
        parts.append(f"{changes['format']} weights")
    if "cpu_offload_gb" in changes:
        slow = plan.models[0].decode.offload_slowdown if plan.models[0].decode else 1.0
        parts.append(f"cpu_offload_gb {changes['cpu_offload_gb']} (decode about {slow:.1f}x slower: PCIe)")
    if "tensor_parallel_size" in changes:
        parts.append(f"tensor parallel over {changes['tensor_parallel_size']} GPUs")
    if "max_model_len" in changes:
        parts.append(f"max_model_len {int(changes['max_model_len']):,}")
    return " + ".join(parts)


def find_fixes(requests: list[ModelRequest], setup: Setup, limit: int = 4, base: Plan | None = None) -> list[Fix]:
    """The cheapest changes that make the plan fit, cheapest first. Cost: each quality step of the KV cache
    or weights (FP8 1, 4-bit 3), offloading by its slowdown, and 8 per extra GPU."""
    base_formats = [r.format.name for r in requests]
    kv_options = [setup.kv_cache_dtype]
    if kv_bytes(setup.kv_cache_dtype, requests[0].format) > 1:
        kv_options.append("fp8")
    format_options: list[list[str]] = [base_formats]
    for name in _SMALLER_FORMATS:
        candidate = [name if FORMATS[name].quality_cost > r.format.quality_cost else r.format.name for r in requests]
        smaller = any(
            weight_bytes(r.spec, FORMATS[c]) < 0.9 * weight_bytes(r.spec, r.format)
            for r, c in zip(requests, candidate, strict=True)
            if not (FORMATS[c].experts_only and r.spec.experts is None)
        )
        if smaller and candidate not in format_options:
            format_options.append(candidate)
    tp_options = [setup.tensor_parallel] + [n for n in (2, 4, 8) if n > setup.tensor_parallel]
    fixes: list[Fix] = []
    for kv in kv_options:
        for formats in format_options:
            reqs = [
                replace(r, format=FORMATS[f], repo=r.repo if f == r.format.name else "")
                for r, f in zip(requests, formats, strict=True)
            ]
            for tp in tp_options:
                if any(r.spec.attention.num_heads % tp for r in reqs):
                    continue
                trial = replace(setup, kv_cache_dtype=kv, tensor_parallel=tp)
                quality = (kv != setup.kv_cache_dtype) + sum(
                    max(0, FORMATS[f].quality_cost - r.format.quality_cost)
                    for r, f in zip(requests, formats, strict=True)
                )
                cost: float = quality + 8 * (tp - setup.tensor_parallel)
                plan = evaluate(reqs, trial)
                if not plan.fits and setup.host_ram_gib is not None:
                    for margin in (1, 2, 4):  # utilisation rounds down to 1% of the card
                        offload = math.ceil(plan.deficit_gib / len(reqs)) + margin
                        if offload * tp * len(reqs) > setup.host_ram_gib - HOST_RAM_KEPT_GIB:
                            break
                        with_offload = evaluate(reqs, replace(trial, cpu_offload_gib=setup.cpu_offload_gib + offload))
                        if with_offload.fits:
                            plan = with_offload
                            decode = plan.models[0].decode
                            cost += 2 * (decode.offload_slowdown if decode else 1.0)
                            break
                if plan.fits and (kv, formats, tp) != (setup.kv_cache_dtype, base_formats, setup.tensor_parallel):
                    changes = _describe_change(setup, plan.setup, formats, base_formats)
                    fixes.append(Fix(_summary(changes, plan), changes, cost, plan))
    # The free fix: a shorter context, when the weights fit and a useful length remains.
    base = base or evaluate(requests, setup)
    shortest = min(p.largest_max_model_len for p in base.models)
    if not base.fits and shortest >= 4096 and len(requests) == 1:
        shorter = [replace(r, max_model_len=shortest) for r in requests]
        plan = evaluate(shorter, setup)
        if plan.fits:
            changes = {"max_model_len": str(shortest)}
            fixes.append(Fix(_summary(changes, plan), changes, 0.5, plan))
    # A fix that adds changes to a cheaper fitting fix is no better: drop it.
    fixes.sort(key=lambda f: f.cost)
    fixes = [
        f for i, f in enumerate(fixes)
        if not any(set(g.changes.items()) < set(f.changes.items()) for g in fixes[:i])
    ]  # fmt: skip
    # The cheapest fix of each kind, so that a user with one card and spare RAM sees the offloading option
    # even when a second GPU would be cheaper in our ranking.
    fixes.sort(key=lambda f: f.cost)
    kinds: dict[str, Callable[[Fix], bool]] = {
        "this card": lambda f: "tensor_parallel_size" not in f.changes and "cpu_offload_gb" not in f.changes,
        "offload": lambda f: "tensor_parallel_size" not in f.changes and "cpu_offload_gb" in f.changes,
        "more GPUs": lambda f: "tensor_parallel_size" in f.changes,
    }
    chosen = [next(f for f in fixes if test(f)) for test in kinds.values() if any(test(f) for f in fixes)]
    chosen += [f for f in fixes if f not in chosen][: max(0, limit - len(chosen))]
    return sorted(chosen, key=lambda f: f.cost)


def make_plan(requests: list[ModelRequest], setup: Setup) -> Plan:
    plan = evaluate(requests, setup)
    only_the_utilization = setup.gpu_memory_utilization is not None and all(m.fits for m in plan.models)
    if not plan.fits and not only_the_utilization:
        plan.fixes = find_fixes(requests, setup, base=plan)
        if setup.host_ram_gib is None:
            plan.notes.append("give the host RAM (--host-ram-gib) to have CPU offloading considered")
    return plan
