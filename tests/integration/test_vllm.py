"""The service against a real vLLM server on CPU: streaming, /v1/models, /tokenize, /metrics, budgeting."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

from backend.config import Settings
from backend.main import create_app
from backend.services.citations import cited_numbers
from backend.services.gpu_plan.architecture import spec_from_file
from backend.services.gpu_plan.planner import GIB, kv_cache_tokens
from tests.integration.test_api import parse_sse, upload
from tests.vllm.server import MAX_MODEL_LEN, MODEL_DIR, SERVED_NAME, VllmServer

pytestmark = pytest.mark.vllm

FACTS = {
    "pump.txt": b"The Glimmer pump has a maximum pressure of 9 bar.",
    "reactor.txt": b"The Zorblat reactor runs at 42 kelvin.",
}


def without_citations(text: str) -> str:
    return re.sub(r"\s*\[\d+\]", "", text)


def vllm_settings(make_settings: Callable[..., Settings], server: VllmServer, **overrides: object) -> Settings:
    # No LLM_MODEL and no LLM_CONTEXT_TOKENS fitting the model: both must come from vLLM itself.
    values: dict[str, object] = {"llm_max_tokens": 48, **overrides}
    return make_settings(llm_backend="vllm", llm_base_url=server.base_url, llm_context_tokens=100_000, **values)


def test_answers_come_from_vllm_with_exact_usage_and_a_budget_vllm_agrees_with(
    make_settings: Callable[..., Settings], vllm_server: VllmServer
) -> None:
    with TestClient(create_app(vllm_settings(make_settings, vllm_server))) as client:
        upload(client, "v", FACTS)
        body = client.post("/ask", json={"q": "What is the maximum pressure of the Glimmer pump?",
                                         "space_id": "v"}).json()  # fmt: skip
        assert body["backend"] == "vllm" and body["model"] == SERVED_NAME  # discovered via /v1/models
        assert "9" in body["answer"] and body["finish_reason"] in ("stop", "length")
        ctx, usage = body["context"], body["usage"]
        assert ctx["window_tokens"] == MAX_MODEL_LEN  # from vLLM's max_model_len, not the setting
        assert ctx["counted_by"] == "server"
        assert ctx["prompt_tokens"] == usage["prompt_tokens"]  # /tokenize counted exactly what vLLM saw
        assert usage["completion_tokens"] > 0 and usage["total_tokens"] == usage["prompt_tokens"] + usage[
            "completion_tokens"]  # fmt: skip
        ready = client.get("/ready").json()
        assert ready["checks"]["llm_primary"]["detail"].startswith(f"vllm {SERVED_NAME} at")


def test_streaming_from_vllm(make_settings: Callable[..., Settings], vllm_server: VllmServer) -> None:
    with TestClient(create_app(vllm_settings(make_settings, vllm_server))) as client:
        upload(client, "v", FACTS)
        with client.stream("POST", "/ask", json={"q": "How cold is the Zorblat reactor?", "space_id": "v",
                                                 "stream": True}) as resp:  # fmt: skip
            events = parse_sse(resp.read().decode())
    kinds = [k for k, _ in events]
    assert kinds[0] == "sources" and kinds[-1] == "done" and kinds.count("token") > 2
    done = events[-1][1]
    streamed = "".join(e["delta"] for k, e in events if k == "token").strip()
    # `done` carries the answer with its citations checked: the streamed words, citation marks aside.
    assert without_citations(done["answer"]) == without_citations(streamed) != ""
    assert done["citations"]["written"] == sorted(cited_numbers(streamed, len(events[0][1]["sources"])))
    assert done["usage"]["prompt_tokens"] == done["context"]["prompt_tokens"]


def test_a_prompt_too_big_for_max_model_len_is_cut_to_fit_instead_of_a_400(
    make_settings: Callable[..., Settings], vllm_server: VllmServer
) -> None:
    many = {f"d{i}.txt": (f"Record {i}: the delivery of valves number {i} was moved to week {i}. " * 12).encode()
            for i in range(20)}  # fmt: skip
    settings = vllm_settings(make_settings, vllm_server, llm_max_tokens=200, answer_passage_cutoff=0)  # all 20
    with TestClient(create_app(settings)) as client:
        upload(client, "big", many)
        resp = client.post("/ask", json={"q": "When were the valves delivered?", "space_id": "big", "top_k": 20})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    ctx = body["context"]
    assert ctx["dropped_chunks"] > 0 and len(body["sources"]) == 20 - ctx["dropped_chunks"]
    assert ctx["prompt_tokens"] + 200 <= MAX_MODEL_LEN
    assert body["usage"]["prompt_tokens"] == ctx["prompt_tokens"]


def test_vllm_metrics_count_what_the_service_sent(
    make_settings: Callable[..., Settings], vllm_server: VllmServer
) -> None:
    def prompt_tokens_total() -> float:
        text = httpx.get(f"{vllm_server.root_url}/metrics").text
        return sum(float(v) for v in re.findall(r"^vllm:prompt_tokens_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))

    before = prompt_tokens_total()
    with TestClient(create_app(vllm_settings(make_settings, vllm_server))) as client:
        upload(client, "v", FACTS)
        sent = [client.post("/ask", json={"q": q, "space_id": "v"}).json()["usage"]["prompt_tokens"]
                for q in ("Pump pressure?", "Reactor temperature?")]  # fmt: skip
    assert prompt_tokens_total() - before == sum(sent)


def test_the_converted_model_keeps_what_vllm_needs(vllm_server: VllmServer) -> None:
    import json

    from tests.vllm.server import MODEL_DIR

    config = json.loads((MODEL_DIR / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]  # else vLLM loads an embedding model
    assert config["tie_word_embeddings"] is True and "quantization_config" not in config
    assert (config["bos_token_id"], config["eos_token_id"]) == (1, 2)
    generation = json.loads((MODEL_DIR / "generation_config.json").read_text())
    assert (generation["bos_token_id"], generation["eos_token_id"], generation["pad_token_id"]) == (1, 2, 2)
    # vLLM applies the chat template that came with the tokenizer: ChatML, starting with the BOS token.
    hello = {"model": SERVED_NAME, "messages": [{"role": "user", "content": "Hi"}]}
    counted = httpx.post(f"{vllm_server.root_url}/tokenize", json=hello).json()
    assert counted["tokens"][0] == 1 and counted["max_model_len"] == MAX_MODEL_LEN
    chat = httpx.post(f"{vllm_server.base_url}/chat/completions", timeout=60, json={
        "model": SERVED_NAME, "max_tokens": 24, "temperature": 0,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    }).json()  # fmt: skip
    assert "Paris" in chat["choices"][0]["message"]["content"]  # tied lm_head: real words, not padding


def test_the_planner_predicts_the_kv_cache_vllm_allocates(vllm_server: VllmServer) -> None:
    """vLLM logs "CPU KV cache size: N tokens"; the planner, from the served model's config.json, must give
    the same N for the 1 GiB cache (VLLM_CPU_KVCACHE_SPACE=1) in float32 (--dtype float32)."""
    logged = re.search(r"KV cache size: ([\d,]+) tokens", vllm_server.log_path.read_text(errors="replace"))
    assert logged, "vLLM's log has no 'KV cache size' line"
    spec = spec_from_file(MODEL_DIR)
    assert spec.kv_bytes_per_token(4) == 2 * 30 * 3 * 64 * 4
    assert kv_cache_tokens(spec, 4, 1 * GIB, MAX_MODEL_LEN) == int(logged.group(1).replace(",", ""))
