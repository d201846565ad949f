"""The GPU planner against published figures: checkpoint sizes, KV-cache sizes, vLLM's own logs, known fits."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from backend.services.gpu_plan.architecture import ConfigError, spec_from_config, spec_from_file
from backend.services.gpu_plan.catalogue import CATALOGUE, get_entry
from backend.services.gpu_plan.envfile import EnvWriteError, env_values, render, write_env
from backend.services.gpu_plan.formats import FORMATS, get_format, weight_bytes
from backend.services.gpu_plan.hardware import GPU, get_gpu
from backend.services.gpu_plan.planner import (
    GIB,
    ModelRequest,
    Setup,
    evaluate,
    find_fixes,
    kv_cache_tokens,
    make_plan,
)
from backend.services.gpu_plan.service import PlanInputError, PlanInputs, build_plan

# Checkpoint sizes as published (GB = 1e9 bytes): the safetensors totals on each model's Hugging Face page,
# i.e. 2 bytes x the parameter count the model card states for BF16 checkpoints; gpt-oss from OpenAI's
# model card (12.8 / 60.8 GiB); GGUF files from bartowski/Meta-Llama-3.1-8B-Instruct-GGUF.
PUBLISHED_GB = {
    ("llama-3.1-8b", "bf16"): 16.06,
    ("llama-3.1-70b", "bf16"): 141.1,
    ("qwen2.5-7b", "bf16"): 15.23,
    ("qwen2.5-72b", "bf16"): 145.4,
    ("qwen3-8b", "bf16"): 16.4,
    ("qwen3-14b", "bf16"): 29.5,
    ("qwen3-32b", "bf16"): 65.5,
    ("qwen3-30b-a3b", "bf16"): 61.1,
    ("qwen3-235b-a22b", "bf16"): 470.0,
    ("mistral-7b", "bf16"): 14.5,
    ("mixtral-8x7b", "bf16"): 93.4,
    ("gpt-oss-20b", "mxfp4"): 12.8 * GIB / 1e9,
    ("gpt-oss-120b", "mxfp4"): 60.8 * GIB / 1e9,
    ("gemma-3-27b", "bf16"): 54.9,
    ("deepseek-r1-distill-qwen-32b", "bf16"): 65.5,
    ("deepseek-v2-lite", "bf16"): 31.4,
    ("smollm2-135m", "bf16"): 0.269,
    ("llama-3.1-8b", "gguf-q4_k_m"): 4.92,
    ("llama-3.1-8b", "gguf-q8_0"): 8.54,
}
RTX_PRO_6000 = get_gpu("rtx-pro-6000")


def request(model: str, fmt: str | None = None, max_model_len: int | None = None, seqs: int = 1) -> ModelRequest:
    spec = get_entry(model).spec()
    return ModelRequest(spec, get_format(fmt or spec.native_format), max_model_len, seqs, repo="org/x")


def test_every_catalogue_model_has_a_published_size_to_check() -> None:
    assert {m for m, _ in PUBLISHED_GB} == set(CATALOGUE)


@pytest.mark.parametrize(("model", "fmt"), sorted(PUBLISHED_GB))
def test_checkpoint_size_within_3_percent_of_the_published_one(model: str, fmt: str) -> None:
    spec = get_entry(model).spec()
    size_gb = weight_bytes(spec, FORMATS[fmt]) / 1e9
    assert size_gb == pytest.approx(PUBLISHED_GB[(model, fmt)], rel=0.03)


@pytest.mark.parametrize(
    ("model", "bytes_per_token"),
    [
        ("llama-3.1-8b", 2 * 32 * 8 * 128 * 2),  # 128 KiB
        ("llama-3.1-70b", 2 * 80 * 8 * 128 * 2),  # 320 KiB
        ("qwen3-30b-a3b", 2 * 48 * 4 * 128 * 2),
        ("qwen3-235b-a22b", 2 * 94 * 4 * 128 * 2),
        ("mixtral-8x7b", 2 * 32 * 8 * 128 * 2),
        ("smollm2-135m", 23_040),  # the figure vLLM's log implies (issue #6)
    ],
)
def test_kv_cache_per_token_is_2_x_layers_x_kv_heads_x_head_dim_x_bytes(model: str, bytes_per_token: int) -> None:
    assert get_entry(model).spec().kv_bytes_per_token(2) == bytes_per_token


def test_the_vllm_cpu_log_for_smollm2_in_bf16() -> None:
    """vLLM on CPU with VLLM_CPU_KVCACHE_SPACE=1 logged 46,592 tokens for SmolLM2-135M in bf16."""
    line = "CPU KV cache size: 46,592 tokens, Maximum concurrency for 2,048 tokens per request: 22.75x"
    logged = int(re.search(r"KV cache size: ([\d,]+) tokens", line).group(1).replace(",", ""))  # type: ignore[union-attr]
    spec = get_entry("smollm2-135m").spec()
    assert kv_cache_tokens(spec, 2, 1 * GIB, 2048) == logged
    assert 1 * GIB / logged == pytest.approx(23_040, rel=0.001)  # up to the rounding to whole 16-token blocks


def test_sliding_window_layers_stop_growing_at_the_window() -> None:
    oss = get_entry("gpt-oss-120b").spec()  # 36 layers, every other one slides over 128 tokens
    assert oss.sliding_layers == 18
    per_layer = 2 * 8 * 64 * 2
    assert oss.kv_bytes_per_token(2) == 18 * per_layer
    assert oss.kv_bytes_for_sequence(131_072, 2) == 18 * per_layer * 131_072 + 18 * per_layer * (128 + 16)
    gemma = get_entry("gemma-3-27b").spec()  # 5 of every 6 layers slide over 1,024 tokens
    assert (gemma.sliding_layers, gemma.num_layers) == (52, 62)
    full = gemma.kv_bytes_for_sequence(131_072, 2)
    as_if_all_full = gemma.num_layers * 2 * 16 * 128 * 2 * 131_072
    assert full < as_if_all_full / 5
    mistral_v01 = spec_from_config(
        {"hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 32,
         "intermediate_size": 14336, "vocab_size": 32000, "sliding_window": 4096}, name="mistral-v0.1")  # fmt: skip
    assert mistral_v01.kv_bytes_for_sequence(32_768, 2) == mistral_v01.kv_bytes_for_sequence(4096 + 16, 2)


def test_mla_stores_one_latent_per_token_and_layer() -> None:
    lite = get_entry("deepseek-v2-lite").spec()
    assert lite.attention.is_mla
    assert lite.kv_bytes_per_token(2) == 27 * (512 + 64) * 2
    plan = evaluate([request("deepseek-v2-lite")], Setup(gpu=RTX_PRO_6000, tensor_parallel=2))
    assert plan.models[0].kv_bytes_per_token == lite.kv_bytes_per_token(2)  # replicated, not split, under TP
    assert any("MLA" in n for n in plan.models[0].notes)


def test_state_space_and_linear_attention_models_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="state-space / linear-attention"):
        spec_from_config({"model_type": "qwen3_next", "hidden_size": 2048}, name="q")
    config = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 10,
              "layer_types": ["linear_attention", "full_attention"]}  # fmt: skip
    with pytest.raises(ConfigError, match=r"\['linear_attention'\].*not modelled"):
        spec_from_config(config, name="hybrid")


def test_config_json_files_are_read_with_their_quantisation(tmp_path: Path) -> None:
    folder = tmp_path / "Qwen3-8B-FP8"
    folder.mkdir()
    config = dict(
        CATALOGUE["qwen3-8b"].config, quantization_config={"quant_method": "fp8", "weight_block_size": [128, 128]}
    )
    (folder / "config.json").write_text(json.dumps(config))
    spec = spec_from_file(folder)
    assert spec.native_format == "fp8" and spec.params().total == CATALOGUE["qwen3-8b"].spec().params().total
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable JSON config"):
        spec_from_file(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="no such file"):
        spec_from_file(tmp_path / "missing.json")
    weird = dict(CATALOGUE["qwen3-8b"].config, quantization_config={"quant_method": "exl2"})
    with pytest.raises(ConfigError, match="'exl2' is not modelled; name the weight format with --format"):
        spec_from_config(weird, name="w")


def test_vllms_own_memory_profile_of_llama_3_8b_on_an_h100() -> None:
    """vllm-project/vllm#10511: H100 (79.22 GiB), utilisation 0.90, 8,192 batched tokens, 256 sequences:
    weights 14.96 GiB, activation peak 1.26 GiB, non-torch 1.79 GiB, KV cache 53.29 GiB."""
    llama3_8b = ModelRequest(get_entry("llama-3.1-8b").spec(), FORMATS["bf16"], 8192)
    setup = Setup(gpu=get_gpu("h100-80gb"), gpu_memory_utilization=0.90, max_num_batched_tokens=8192,
                  max_num_seqs=256, reserve_gib=0)  # fmt: skip
    mp = evaluate([llama3_8b], setup).models[0]
    assert mp.weights_gib == pytest.approx(14.96, abs=0.02)
    assert mp.activation_gib == pytest.approx(1.26, rel=0.05)
    assert mp.kv_available_gib == pytest.approx(53.29, rel=0.01)


@pytest.mark.parametrize(
    ("models", "gpu", "max_model_len", "fits"),
    [
        (["llama-3.1-70b@fp8"], "l40s", 4096, False),  # the "70B FP8 in 48 GB" claim: 65.7 GiB of weights
        (["llama-3.1-70b@bf16"], "rtx-pro-6000", 8192, False),  # 131 GiB of weights
        (["llama-3.1-70b@fp8"], "rtx-pro-6000", 32_768, True),
        (["llama-3.1-70b@awq"], "rtx-pro-6000", 131_072, True),
        (["gpt-oss-120b"], "h100-80gb", 131_072, True),  # OpenAI: "fits into a single 80GB GPU"
        (["gpt-oss-20b"], "rtx-4090", 131_072, True),
        (["llama-3.1-8b@bf16"], "rtx-4090", 8192, True),
        (["qwen3-32b@bf16"], "rtx-4090", 4096, False),
        (["qwen3-30b-a3b@bf16", "qwen3-30b-a3b@bf16"], "rtx-pro-6000", 32_768, False),
        (["qwen3-30b-a3b@fp8", "qwen3-30b-a3b@fp8"], "rtx-pro-6000", 32_768, True),
        (["qwen3-30b-a3b@awq", "qwen3-30b-a3b@awq"], "rtx-pro-6000", 32_768, True),
        (["qwen3-235b-a22b@awq"], "rtx-pro-6000", 32_768, False),  # 114 GiB even in 4 bits
    ],
)
def test_known_fits_and_non_fits(models: list[str], gpu: str, max_model_len: int, fits: bool) -> None:
    plan = build_plan(PlanInputs(models=list(models), gpu=gpu, max_model_len=max_model_len))
    assert plan.fits is fits


def test_two_models_split_the_card_without_overcommitting_it() -> None:
    plan = evaluate([request("qwen3-30b-a3b", "fp8", 32_768), request("qwen3-8b", "bf16", 32_768, seqs=4)],
                    Setup(gpu=RTX_PRO_6000))  # fmt: skip
    assert plan.fits
    total = RTX_PRO_6000.memory_gib
    claimed = sum(m.gpu_memory_utilization * total + m.outside_gib for m in plan.models)
    assert claimed <= total - plan.setup.reserve_gib
    for m in plan.models:
        assert m.max_concurrency >= m.request.seqs  # each keeps the KV its sequences need
        assert m.budget_gib >= m.need_gib


def test_the_largest_max_model_len_and_concurrency_are_consistent() -> None:
    plan = evaluate([request("llama-3.1-70b", "fp8", 131_072)], Setup(gpu=RTX_PRO_6000))
    mp = plan.models[0]
    assert not plan.fits and 0 < mp.largest_max_model_len < 131_072
    shorter = evaluate([request("llama-3.1-70b", "fp8", mp.largest_max_model_len)], Setup(gpu=RTX_PRO_6000))
    assert shorter.fits
    assert shorter.models[0].max_concurrency < 1.1  # just one full sequence: it is the largest


def test_fp8_kv_cache_halves_the_kv_per_token_and_doubles_concurrency() -> None:
    auto = evaluate([request("qwen3-32b", "fp8", 32_768)], Setup(gpu=RTX_PRO_6000)).models[0]
    fp8 = evaluate([request("qwen3-32b", "fp8", 32_768)], Setup(gpu=RTX_PRO_6000, kv_cache_dtype="fp8")).models[0]
    assert fp8.kv_bytes_per_token * 2 == auto.kv_bytes_per_token
    assert fp8.max_concurrency == pytest.approx(2 * auto.max_concurrency, rel=0.01)


def test_the_cheapest_fix_for_llama_70b_bf16_on_96_gb_is_fp8_weights() -> None:
    plan = make_plan([request("llama-3.1-70b", "bf16", 32_768)], Setup(gpu=RTX_PRO_6000))
    assert not plan.fits
    assert plan.fixes[0].changes == {"format": "fp8"} and plan.fixes[0].plan.fits
    assert all(f.plan.fits for f in plan.fixes)
    assert any("tensor_parallel_size" in f.changes for f in plan.fixes)
    assert any("host RAM" in n for n in plan.notes)  # offloading needs --host-ram-gib


def test_qwen3_235b_on_96_gb_with_192_gb_of_ram_needs_4_bits_and_offloading() -> None:
    fixes = find_fixes([request("qwen3-235b-a22b", "bf16", 32_768)], Setup(gpu=RTX_PRO_6000, host_ram_gib=192))
    on_one_card = [f for f in fixes if "tensor_parallel_size" not in f.changes]
    assert on_one_card, "an offloading option on the one card must be offered"
    offload = on_one_card[0]
    assert offload.changes["format"] == "awq" and float(offload.changes["cpu_offload_gb"]) <= 192 - 16
    decode = offload.plan.models[0].decode
    assert decode is not None and decode.offload_slowdown > 2
    assert "slower" in offload.summary
    little_ram = find_fixes([request("qwen3-235b-a22b", "bf16", 32_768)], Setup(gpu=RTX_PRO_6000, host_ram_gib=32))
    assert little_ram and all("cpu_offload_gb" not in f.changes for f in little_ram)


def test_tensor_parallel_must_divide_the_attention_heads() -> None:
    mp = evaluate([request("qwen2.5-7b", "bf16", 8192)], Setup(gpu=RTX_PRO_6000, tensor_parallel=8)).models[0]
    assert any("does not divide 28 attention heads" in n for n in mp.notes)


def test_decode_ceiling_follows_memory_bandwidth() -> None:
    dense = evaluate([request("llama-3.1-8b", "bf16", 8192)], Setup(gpu=RTX_PRO_6000)).models[0]
    assert dense.decode is not None
    # One stream reads ~15 GB of weights (not the embedding table) plus its KV: ~110 tok/s at 1.79 TB/s.
    assert 100 < dense.decode.single_stream_tok_s < 1792 / 15
    moe = evaluate([request("qwen3-30b-a3b", "bf16", 8192)], Setup(gpu=RTX_PRO_6000)).models[0]
    assert moe.decode is not None and moe.decode.single_stream_tok_s > 2 * dense.decode.single_stream_tok_s
    assert moe.decode.batch_tok_s > moe.decode.single_stream_tok_s


def test_a_custom_gpu_needs_both_figures() -> None:
    with pytest.raises(PlanInputError, match="--gpu-memory-gib and --gpu-bandwidth-gbs"):
        build_plan(PlanInputs(models=["qwen3-8b"], gpu="custom", gpu_memory_gib=16))
    slow = build_plan(PlanInputs(models=["gpt-oss-20b"], gpu="custom", gpu_memory_gib=23.58, gpu_bandwidth_gbs=504))
    fast = build_plan(PlanInputs(models=["gpt-oss-20b"], gpu="rtx-4090"))  # same memory, twice the bandwidth
    assert slow.fits and fast.fits
    assert slow.models[0].kv_available_gib == pytest.approx(fast.models[0].kv_available_gib)
    slow_decode, fast_decode = slow.models[0].decode, fast.models[0].decode
    assert slow_decode is not None and fast_decode is not None
    assert fast_decode.single_stream_tok_s == pytest.approx(2 * slow_decode.single_stream_tok_s)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (PlanInputs(models=["qwen4-900b"]), "unknown model 'qwen4-900b'"),
        (PlanInputs(models=["qwen3-8b@q2"]), "unknown weight format 'q2'"),
        (PlanInputs(models=["qwen3-8b@mxfp4"]), "quantises MoE experts only"),
        (PlanInputs(models=["qwen3-8b"], kv_cache_dtype="int3"), "unknown KV-cache dtype"),
        (PlanInputs(models=["qwen3-8b"], gpu="tpu"), "unknown GPU 'tpu'"),
        (PlanInputs(models=["qwen3-8b"], tensor_parallel_size=3), "tensor_parallel_size must be 1, 2, 4 or 8"),
        (PlanInputs(models=["qwen3-8b", "qwen3-8b"], gpu_memory_utilization=0.5), "applies to one model"),
        (PlanInputs(models=["qwen3-8b"], repos=["a", "b"]), "one --repo per model"),
        (PlanInputs(models=["/etc/hostname"]), "unknown model"),  # paths only where allowed (the CLI)
    ],
)
def test_bad_inputs_say_what_to_fix(inputs: PlanInputs, message: str) -> None:
    with pytest.raises(PlanInputError, match=re.escape(message)):
        build_plan(inputs)


# --- the .env.vllm fragment -----------------------------------------------------------------------------


def test_env_render_replaces_keys_in_place_and_keeps_everything_else() -> None:
    existing = "# comment\nBACKEND_PORT=9000\nVLLM_MODEL=old/model\n# VLLM_KV_CACHE_DTYPE=auto\nHF_TOKEN=secret\n"
    out = render({"VLLM_MODEL": "new/model", "VLLM_KV_CACHE_DTYPE": "fp8", "VLLM_MAX_NUM_SEQS": "8"}, existing, "# hdr")
    assert out.splitlines() == [
        "# comment", "BACKEND_PORT=9000", "VLLM_MODEL=new/model", "VLLM_KV_CACHE_DTYPE=fp8", "HF_TOKEN=secret",
        "", "# hdr", "VLLM_MAX_NUM_SEQS=8",
    ]  # fmt: skip


def test_write_env_refuses_a_plan_that_does_not_fit(tmp_path: Path) -> None:
    plan = make_plan([request("llama-3.1-70b", "bf16", 32_768)], Setup(gpu=RTX_PRO_6000))
    with pytest.raises(EnvWriteError, match="does not fit as planned"):
        write_env(plan, tmp_path / ".env.vllm")
    assert not (tmp_path / ".env.vllm").exists()


def test_write_env_for_two_models_gives_each_its_own_stack(tmp_path: Path) -> None:
    plan = build_plan(PlanInputs(models=["qwen3-30b-a3b@fp8", "qwen3-30b-a3b@awq"], max_model_len=32_768))
    first, second = write_env(plan, tmp_path / ".env.vllm")
    one = dict(line.split("=", 1) for line in first.read_text().splitlines() if "=" in line and line[0] != "#")
    two = dict(line.split("=", 1) for line in second.read_text().splitlines() if "=" in line and line[0] != "#")
    assert one["VLLM_MODEL"] == "Qwen/Qwen3-30B-A3B-Instruct-2507-FP8" and one["VLLM_QUANTIZATION"] == ""
    assert two["VLLM_MODEL"] == "cpatonn/Qwen3-30B-A3B-Instruct-2507-AWQ-4bit"
    assert (one["STACK_ENV_FILE"], two["STACK_ENV_FILE"]) == (first.name, second.name)
    assert one["BACKEND_PORT"] != two["BACKEND_PORT"]
    utilizations = float(one["VLLM_GPU_MEMORY_UTILIZATION"]) + float(two["VLLM_GPU_MEMORY_UTILIZATION"])
    assert utilizations <= 1 - 2 / RTX_PRO_6000.memory_gib


def test_fp8_without_an_fp8_checkpoint_quantises_on_load() -> None:
    plan = build_plan(PlanInputs(models=["llama-3.1-70b@fp8"], max_model_len=32_768))
    values = env_values(plan)
    assert values["VLLM_MODEL"] == "meta-llama/Llama-3.1-70B-Instruct" and values["VLLM_QUANTIZATION"] == "fp8"


def test_a_format_without_a_known_checkpoint_asks_for_one() -> None:
    plan = build_plan(PlanInputs(models=["gemma-3-27b@awq"], max_model_len=32_768))
    with pytest.raises(EnvWriteError, match="give its Hugging Face id with --repo"):
        env_values(plan)
    with_repo = build_plan(PlanInputs(models=["gemma-3-27b@awq"], max_model_len=32_768, repos=["someone/gemma-awq"]))
    assert env_values(with_repo)["VLLM_MODEL"] == "someone/gemma-awq"


def test_gpu_override_keeps_the_other_figures() -> None:
    gpu = get_gpu("rtx-pro-6000", memory_gib=90.0)
    assert isinstance(gpu, GPU) and gpu.memory_gib == 90.0 and gpu.bandwidth_gbs == RTX_PRO_6000.bandwidth_gbs
    assert replace(gpu, memory_gib=1.0).large is False


# --- docs/gpu-planning.md shows the tool's own output ----------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "gpu-planning.md"
CONSOLE_BLOCK = re.compile(r"```console\n\$ python -m cli\.plan (?P<args>[^\n]*)\n(?P<output>.*?)```", re.S)


def _run_plan(args: str, capsys: pytest.CaptureFixture[str]) -> str:
    from cli.plan import main

    capsys.readouterr()
    main(args.split())
    return capsys.readouterr().out


def test_the_outputs_in_docs_gpu_planning_are_the_tools_own(capsys: pytest.CaptureFixture[str]) -> None:
    """After changing the planner: UPDATE_DOCS=1 pytest -k outputs_in_docs rewrites the blocks."""
    text = DOC.read_text(encoding="utf-8")
    blocks = list(CONSOLE_BLOCK.finditer(text))
    assert len(blocks) >= 8
    if os.environ.get("UPDATE_DOCS") == "1":
        text = CONSOLE_BLOCK.sub(
            lambda m: f"```console\n$ python -m cli.plan {m['args']}\n{_run_plan(m['args'], capsys)}```", text
        )
        DOC.write_text(text, encoding="utf-8")
        blocks = list(CONSOLE_BLOCK.finditer(text))
    for block in blocks:
        assert block["output"] == _run_plan(block["args"], capsys), f"docs/gpu-planning.md: {block['args']}"


def test_a_utilisation_that_leaves_no_room_outside_vllms_budget_is_refused_with_the_maximum() -> None:
    plan = make_plan([request("qwen3-8b", "bf16", 32_768)], Setup(gpu=RTX_PRO_6000, gpu_memory_utilization=0.99))
    assert not plan.fits and plan.models[0].fits  # the KV cache would fit; the card would not
    assert any("at most 0.96" in n for n in plan.notes) and plan.fixes == []
    ok = make_plan([request("qwen3-8b", "bf16", 32_768)], Setup(gpu=RTX_PRO_6000, gpu_memory_utilization=0.9))
    assert ok.fits and ok.models[0].gpu_memory_utilization == 0.9


def test_tensor_parallel_2_matches_vllms_profile_of_llama_3_8b() -> None:
    """vllm-project/vllm#10511, `-tp 2`: weights 7.48 GiB per GPU, non-torch 3.58 GiB (NCCL)."""
    llama3_8b = ModelRequest(get_entry("llama-3.1-8b").spec(), FORMATS["bf16"], 8192)
    mp = evaluate([llama3_8b], Setup(gpu=get_gpu("h100-80gb"), tensor_parallel=2)).models[0]
    assert mp.weights_gib == pytest.approx(7.48, abs=0.02)
    assert mp.non_torch_gib == pytest.approx(3.58, abs=0.05)
    assert mp.kv_bytes_per_token == 2 * 32 * 4 * 128 * 2  # 8 KV heads split over 2 GPUs


def test_each_model_reserves_room_for_its_stacks_embedder() -> None:
    one = build_plan(PlanInputs(models=["qwen3-8b"], max_model_len=8192))
    two = build_plan(PlanInputs(models=["qwen3-8b", "qwen3-8b"], max_model_len=8192))
    assert (one.setup.reserve_gib, two.setup.reserve_gib) == (2.0, 4.0)
    assert build_plan(PlanInputs(models=["qwen3-8b"], reserve_gib=0)).setup.reserve_gib == 0


def test_a_local_config_is_served_by_its_hugging_face_id_or_not_at_all(tmp_path: Path) -> None:
    config = dict(CATALOGUE["qwen3-8b"].config)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text(json.dumps({**config, "_name_or_path": "Qwen/Qwen3-8B"}))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps({**config, "_name_or_path": "/home/me/ckpt"}))
    named = build_plan(PlanInputs(models=[str(tmp_path / "a")], max_model_len=8192), allow_paths=True)
    assert env_values(named)["VLLM_MODEL"] == "Qwen/Qwen3-8B"
    local = build_plan(PlanInputs(models=[str(tmp_path / "b")], max_model_len=8192), allow_paths=True)
    with pytest.raises(EnvWriteError, match="--repo"):
        env_values(local)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"num_hidden_layers": 10**9}, "beyond any real model"),
        ({"num_local_experts": "many"}, "must be a non-negative number"),
        ({"vision_config": {"hidden_size": "wide"}}, "wrong type or value"),
        ({"sliding_window": "big", "sliding_window_pattern": 6}, "wrong type or value"),
    ],
)
def test_a_hostile_config_is_a_clear_error_not_a_hang(config: dict[str, object], message: str) -> None:
    base = dict(CATALOGUE["qwen3-8b"].config)
    with pytest.raises(ConfigError, match=message):
        spec_from_config({**base, **config}, name="hostile")
