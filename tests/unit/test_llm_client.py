"""The OpenAI-compatible client against a misbehaving server, faults injected with httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from backend.adapters.llm import LLMError, OpenAICompatLLM, StreamEvent


def sse(*chunks: object) -> bytes:
    return b"".join(b"data: " + (c if isinstance(c, bytes) else json.dumps(c).encode()) + b"\n\n" for c in chunks)


def delta(text: str, finish: str | None = None) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


def collect(handler: Callable[[httpx.Request], httpx.Response]) -> list[StreamEvent]:
    async def go() -> list[StreamEvent]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            llm = OpenAICompatLLM(http, "http://llm/v1", model="m")
            return [ev async for ev in llm.stream_chat([{"role": "user", "content": "q"}], max_tokens=8,
                                                         temperature=0)]  # fmt: skip

    return asyncio.run(go())


def test_a_normal_stream_yields_deltas_then_usage() -> None:
    body = sse({"choices": [{"delta": {"role": "assistant"}}]}, delta("Hel"), delta("lo", "stop"),
               {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}, b"[DONE]")  # fmt: skip
    events = collect(lambda r: httpx.Response(200, content=body))
    assert [e.delta for e in events] == ["Hel", "lo", ""]
    assert events[-1].finish_reason == "stop"
    assert events[-1].usage is not None and events[-1].usage.prompt_tokens == 7


def test_without_usage_the_completion_tokens_are_counted_from_the_stream() -> None:
    events = collect(lambda r: httpx.Response(200, content=sse(delta("a"), delta("b"), delta("", "length"))))
    usage = events[-1].usage
    assert usage is not None and usage.prompt_tokens is None and usage.completion_tokens == 2


@pytest.mark.parametrize(
    ("response", "kind", "fragment"),
    [
        (httpx.Response(404, json={"error": {"message": "model m does not exist"}}), "http_404", "does not exist"),
        (httpx.Response(200, content=sse(delta("a"), b"{not json")), "protocol", "malformed"),
        (httpx.Response(200, content=sse(delta("a"), [1, 2])), "protocol", "malformed"),
        (httpx.Response(200, content=sse({"choices": "nope"})), "protocol", "malformed"),
        (
            httpx.Response(200, content=sse(delta("a"), {"error": {"message": "CUDA out of memory"}})),
            "server_error",
            "CUDA out of memory",
        ),
        (httpx.Response(200, content=sse(delta("a"), delta("b"))), "interrupted", "without a finish reason"),
    ],
)
def test_faults_become_llm_errors_with_a_kind(response: httpx.Response, kind: str, fragment: str) -> None:
    with pytest.raises(LLMError, match=fragment) as info:
        collect(lambda r: response)
    assert info.value.kind == kind


def test_an_unreachable_server_is_a_connect_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(LLMError, match="cannot reach") as info:
        collect(refuse)
    assert info.value.kind == "connect"


def test_the_api_key_is_sent_as_a_bearer_token_and_the_model_is_discovered() -> None:
    seen: dict[str, str] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.path] = request.headers.get("authorization", "")
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "served-model"}]})
        assert json.loads(request.content)["model"] == "served-model"
        return httpx.Response(200, content=sse(delta("ok", "stop")))

    async def go() -> list[StreamEvent]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            llm = OpenAICompatLLM(http, "http://llm/v1", api_key="sekret")
            return [ev async for ev in llm.stream_chat([], max_tokens=1, temperature=0)]

    assert asyncio.run(go())[0].delta == "ok"
    assert seen == {"/v1/models": "Bearer sekret", "/v1/chat/completions": "Bearer sekret"}


def test_vllm_reasoning_content_is_kept_apart_from_the_answer() -> None:
    body = sse({"choices": [{"delta": {"reasoning_content": "Think."}}]},
               {"choices": [{"delta": {"reasoning": " More."}}]},
               delta("Answer.", "stop"), b"[DONE]")  # fmt: skip
    events = collect(lambda r: httpx.Response(200, content=body))
    assert [(e.reasoning, e.delta) for e in events[:3]] == [("Think.", ""), (" More.", ""), ("", "Answer.")]
    assert events[-1].usage is not None and events[-1].usage.completion_tokens == 3


@pytest.mark.parametrize(
    ("backend", "penalty", "sent"),
    [
        ("openai", 1.0, {"repeat_penalty": 1.0}),  # llama.cpp's name
        ("vllm", 1.0, {"repetition_penalty": 1.0}),  # vLLM's
        ("vllm", 1.05, {"repetition_penalty": 1.05}),
        ("openai", None, {}),  # LLM_REPEAT_PENALTY empty: the server's own default
    ],
)
def test_the_repeat_penalty_is_sent_in_the_server_kinds_own_field(
    backend: str, penalty: float | None, sent: dict[str, float]
) -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, content=sse(delta("ok", "stop")))

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            llm = OpenAICompatLLM(http, "http://llm/v1", model="m", backend=backend, repeat_penalty=penalty)
            [ev async for ev in llm.stream_chat([], max_tokens=1, temperature=0)]

    asyncio.run(go())
    penalties = {k: v for k, v in bodies[0].items() if "penalty" in k}
    assert penalties == sent


def test_a_server_that_refuses_the_penalty_field_names_the_setting_that_drops_it() -> None:
    refusal = {"error": {"message": "Unrecognized request argument supplied: repeat_penalty"}}

    async def go() -> None:
        transport = httpx.MockTransport(lambda r: httpx.Response(400, json=refusal))
        async with httpx.AsyncClient(transport=transport) as http:
            llm = OpenAICompatLLM(http, "http://llm/v1", model="m", repeat_penalty=1.0)
            [ev async for ev in llm.stream_chat([], max_tokens=1, temperature=0)]

    with pytest.raises(LLMError, match=r"Unrecognized .*LLM_REPEAT_PENALTY= left empty") as info:
        asyncio.run(go())
    assert info.value.kind == "http_400"
