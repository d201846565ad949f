"""One streaming request to a target, timed token by token.

Three wire protocols: our service's `POST /ask` (Server-Sent Events: sources, token..., done), an
OpenAI-compatible server's `POST /v1/chat/completions` with `stream: true` (vLLM, llama.cpp), and
Ollama's `POST /api/chat` (NDJSON). Each yields the same `Sample`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

Kind = Literal["service", "openai", "ollama"]


@dataclass
class Target:
    name: str
    kind: Kind
    url: str  # service root, OpenAI base URL (ending in /v1), or Ollama root
    model: str | None = None  # raw servers: the model to ask; None = the first one served
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
    def __init__(self, http: httpx.AsyncClient, target: Target, max_tokens: int) -> None:
        self.http = http
        self.target = target
        self.max_tokens = max_tokens

    async def resolve_model(self) -> None:
        """Raw servers: ask for the first served model when none was named."""
        t = self.target
        if t.kind == "service" or t.model:
            return
        if t.kind == "openai":
            resp = await self.http.get(f"{t.url}/models")
            resp.raise_for_status()
            t.model = resp.json()["data"][0]["id"]
        else:
            resp = await self.http.get(f"{t.url}/api/tags")
            resp.raise_for_status()
            t.model = resp.json()["models"][0]["name"]

    async def run(self, prompt: Prompt) -> Sample:
        sample = Sample(ok=False, start=time.perf_counter())
        last: float | None = None
        parts: list[str] = []
        try:
            async for delta, tokens in self._stream(prompt, sample):
                now = time.perf_counter()
                if delta:
                    if sample.ttft is None:
                        sample.ttft = now - sample.start
                    elif last is not None:
                        sample.itl.append(now - last)
                    last = now
                    parts.append(delta)
                    sample.output_tokens += 1
                if tokens is not None:  # the server's own count, when it reports one
                    sample.output_tokens = tokens
            sample.e2e = time.perf_counter() - sample.start
            sample.text = "".join(parts)
            sample.ok = sample.ttft is not None
            if not sample.ok:
                sample.error = "no answer tokens"
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            sample.error = f"{type(exc).__name__}: {exc}"[:300]
        return sample

    async def _stream(self, prompt: Prompt, sample: Sample) -> AsyncIterator[tuple[str, int | None]]:
        t = self.target
        if t.kind == "service":
            body: dict[str, Any] = {"q": prompt.question, "space_id": t.space, "stream": True}
            async with self.http.stream("POST", f"{t.url}/ask", json=body) as resp:
                await _check(resp)
                event = ""
                async for line in resp.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                        if event == "token":
                            yield data["delta"], None
                        elif event == "done":
                            yield "", (data.get("usage") or {}).get("completion_tokens")
                        elif event == "error":
                            raise ValueError(data["error"]["message"])
        elif t.kind == "openai":
            body = {"model": t.model, "messages": chat_messages(prompt), "max_tokens": self.max_tokens,
                    "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
            async with self.http.stream("POST", f"{t.url}/chat/completions", json=body) as resp:
                await _check(resp)
                async for line in resp.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    data = json.loads(line[6:])
                    usage = data.get("usage") or {}
                    for choice in data.get("choices") or []:
                        delta = (choice.get("delta") or {}).get("content") or ""
                        if delta:
                            yield delta, None
                    if usage.get("completion_tokens"):
                        yield "", int(usage["completion_tokens"])
        else:
            body = {"model": t.model, "messages": chat_messages(prompt), "stream": True,
                    "options": {"num_predict": self.max_tokens, "temperature": 0.0}}  # fmt: skip
            async with self.http.stream("POST", f"{t.url}/api/chat", json=body) as resp:
                await _check(resp)
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    data = json.loads(line)
                    if data.get("error"):
                        raise ValueError(data["error"])
                    delta = (data.get("message") or {}).get("content") or ""
                    if delta:
                        yield delta, None
                    if data.get("done"):
                        yield "", data.get("eval_count")


async def _check(resp: httpx.Response) -> None:
    if resp.status_code >= 400:
        body = (await resp.aread()).decode(errors="replace")[:200]
        raise httpx.HTTPStatusError(f"HTTP {resp.status_code}: {body}", request=resp.request, response=resp)
