"""Popular open models as excerpts of their Hugging Face config.json (the fields memory depends on).

`repos` names a published checkpoint per weight format where one exists (the model's own organisation
first); a format without one is served by quantising on load (fp8) or needs a third-party checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend.services.gpu_plan.architecture import ConfigError, ModelSpec, spec_from_config


@dataclass(frozen=True)
class CatalogueEntry:
    key: str
    hf_id: str
    description: str
    config: dict[str, Any]
    repos: dict[str, str] = field(default_factory=dict)
    reasoning_parser: str = ""

    def spec(self) -> ModelSpec:
        return spec_from_config(self.config, name=self.key, hf_id=self.hf_id, description=self.description)


def _llama(
    layers: int, hidden: int, heads: int, kv: int, inter: int, vocab: int, ctx: int, **more: Any
) -> dict[str, Any]:
    return {
        "model_type": "llama", "num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": heads,
        "num_key_value_heads": kv, "head_dim": hidden // heads, "intermediate_size": inter, "vocab_size": vocab,
        "tie_word_embeddings": False, "max_position_embeddings": ctx, "torch_dtype": "bfloat16", **more,
    }  # fmt: skip


def _qwen3_moe(layers: int, hidden: int, heads: int, kv: int, experts: int, moe_inter: int) -> dict[str, Any]:
    # The 2507 Instruct releases: 262,144-token native context (the original Qwen3 MoE had 40,960).
    return _llama(layers, hidden, heads, kv, 6144, 151936, 262144, model_type="qwen3_moe", head_dim=128,
                  num_experts=experts, num_experts_per_tok=8, moe_intermediate_size=moe_inter)  # fmt: skip


def _gpt_oss(layers: int, experts: int) -> dict[str, Any]:
    return {
        "model_type": "gpt_oss", "num_hidden_layers": layers, "hidden_size": 2880, "num_attention_heads": 64,
        "num_key_value_heads": 8, "head_dim": 64, "intermediate_size": 2880, "num_local_experts": experts,
        "num_experts_per_tok": 4, "vocab_size": 201088, "tie_word_embeddings": False,
        "max_position_embeddings": 131072, "sliding_window": 128,
        "layer_types": ["sliding_attention", "full_attention"] * (layers // 2),
        "quantization_config": {"quant_method": "mxfp4"}, "torch_dtype": "bfloat16",
    }  # fmt: skip


_ENTRIES = (
    CatalogueEntry("llama-3.1-8b", "meta-llama/Llama-3.1-8B-Instruct", "Llama 3.1 8B Instruct",
                   _llama(32, 4096, 32, 8, 14336, 128256, 131072),
                   {"bf16": "meta-llama/Llama-3.1-8B-Instruct",
                    "awq": "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4"}),
    CatalogueEntry("llama-3.1-70b", "meta-llama/Llama-3.1-70B-Instruct", "Llama 3.1 70B Instruct",
                   _llama(80, 8192, 64, 8, 28672, 128256, 131072),
                   {"bf16": "meta-llama/Llama-3.1-70B-Instruct",
                    "awq": "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4"}),
    CatalogueEntry("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct", "Qwen2.5 7B Instruct",
                   _llama(28, 3584, 28, 4, 18944, 152064, 32768, model_type="qwen2"),
                   {"bf16": "Qwen/Qwen2.5-7B-Instruct", "awq": "Qwen/Qwen2.5-7B-Instruct-AWQ"}),
    CatalogueEntry("qwen2.5-72b", "Qwen/Qwen2.5-72B-Instruct", "Qwen2.5 72B Instruct",
                   _llama(80, 8192, 64, 8, 29568, 152064, 32768, model_type="qwen2"),
                   {"bf16": "Qwen/Qwen2.5-72B-Instruct", "awq": "Qwen/Qwen2.5-72B-Instruct-AWQ"}),
    CatalogueEntry("qwen3-8b", "Qwen/Qwen3-8B", "Qwen3 8B (thinking and non-thinking)",
                   _llama(36, 4096, 32, 8, 12288, 151936, 40960, model_type="qwen3"),
                   {"bf16": "Qwen/Qwen3-8B", "fp8": "Qwen/Qwen3-8B-FP8", "awq": "Qwen/Qwen3-8B-AWQ"}, "qwen3"),
    CatalogueEntry("qwen3-14b", "Qwen/Qwen3-14B", "Qwen3 14B",
                   _llama(40, 5120, 40, 8, 17408, 151936, 40960, model_type="qwen3"),
                   {"bf16": "Qwen/Qwen3-14B", "fp8": "Qwen/Qwen3-14B-FP8", "awq": "Qwen/Qwen3-14B-AWQ"}, "qwen3"),
    CatalogueEntry("qwen3-32b", "Qwen/Qwen3-32B", "Qwen3 32B",
                   _llama(64, 5120, 64, 8, 25600, 151936, 40960, model_type="qwen3", head_dim=128),
                   {"bf16": "Qwen/Qwen3-32B", "fp8": "Qwen/Qwen3-32B-FP8", "awq": "Qwen/Qwen3-32B-AWQ"}, "qwen3"),
    CatalogueEntry("qwen3-30b-a3b", "Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen3 30B-A3B MoE (3B active)",
                   _qwen3_moe(48, 2048, 32, 4, 128, 768),
                   {"bf16": "Qwen/Qwen3-30B-A3B-Instruct-2507", "fp8": "Qwen/Qwen3-30B-A3B-Instruct-2507-FP8",
                    "awq": "cpatonn/Qwen3-30B-A3B-Instruct-2507-AWQ-4bit"}),
    CatalogueEntry("qwen3-235b-a22b", "Qwen/Qwen3-235B-A22B-Instruct-2507", "Qwen3 235B-A22B MoE (22B active)",
                   _qwen3_moe(94, 4096, 64, 4, 128, 1536),
                   {"bf16": "Qwen/Qwen3-235B-A22B-Instruct-2507", "fp8": "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8",
                    "awq": "QuantTrio/Qwen3-235B-A22B-Instruct-2507-AWQ"}),
    CatalogueEntry("mistral-7b", "mistralai/Mistral-7B-Instruct-v0.3", "Mistral 7B Instruct v0.3",
                   _llama(32, 4096, 32, 8, 14336, 32768, 32768, model_type="mistral"),
                   {"bf16": "mistralai/Mistral-7B-Instruct-v0.3"}),
    CatalogueEntry("mixtral-8x7b", "mistralai/Mixtral-8x7B-Instruct-v0.1", "Mixtral 8x7B Instruct (MoE, 2 of 8)",
                   _llama(32, 4096, 32, 8, 14336, 32000, 32768, model_type="mixtral", num_local_experts=8,
                          num_experts_per_tok=2),
                   {"bf16": "mistralai/Mixtral-8x7B-Instruct-v0.1",
                    "awq": "TheBloke/Mixtral-8x7B-Instruct-v0.1-AWQ"}),
    CatalogueEntry("gpt-oss-20b", "openai/gpt-oss-20b", "gpt-oss 20B (MoE, MXFP4 experts)", _gpt_oss(24, 32),
                   {"mxfp4": "openai/gpt-oss-20b"}, "openai_gptoss"),
    CatalogueEntry("gpt-oss-120b", "openai/gpt-oss-120b", "gpt-oss 120B (MoE, MXFP4 experts)", _gpt_oss(36, 128),
                   {"mxfp4": "openai/gpt-oss-120b"}, "openai_gptoss"),
    CatalogueEntry("gemma-3-27b", "google/gemma-3-27b-it", "Gemma 3 27B IT (5 of 6 layers slide over 1,024 tokens)",
                   {"model_type": "gemma3", "torch_dtype": "bfloat16",
                    "text_config": {"model_type": "gemma3_text", "num_hidden_layers": 62, "hidden_size": 5376,
                                    "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128,
                                    "intermediate_size": 21504, "vocab_size": 262208, "tie_word_embeddings": True,
                                    "max_position_embeddings": 131072, "sliding_window": 1024,
                                    "sliding_window_pattern": 6},
                    "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                                      "patch_size": 14, "image_size": 896}},
                   {"bf16": "google/gemma-3-27b-it"}),
    CatalogueEntry("deepseek-r1-distill-qwen-32b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
                   "DeepSeek-R1 distilled into Qwen2.5 32B",
                   _llama(64, 5120, 40, 8, 27648, 152064, 131072, model_type="qwen2"),
                   {"bf16": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"}, "deepseek_r1"),
    CatalogueEntry("deepseek-v2-lite", "deepseek-ai/DeepSeek-V2-Lite-Chat", "DeepSeek-V2-Lite Chat (MLA, MoE 16B)",
                   _llama(27, 2048, 16, 16, 10944, 102400, 163840, model_type="deepseek_v2", kv_lora_rank=512,
                          q_lora_rank=None, qk_rope_head_dim=64, qk_nope_head_dim=128, v_head_dim=128,
                          n_routed_experts=64, n_shared_experts=2, num_experts_per_tok=6, moe_intermediate_size=1408,
                          first_k_dense_replace=1),
                   {"bf16": "deepseek-ai/DeepSeek-V2-Lite-Chat"}),
    CatalogueEntry("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2 135M Instruct (the test model)",
                   _llama(30, 576, 9, 3, 1536, 49152, 8192, tie_word_embeddings=True),
                   {"bf16": "HuggingFaceTB/SmolLM2-135M-Instruct"}),
)  # fmt: skip

CATALOGUE: dict[str, CatalogueEntry] = {e.key: e for e in _ENTRIES}


def get_entry(key: str) -> CatalogueEntry:
    try:
        return CATALOGUE[key.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown model {key!r}: give a catalogue name ({', '.join(CATALOGUE)}) or the path of a config.json"
        ) from None
