"""Client for OpenAI-compatible chat servers (vLLM, llama.cpp server, ...): /v1/models, /v1/chat/completions."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)


class LLMError(Exception):
    """The LLM server failed; `kind` is a short label for metrics (connect, timeout, http_5xx, ...)."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Usage:
    """Token counts; prompt_tokens is None when the server does not report usage (llama.cpp)."""

    prompt_tokens: int | None = None
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int | None:
        return None if self.prompt_tokens is None else self.prompt_tokens + self.completion_tokens


@dataclass
class StreamEvent:
    """One piece of a streamed answer: a text delta, or (at the end) usage and the finish reason."""

    delta: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None


class OpenAICompatLLM:
    """Talks to one OpenAI-compatible server. The httpx client is shared and owned by the app."""

    backend = "openai"

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self._model: str | None = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def list_models(self) -> list[str]:
        resp = await self._request("GET", "/models")
        try:
            return [str(m["id"]) for m in resp.json()["data"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise LLMError(f"{self.base_url}/models returned an unexpected body", "protocol") from exc

    async def model(self) -> str:
        """The configured model, or the first one the server serves (asked once)."""
        if self._model is None:
            served = await self.list_models()
            if not served:
                raise LLMError(f"{self.base_url} serves no model", "no_model")
            self._model = served[0]
        return self._model

    async def stream_chat(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[StreamEvent]:
        """Yield text deltas as they arrive, then one event with usage and the finish reason."""
        model = await self.model()
        body = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        url = f"{self.base_url}/chat/completions"
        finish: str | None = None
        usage: Usage | None = None
        deltas = 0  # servers without usage reporting send one token per chunk
        try:
            async with self._http.stream("POST", url, json=body, headers=self._headers) as resp:
                if resp.status_code != 200:
                    detail = (await resp.aread()).decode("utf-8", "replace")[:300]
                    raise LLMError(f"LLM server answered {resp.status_code}: {detail}", f"http_{resp.status_code}")
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                        if "error" in chunk:  # vLLM reports failures inside a 200 stream
                            error = chunk["error"]
                            message = error.get("message", error) if isinstance(error, dict) else error
                            raise LLMError(f"LLM server error: {message}", "server_error")
                        if chunk.get("usage"):
                            u = chunk["usage"]
                            usage = Usage(int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0)))
                        texts = []
                        for choice in chunk.get("choices") or []:
                            if choice.get("finish_reason"):
                                finish = str(choice["finish_reason"])
                            texts.append(str((choice.get("delta") or {}).get("content") or ""))
                    except (ValueError, TypeError, AttributeError) as exc:
                        raise LLMError(f"LLM server sent a malformed stream chunk: {data[:200]}", "protocol") from exc
                    for text in texts:
                        if text:
                            deltas += 1
                            yield StreamEvent(delta=text)
        except httpx.TimeoutException as exc:
            raise LLMError(f"LLM server at {self.base_url} timed out", "timeout") from exc
        except httpx.TransportError as exc:
            raise LLMError(f"cannot reach the LLM server at {self.base_url}: {exc}", "connect") from exc
        if finish is None:
            # llama.cpp's server ends a stream it was made to interrupt with no finish reason.
            raise LLMError("LLM stream ended without a finish reason (interrupted)", "interrupted")
        yield StreamEvent(usage=usage or Usage(None, deltas), finish_reason=finish)

    async def _request(self, method: str, path: str) -> httpx.Response:
        try:
            resp = await self._http.request(method, self.base_url + path, headers=self._headers)
        except httpx.TimeoutException as exc:
            raise LLMError(f"LLM server at {self.base_url} timed out", "timeout") from exc
        except httpx.TransportError as exc:
            raise LLMError(f"cannot reach the LLM server at {self.base_url}: {exc}", "connect") from exc
        if resp.status_code != 200:
            raise LLMError(f"{self.base_url}{path} answered {resp.status_code}", f"http_{resp.status_code}")
        return resp
