"""Client for OpenAI-compatible chat servers (vLLM, llama.cpp server, ...): /v1/models, /v1/chat/completions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from backend.adapters.llm.base import LLMError, StreamEvent, Usage, transport_errors


class OpenAICompatLLM:
    """Talks to one OpenAI-compatible server. The httpx client is shared and owned by the app.

    `backend` names the server kind in responses and metrics: "vllm", or "openai" for any other
    OpenAI-compatible server (llama.cpp, LM Studio, a hosted API).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        backend: str = "openai",
        repeat_penalty: float | None = None,
    ) -> None:
        self.backend = backend
        # None: send none, the server's own default applies. vLLM and llama.cpp name the field differently.
        self._penalty = {} if repeat_penalty is None else {
            "repetition_penalty" if backend == "vllm" else "repeat_penalty": repeat_penalty
        }  # fmt: skip
        self._http = http
        self.base_url = base_url.rstrip("/")
        self._model: str | None = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Server root for the non-/v1 endpoints (vLLM /tokenize, llama-cpp-python /extras/...).
        self._root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        self._window: int | None = None
        self._window_known = False
        self._counter: str | None = None  # which tokenize endpoint works here; "" = none does

    async def context_window(self) -> int | None:
        if not self._window_known:
            wanted = await self.model()
            cards = [card for card in await self._model_cards() if card["id"] == wanted]
            window = cards[0].get("max_model_len") if cards else None
            self._window = window if isinstance(window, int) and window > 0 else None
            self._window_known = True
        return self._window

    async def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int | None:
        """vLLM's /tokenize applies the real chat template; llama-cpp-python's count misses the template's
        few tokens per message, which are added as an estimate. None when neither endpoint exists."""
        if self._counter == "":
            return None
        if self._counter in (None, "vllm"):
            body = {"model": await self.model(), "messages": messages, "add_generation_prompt": True}
            count = await self._count("/tokenize", body)
            if count is not None:
                self._counter = "vllm"
                return count
        if self._counter in (None, "llamacpp"):
            text = "\n".join(m["content"] for m in messages)
            count = await self._count("/extras/tokenize/count", {"input": text})
            if count is not None:
                self._counter = "llamacpp"
                return count + 5 * len(messages) + 3
        self._counter = ""
        return None

    async def _count(self, path: str, body: dict[str, object]) -> int | None:
        with transport_errors(self.base_url):
            resp = await self._http.post(self._root + path, json=body, headers=self._headers)
        if resp.status_code in (404, 405):
            return None  # this server has no such endpoint
        if resp.status_code != 200:
            raise LLMError(f"{self._root}{path} answered {resp.status_code}", f"http_{resp.status_code}")
        try:
            count = resp.json().get("count")
        except (ValueError, AttributeError):
            return None
        return count if isinstance(count, int) else None

    async def list_models(self) -> list[str]:
        return [str(card["id"]) for card in await self._model_cards()]

    async def _model_cards(self) -> list[dict[str, Any]]:
        """The entries of GET /models, each with an "id" (vLLM adds "max_model_len")."""
        try:
            cards = (await self._request("GET", "/models")).json()["data"]
            if all(isinstance(card, dict) and "id" in card for card in cards):
                return cards  # type: ignore[no-any-return]
        except (KeyError, TypeError, ValueError):
            pass
        raise LLMError(f"{self.base_url}/models returned an unexpected body", "protocol")

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
            **self._penalty,
        }
        url = f"{self.base_url}/chat/completions"
        finish: str | None = None
        usage: Usage | None = None
        deltas = 0  # servers without usage reporting send one token per chunk
        with transport_errors(self.base_url):
            async with self._http.stream("POST", url, json=body, headers=self._headers) as resp:
                if resp.status_code != 200:
                    detail = (await resp.aread()).decode("utf-8", "replace")[:300]
                    if any(field in detail for field in self._penalty):  # a hosted API refusing the field
                        detail += " (LLM_REPEAT_PENALTY= left empty sends no repetition penalty)"
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
                        events = []
                        for choice in chunk.get("choices") or []:
                            if choice.get("finish_reason"):
                                finish = str(choice["finish_reason"])
                            delta = choice.get("delta") or {}
                            # vLLM's reasoning parsers: "reasoning_content" (older), "reasoning" (newer)
                            thinking = delta.get("reasoning_content") or delta.get("reasoning") or ""
                            events.append(StreamEvent(delta=str(delta.get("content") or ""), reasoning=str(thinking)))
                    except (ValueError, TypeError, AttributeError) as exc:
                        raise LLMError(f"LLM server sent a malformed stream chunk: {data[:200]}", "protocol") from exc
                    for event in events:
                        if event.delta or event.reasoning:
                            deltas += 1
                            yield event
        if finish is None:
            # llama.cpp's server ends a stream it was made to interrupt with no finish reason.
            raise LLMError("LLM stream ended without a finish reason (interrupted)", "interrupted")
        yield StreamEvent(usage=usage or Usage(None, deltas), finish_reason=finish)

    # vLLM's sleep mode (served with VLLM_SERVER_DEV_MODE=1): a sleeping server frees the GPU memory of its
    # weights and KV cache and holds every generation request until woken (/v1/models, /tokenize still answer).
    async def sleep(self, level: int) -> None:
        """Put the server to sleep; `mode=wait` lets any request still running finish instead of aborting it."""
        await self._control("POST", f"/sleep?level={level}&mode=wait")

    async def wake_up(self) -> None:
        body = await self._control("POST", "/wake_up")
        if body.get("status") not in (None, "awake"):
            raise LLMError(f"{self._root}/wake_up left the server {body.get('status')!r}", "wake_incomplete")

    async def is_sleeping(self) -> bool:
        return bool((await self._control("GET", "/is_sleeping")).get("is_sleeping"))

    async def _control(self, method: str, path: str) -> dict[str, Any]:
        with transport_errors(self.base_url):
            resp = await self._http.request(method, self._root + path, headers=self._headers)
        if resp.status_code == 404:
            raise LLMError(f"{self._root}{path} is not served: start vLLM with VLLM_SERVER_DEV_MODE=1", "no_sleep_mode")
        if resp.status_code != 200:
            raise LLMError(f"{self._root}{path} answered {resp.status_code}", f"http_{resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            body = None
        return body if isinstance(body, dict) else {}

    async def _request(self, method: str, path: str) -> httpx.Response:
        with transport_errors(self.base_url):
            resp = await self._http.request(method, self.base_url + path, headers=self._headers)
        if resp.status_code != 200:
            raise LLMError(f"{self.base_url}{path} answered {resp.status_code}", f"http_{resp.status_code}")
        return resp
