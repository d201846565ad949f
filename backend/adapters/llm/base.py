"""What every LLM backend shares: its protocol, the stream events it yields, and its error type."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import httpx


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
    reasoning: str = ""  # thinking the server sent apart from the answer (reasoning_content, thinking)
    usage: Usage | None = None
    finish_reason: str | None = None


class LLMBackend(Protocol):
    """One LLM server. `stream_chat` yields text deltas, then one event with usage and finish reason."""

    backend: str  # "vllm", "ollama" or "openai": named in responses and metrics
    base_url: str

    async def list_models(self) -> list[str]: ...

    async def model(self) -> str: ...

    async def context_window(self) -> int | None:
        """Tokens the server accepts for prompt + answer, if it says (vLLM: max_model_len)."""
        ...

    async def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int | None:
        """The prompt's size in the model's own tokens, if the server can count them."""
        ...

    def stream_chat(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[StreamEvent]: ...


@contextmanager
def transport_errors(base_url: str) -> Iterator[None]:
    """Turn httpx's connection and timeout errors into LLMErrors that name the server."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise LLMError(f"LLM server at {base_url} timed out", "timeout") from exc
    except httpx.TransportError as exc:
        raise LLMError(f"cannot reach the LLM server at {base_url}: {exc}", "connect") from exc
