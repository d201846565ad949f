"""A model's shape as the memory maths needs it, read from a Hugging Face config.json.

The catalogue stores its models as config.json excerpts too, so one reader serves both and the catalogue
exercises it. Parameter counts are derived from the shape (not copied from model cards); tests hold them
against the published checkpoint sizes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config.json the planner cannot model; the message says which field and what to do."""


@dataclass(frozen=True)
class Attention:
    """What one token leaves in the KV cache of each layer."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    # MLA (DeepSeek V2/V3, Kimi K2): one compressed latent per token and layer instead of K and V.
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    q_lora_rank: int = 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    def kv_elements_per_token(self) -> int:
        """Per layer: vLLM stores K and V (2 x kv_heads x head_dim) or, for MLA, the latent + rope key."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim


@dataclass(frozen=True)
class Experts:
    """A mixture-of-experts MLP: `count` routed experts of width `intermediate`, `per_token` active."""

    count: int
    per_token: int
    intermediate: int
    shared_count: int = 0
    shared_intermediate: int = 0


@dataclass(frozen=True)
class ParamBreakdown:
    """Parameters by the part of the model they belong to (quantisation formats treat parts differently)."""

    embedding: int
    lm_head: int
    attention: int  # q/k/v/o projections (+ MLA's low-rank pieces)
    dense_mlp: int  # MLPs of dense layers and shared experts
    experts: int  # routed experts
    other: int  # norms, routers, biases: always kept in 16 bits
    extra: int  # vision tower and projector (multimodal checkpoints), kept in 16 bits

    @property
    def total(self) -> int:
        return self.embedding + self.lm_head + self.attention + self.dense_mlp + self.experts + self.other + self.extra


@dataclass(frozen=True)
class ModelSpec:
    name: str
    hf_id: str
    model_type: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool
    max_position_embeddings: int
    attention: Attention
    experts: Experts | None = None
    first_dense_layers: int = 0  # DeepSeek's first_k_dense_replace
    # Per layer: None = full attention, N = sliding window of N tokens.
    layer_windows: tuple[int | None, ...] = ()
    native_format: str = "bf16"
    extra_params: int = 0
    description: str = ""

    # --- parameters -------------------------------------------------------------------------------
    def params(self) -> ParamBreakdown:
        h, a = self.hidden_size, self.attention
        if a.is_mla:
            q_in = a.q_lora_rank if a.q_lora_rank else h
            q = (h * a.q_lora_rank if a.q_lora_rank else 0) + q_in * a.num_heads * (
                a.qk_nope_head_dim + a.qk_rope_head_dim
            )
            kv = h * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank * a.num_heads * (
                a.qk_nope_head_dim + a.v_head_dim
            )
            attn_per_layer = q + kv + a.num_heads * a.v_head_dim * h
        else:
            attn_per_layer = h * a.head_dim * (a.num_heads + 2 * a.num_kv_heads) + a.num_heads * a.head_dim * h
        dense_layers = self.num_layers if self.experts is None else self.first_dense_layers
        moe_layers = self.num_layers - dense_layers
        dense_mlp = dense_layers * 3 * h * self.intermediate_size
        experts = 0
        router = 0
        if self.experts is not None:
            e = self.experts
            experts = moe_layers * e.count * 3 * h * e.intermediate
            dense_mlp += moe_layers * e.shared_count * 3 * h * (e.shared_intermediate or e.intermediate)
            router = moe_layers * h * e.count
        norms = self.num_layers * 2 * h + h
        embedding = self.vocab_size * h
        return ParamBreakdown(
            embedding=embedding,
            lm_head=0 if self.tie_embeddings else embedding,
            attention=self.num_layers * attn_per_layer,
            dense_mlp=dense_mlp,
            experts=experts,
            other=norms + router,
            extra=self.extra_params,
        )

    def active_params_per_token(self) -> int:
        """Weights read to decode one token of one sequence: all but the routed experts not chosen and the
        embedding table (one row is read)."""
        p = self.params()
        routed = 0 if self.experts is None else p.experts * self.experts.per_token // self.experts.count
        output_matrix = p.lm_head or p.embedding  # tied models read the embedding table as the output layer
        return output_matrix + p.attention + p.dense_mlp + routed + p.other

    # --- KV cache -------------------------------------------------------------------------------
    def windows(self) -> tuple[int | None, ...]:
        return self.layer_windows or (None,) * self.num_layers

    def kv_bytes_per_token_per_layer(self, kv_bytes: float) -> float:
        return self.attention.kv_elements_per_token() * kv_bytes

    def kv_bytes_for_sequence(self, tokens: int, kv_bytes: float, block_size: int = 16) -> float:
        """KV cache one sequence of `tokens` needs. Sliding-window layers keep only the window (plus the
        block being filled), as vLLM's hybrid KV-cache manager allocates them."""
        per_layer = self.kv_bytes_per_token_per_layer(kv_bytes)
        total = 0.0
        for window in self.windows():
            kept = tokens if window is None else min(tokens, window + block_size)
            total += per_layer * kept
        return total

    def kv_bytes_per_token(self, kv_bytes: float) -> float:
        """Growth of a long sequence's KV per extra token: full-attention layers only."""
        return self.kv_bytes_per_token_per_layer(kv_bytes) * sum(1 for w in self.windows() if w is None)

    @property
    def sliding_layers(self) -> int:
        return sum(1 for w in self.windows() if w is not None)


# --- reading config.json --------------------------------------------------------------------------------


# Far above any real model; a config beyond them is a mistake or an attack on the planner's loops.
_LIMITS = {"num_hidden_layers": 2_000, "num_attention_heads": 10_000, "num_key_value_heads": 10_000,
           "vocab_size": 10_000_000, "max_position_embeddings": 100_000_000}  # fmt: skip
_LIMIT_DEFAULT = 10_000_000


def _int(cfg: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = cfg.get(key)
    if value is None:
        value = default
    if value is None:
        raise ConfigError(f"{where}: config.json has no '{key}', which the memory estimate needs")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{where}: '{key}' must be a non-negative number, got {value!r}")
    limit = _LIMITS.get(key, _LIMIT_DEFAULT)
    if value > limit:
        raise ConfigError(f"{where}: '{key}' = {value!r} is beyond any real model (at most {limit:,})")
    return int(value)


_QUANT_METHODS = {"fp8": "fp8", "awq": "awq", "gptq": "gptq", "mxfp4": "mxfp4", "bitsandbytes": "int4"}
_UNSUPPORTED_TYPES = {"mamba", "mamba2", "jamba", "falcon_h1", "qwen3_next", "bamba", "nemotron_h", "granitemoehybrid"}


def _native_format(cfg: dict[str, Any], where: str) -> str:
    quant = cfg.get("quantization_config")
    if isinstance(quant, dict) and quant:
        method = str(quant.get("quant_method", "")).lower()
        if method in ("awq", "gptq") and int(quant.get("bits", 4)) == 8:
            return "int8"
        if method in _QUANT_METHODS:
            return _QUANT_METHODS[method]
        if method == "compressed-tensors":
            text = json.dumps(quant).lower()
            if '"type": "float"' in text and '"num_bits": 8' in text:
                return "fp8"
            if '"num_bits": 4' in text:
                return "gptq"
            if '"num_bits": 8' in text:
                return "int8"
        raise ConfigError(
            f"{where}: quantization method {method!r} is not modelled; name the weight format with --format"
        )
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16")
    return {"float16": "fp16", "float32": "fp32"}.get(dtype, "bf16")


def _layer_windows(cfg: dict[str, Any], layers: int, where: str) -> tuple[int | None, ...]:
    window = cfg.get("sliding_window")
    kinds = cfg.get("layer_types")
    if isinstance(kinds, list) and kinds:
        if len(kinds) != layers:
            raise ConfigError(f"{where}: layer_types lists {len(kinds)} layers, num_hidden_layers says {layers}")
        odd = sorted({k for k in kinds if k not in ("full_attention", "sliding_attention")})
        if odd:
            raise ConfigError(
                f"{where}: layers of type {odd} (linear attention / state-space) are not modelled; "
                "the planner covers transformer attention (full, sliding window, MLA) only"
            )
        if any(k == "sliding_attention" for k in kinds) and not window:
            raise ConfigError(f"{where}: sliding_attention layers but no sliding_window size")
        size = int(window or 0)
        return tuple(size if k == "sliding_attention" else None for k in kinds)
    if not window or cfg.get("use_sliding_window") is False:
        return ()
    pattern = cfg.get("sliding_window_pattern")
    if isinstance(pattern, int) and pattern > 1:  # Gemma 2/3: every pattern-th layer is global
        return tuple(None if (i + 1) % pattern == 0 else int(window) for i in range(layers))
    return (int(window),) * layers  # Mistral 7B v0.1: every layer slides


def _vision_params(vision: dict[str, Any], text_hidden: int) -> int:
    """A ViT-style encoder (SigLIP in Gemma 3): per layer attention (4 h^2) + MLP (2 h i), patch and
    position embeddings, and a projector into the text width. An estimate for uncatalogued encoders."""
    h = int(vision.get("hidden_size", 0))
    if not h:
        return 0
    i = int(vision.get("intermediate_size", 4 * h))
    layers = int(vision.get("num_hidden_layers", 0))
    patch = int(vision.get("patch_size", 14))
    image = int(vision.get("image_size", 224))
    channels = int(vision.get("num_channels", 3))
    per_layer = 4 * h * h + 2 * h * i + 9 * h + i  # weights + biases + 2 layer norms
    return layers * per_layer + channels * patch * patch * h + (image // patch) ** 2 * h + h * text_hidden


def spec_from_config(config: dict[str, Any], name: str, hf_id: str = "", description: str = "") -> ModelSpec:
    """A ModelSpec from a config.json dict (multimodal configs: the text_config part plus the encoder)."""
    try:
        return _spec_from_config(config, name, hf_id, description)
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{name or 'config.json'}: a field has the wrong type or value ({exc})") from exc


def _spec_from_config(config: dict[str, Any], name: str, hf_id: str, description: str) -> ModelSpec:
    where = name or hf_id or "config.json"
    model_type = str(config.get("model_type", ""))
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    assert isinstance(text, dict)
    text_type = str(text.get("model_type", model_type))
    if model_type in _UNSUPPORTED_TYPES or text_type in _UNSUPPORTED_TYPES:
        raise ConfigError(
            f"{where}: model_type {text_type or model_type!r} mixes in state-space / linear-attention layers, "
            "whose cache the planner does not model"
        )
    hidden = _int(text, "hidden_size", where)
    heads = _int(text, "num_attention_heads", where)
    layers = _int(text, "num_hidden_layers", where)
    if not (hidden and heads and layers):
        raise ConfigError(f"{where}: hidden_size, num_attention_heads and num_hidden_layers must be positive")
    kv_heads = _int(text, "num_key_value_heads", where, default=heads)
    head_dim = _int(text, "head_dim", where, default=hidden // heads) or hidden // heads
    if text.get("kv_lora_rank"):
        attention = Attention(
            num_heads=heads,
            num_kv_heads=1,
            head_dim=head_dim,
            kv_lora_rank=_int(text, "kv_lora_rank", where),
            qk_rope_head_dim=_int(text, "qk_rope_head_dim", where),
            qk_nope_head_dim=_int(text, "qk_nope_head_dim", where),
            v_head_dim=_int(text, "v_head_dim", where),
            q_lora_rank=_int(text, "q_lora_rank", where, default=0) or 0,
        )
    else:
        attention = Attention(num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim)
    intermediate = _int(text, "intermediate_size", where, default=4 * hidden)
    count = text.get("num_experts") or text.get("num_local_experts") or text.get("n_routed_experts") or 0
    experts = None
    if count:
        experts = Experts(
            count=_int({"experts": count}, "experts", where),
            per_token=_int(text, "num_experts_per_tok", where, default=text.get("experts_per_token")),
            intermediate=_int(text, "moe_intermediate_size", where, default=intermediate),
            shared_count=int(text.get("n_shared_experts") or (1 if text.get("shared_expert_intermediate_size") else 0)),
            shared_intermediate=int(text.get("shared_expert_intermediate_size") or 0),
        )
    tie = text.get("tie_word_embeddings", config.get("tie_word_embeddings"))
    if tie is None:
        tie = text_type.startswith("gemma")  # transformers' own defaults for these families
    vision = config.get("vision_config")
    return ModelSpec(
        name=name,
        hf_id=hf_id,
        model_type=text_type,
        num_layers=layers,
        hidden_size=hidden,
        intermediate_size=intermediate,
        vocab_size=_int(text, "vocab_size", where),
        tie_embeddings=bool(tie),
        max_position_embeddings=_int(text, "max_position_embeddings", where, default=4096),
        attention=attention,
        experts=experts,
        first_dense_layers=_int(text, "first_k_dense_replace", where, default=0),
        layer_windows=_layer_windows(text, layers, where),
        native_format=_native_format(config, where),
        extra_params=_vision_params(vision, hidden) if isinstance(vision, dict) else 0,
        description=description,
    )


def spec_from_file(path: Path) -> ModelSpec:
    """Read a config.json (or a model folder holding one)."""
    if path.is_dir():
        path = path / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file; give a catalogue name or the path of a config.json") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON config ({exc})") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config.json holds a JSON object")
    name = str(config.get("_name_or_path") or path.parent.name or path.stem)
    return spec_from_config(config, name=name, hf_id=name)
