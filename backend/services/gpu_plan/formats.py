"""Weight formats: how many bits each part of a model takes on the GPU, and how vLLM is told about it."""

from __future__ import annotations

from dataclasses import dataclass

from backend.services.gpu_plan.architecture import ModelSpec, ParamBreakdown


@dataclass(frozen=True)
class WeightFormat:
    name: str
    label: str
    linear_bits: float  # attention, MLP and expert projections
    other_bits: float  # embeddings, output layer, norms, routers (kept in 16 bits by most schemes)
    experts_only: bool = False  # MXFP4 as in gpt-oss: only routed experts are 4-bit
    vllm_quantization: str = ""  # --quantization for a 16-bit checkpoint quantised on load ("" = none)
    quality_cost: int = 0  # rank used to pick the cheapest fix: 0 lossless ... 3 int4
    note: str = ""

    def weight_bytes(self, p: ParamBreakdown) -> float:
        if self.experts_only:
            quantised, kept = p.experts, p.total - p.experts
        elif self.other_bits == self.linear_bits:  # GGUF quantises embeddings and the output layer too
            quantised, kept = p.total - p.other - p.extra, p.other + p.extra
            return (quantised * self.linear_bits + kept * 16) / 8
        else:
            quantised = p.attention + p.dense_mlp + p.experts
            kept = p.total - quantised
        return (quantised * self.linear_bits + kept * self.other_bits) / 8


# AWQ/GPTQ int4 with group size 128: 4-bit weights + a 16-bit scale and a 4-bit zero point per 128 weights.
_INT4_GROUP128 = 4 + (16 + 4) / 128
# FP8 checkpoints (Qwen, DeepSeek) carry one fp32 scale per 128x128 block: negligible but counted.
_FP8_BLOCK = 8 + 32 / (128 * 128)

FORMATS: dict[str, WeightFormat] = {
    f.name: f
    for f in (
        WeightFormat("bf16", "BF16", 16, 16),
        WeightFormat("fp16", "FP16", 16, 16),
        WeightFormat("fp32", "FP32 (CPU only)", 32, 32),
        WeightFormat(
            "fp8", "FP8 (W8A8)", _FP8_BLOCK, 16, vllm_quantization="fp8", quality_cost=1,
            note="native FP8 compute on Ada, Hopper and Blackwell; weight-only (Marlin) on Ampere",
        ),
        WeightFormat("int8", "INT8 (W8A8/W8A16)", 8, 16, quality_cost=1, note="needs an INT8 checkpoint"),
        WeightFormat(
            "awq", "AWQ int4 (g128)", _INT4_GROUP128, 16, quality_cost=3,
            note="needs an AWQ checkpoint; vLLM detects it from the checkpoint",
        ),
        WeightFormat(
            "gptq", "GPTQ int4 (g128)", _INT4_GROUP128, 16, quality_cost=3,
            note="needs a GPTQ checkpoint; vLLM detects it from the checkpoint",
        ),
        WeightFormat(
            "mxfp4", "MXFP4 experts (gpt-oss)", 4.25, 16, experts_only=True, quality_cost=2,
            note="4-bit experts with one 8-bit scale per 32 weights; the rest BF16",
        ),
        WeightFormat(
            "gguf-q4_k_m", "GGUF Q4_K_M", 4.89, 4.89, quality_cost=3,
            note="vLLM's GGUF loader is experimental (single file); GGUF is Ollama's and llama.cpp's format",
        ),
        WeightFormat(
            "gguf-q8_0", "GGUF Q8_0", 8.5, 8.5, quality_cost=1,
            note="vLLM's GGUF loader is experimental (single file); GGUF is Ollama's and llama.cpp's format",
        ),
    )
}  # fmt: skip


class FormatError(ValueError):
    pass


def get_format(name: str) -> WeightFormat:
    try:
        return FORMATS[name.lower()]
    except KeyError:
        raise FormatError(f"unknown weight format {name!r}; choose one of {', '.join(FORMATS)}") from None


def weight_bytes(spec: ModelSpec, fmt: WeightFormat) -> float:
    if fmt.experts_only and spec.experts is None:
        raise FormatError(f"{fmt.name} quantises MoE experts only and {spec.name} has none; choose awq or fp8")
    return fmt.weight_bytes(spec.params())


# vLLM's own --kv-cache-dtype names (the value goes into VLLM_KV_CACHE_DTYPE as it is).
KV_DTYPES: dict[str, float] = {"fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "bfloat16": 2, "float16": 2}


def kv_bytes(kv_cache_dtype: str, fmt: WeightFormat) -> float:
    """Bytes per KV element. vLLM's `auto` follows the activation dtype: 16-bit for every format on a
    GPU (quantised weights still compute in BF16/FP16), 32-bit only for an FP32 model on CPU."""
    if kv_cache_dtype == "auto":
        return 4 if fmt.name == "fp32" else 2
    try:
        return KV_DTYPES[kv_cache_dtype]
    except KeyError:
        raise FormatError(f"unknown KV-cache dtype {kv_cache_dtype!r}; choose auto, {', '.join(KV_DTYPES)}") from None
