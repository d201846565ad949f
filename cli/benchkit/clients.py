"""One streaming request to a target, timed token by token.

Our service's `POST /ask` (Server-Sent Events: sources, token..., done) is read here; raw servers are
asked through the service's own LLM adapters (OpenAI-compatible for vLLM and llama.cpp, Ollama's
/api/chat), so the benchmark speaks exactly the protocol the service does, repetition penalty included
(each server's own default differs: 1.1 for llama.cpp and Ollama, the model's for vLLM; the service sends
LLM_REPEAT_PENALTY, 1.0 by default, in each server's field). Each yields a `Sample`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from backend.adapters.llm import LLMBackend, LLMError, OpenAICompatLLM
from backend.adapters.llm.ollama import OllamaLLM

# Context Ollama is asked to allocate for raw-server runs (capped at the model's own by the adapter).
OLLAMA_NUM_CTX = 8192

# "vllm" is an OpenAI-compatible server that names the penalty field as vLLM does.
Kind = Literal["service", "openai", "vllm", "ollama"]


@dataclass
class Target:
    name: str
    kind: Kind
    url: str  # service root, OpenAI base URL (ending in /v1), or Ollama root
    model: str | None = None  # the model to ask (service: a name of LLM_MODELS); None = the default / first served
    space: str = "demo"  # service targets: the space asked


@dataclass
class Prompt:
    question: str
    context: str | None = None  # raw servers get it in the prompt; the service retrieves its own
    answers: list[str] = field(default_factory=list)  # gold answers, for quality


@dataclass
class Sample:
    ok: bool
    start: float  # perf_counter at send
    ttft: float | None = None  # seconds to the first answer token
    e2e: float | None = None
    itl: list[float] = field(default_factory=list)  # gaps between answer chunks
    output_tokens: int = 0
    text: str = ""
    error: str | None = None

    @property
    def tpot(self) -> float | None:
        if self.e2e is None or self.ttft is None or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)


def chat_messages(prompt: Prompt) -> list[dict[str, str]]:
    if prompt.context is None:
        return [{"role": "user", "content": prompt.question}]
    return [
        {"role": "system", "content": "Answer the question from the context, briefly."},
        {"role": "user", "content": f"Context:\n{prompt.context}\n\nQuestion: {prompt.question}"},
    ]


class Client:
    def __init__(
        self, http: httpx.AsyncClient, target: Target, max_tokens: int, repeat_penalty: float | None = 1.0
    ) -> None:
        self.http = http
        self.target = target
        self.max_tokens = max_tokens
        self.llm: LLMBackend | None = None
        if target.kind in ("openai", "vllm"):
            self.llm = OpenAICompatLLM(http, target.url, model=target.model, backend=target.kind,
                                       repeat_penalty=repeat_penalty)  # fmt: skip
        elif target.kind == "ollama":
            self.llm = OllamaLLM(http, target.url, model=target.model, num_ctx=OLLAMA_NUM_CTX, keep_alive="30m",
                                 repeat_penalty=repeat_penalty)  # fmt: skip

    async def resolve_model(self) -> None:
        """Raw servers: the named model, or the first one served."""
        if self.llm is not None:
            self.target.model = await self.llm.model()

    async def run(self, prompt: Prompt) -> Sample:
        sample = Sample(ok=False, start=time.perf_counter())
        last: float | None = None
        parts: list[str] = []
        try:
            async for answer, thinking, tokens in self._stream(prompt):
                now = time.perf_counter()
                if answer or thinking:  # a reasoning model's thinking is output too
                    if sample.ttft is None:
                        sample.ttft = now - sample.start
                    elif last is not None:
                        sample.itl.append(now - last)
                    last = now
                    parts.append(answer)
                    sample.output_tokens += 1
                if tokens is not None:  # the server's own count, when it reports one
                    sample.output_tokens = tokens
            sample.e2e = time.perf_counter() - sample.start
            sample.text = "".join(parts)
            sample.ok = sample.ttft is not None
            if not sample.ok:
                sample.error = "no answer tokens"
        except (httpx.HTTPError, LLMError, ValueError, KeyError) as exc:
            sample.error = f"{type(exc).__name__}: {exc}"[:300]
        return sample

    async def _stream(self, prompt: Prompt) -> AsyncIterator[tuple[str, str, int | None]]:
        """(answer delta, thinking delta, completion tokens reported at the end)."""
        if self.llm is not None:
            events = self.llm.stream_chat(chat_messages(prompt), max_tokens=self.max_tokens, temperature=0.0)
            async for ev in events:
                yield ev.delta, ev.reasoning, ev.usage.completion_tokens if ev.usage else None
            return
        body: dict[str, Any] = {"q": prompt.question, "space_id": self.target.space, "stream": True}
        if self.target.model:  # a named model of the service (LLM_MODELS); else its default
            body["model"] = self.target.model
        key = os.environ.get("RAG_API_KEY", "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with self.http.stream("POST", f"{self.target.url}/ask", json=body, headers=headers) as resp:
            await _check(resp)
            event = ""
            async for line in resp.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    if event == "token":
                        yield data["delta"], "", None
                    elif event == "done":
                        yield "", "", (data.get("usage") or {}).get("completion_tokens")
                    elif event == "error":
                        raise ValueError(data["error"]["message"])


async def _check(resp: httpx.Response) -> None:
    if resp.status_code >= 400:
        body = (await resp.aread()).decode(errors="replace")[:200]
        raise httpx.HTTPStatusError(f"HTTP {resp.status_code}: {body}", request=resp.request, response=resp)
