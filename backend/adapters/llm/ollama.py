"""Client for Ollama's native API: /api/chat (NDJSON stream), /api/tags, /api/show.

Every chat request carries `options.num_ctx`: Ollama's default context (2048-4096 tokens, by version)
silently cuts longer prompts, which is the commonest cause of "the RAG answer ignored my documents".
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from backend.adapters.llm.base import LLMError, StreamEvent, Usage, transport_errors


class OllamaLLM:
    backend = "ollama"

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        model: str | None = None,
        num_ctx: int,
        keep_alive: str,
        repeat_penalty: float | None = None,
    ) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self._model = model
        self.num_ctx = num_ctx
        self.keep_alive = keep_alive
        self.repeat_penalty = repeat_penalty  # None: Ollama's own default (1.1)
        self._window: int | None = None

    async def list_models(self) -> list[str]:
        body = await self._json("GET", "/api/tags")
        try:
            return [str(m["name"]) for m in body["models"]]
        except (KeyError, TypeError) as exc:
            raise LLMError(f"{self.base_url}/api/tags returned an unexpected body", "protocol") from exc

    async def model(self) -> str:
        if self._model is None:
            served = await self.list_models()
            if not served:
                raise LLMError(f"Ollama at {self.base_url} has no model; run `ollama pull <model>`", "no_model")
            self._model = served[0]
        return self._model

    async def context_window(self) -> int | None:
        """The num_ctx sent with every request: LLM_CONTEXT_TOKENS, but never past what the model was
        trained for (its context_length in /api/show), where answers would degrade silently."""
        if self._window is None:
            info = (await self._json("POST", "/api/show", json={"model": await self.model()})).get("model_info")
            trained = [v for k, v in (info or {}).items() if k.endswith(".context_length") and isinstance(v, int)]
            self._window = min([self.num_ctx, *trained])
        return self._window

    async def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int | None:
        return None  # Ollama has no tokenize endpoint

    async def stream_chat(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[StreamEvent]:
        options: dict[str, Any] = {"num_ctx": await self.context_window(), "num_predict": max_tokens,
                                   "temperature": temperature}  # fmt: skip
        if self.repeat_penalty is not None:
            options["repeat_penalty"] = self.repeat_penalty
        body = {
            "model": await self.model(),
            "messages": messages,
            "stream": True,
            "keep_alive": self.keep_alive,
            "options": options,
        }
        done: dict[str, Any] | None = None
        with transport_errors(self.base_url):
            async with self._http.stream("POST", f"{self.base_url}/api/chat", json=body) as resp:
                if resp.status_code != 200:
                    raise LLMError(
                        f"Ollama answered {resp.status_code}: {_error_text(await resp.aread())}",
                        f"http_{resp.status_code}",
                    )
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        chunk = json.loads(line)
                        if "error" in chunk:
                            raise LLMError(f"Ollama error: {chunk['error']}", "server_error")
                        message = chunk.get("message") or {}
                        text = str(message.get("content") or "")
                        thinking = str(message.get("thinking") or "")  # thinking models, Ollama >= 0.9
                        finished = bool(chunk.get("done"))
                    except (ValueError, TypeError, AttributeError) as exc:
                        raise LLMError(f"Ollama sent a malformed stream line: {line[:200]}", "protocol") from exc
                    if text or thinking:
                        yield StreamEvent(delta=text, reasoning=thinking)
                    if finished:
                        done = chunk
                        break
        if done is None:
            raise LLMError("Ollama's stream ended before `done`", "interrupted")
        usage = Usage(_int(done.get("prompt_eval_count")), _int(done.get("eval_count")) or 0)
        yield StreamEvent(usage=usage, finish_reason=str(done.get("done_reason") or "stop"))

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with transport_errors(self.base_url):
            resp = await self._http.request(method, self.base_url + path, **kwargs)
        if resp.status_code != 200:
            raise LLMError(
                f"{self.base_url}{path} answered {resp.status_code}: {_error_text(resp.content)}",
                f"http_{resp.status_code}",
            )
        try:
            body = resp.json()
        except ValueError as exc:
            raise LLMError(f"{self.base_url}{path} returned invalid JSON", "protocol") from exc
        if not isinstance(body, dict):
            raise LLMError(f"{self.base_url}{path} returned an unexpected body", "protocol")
        return body


def _error_text(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"])[:300]
    except (ValueError, KeyError, TypeError):
        return raw.decode("utf-8", "replace")[:300]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None
