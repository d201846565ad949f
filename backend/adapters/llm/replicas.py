"""Several servers of one model (replicas) behind one backend: the least busy answers, a failing one is ejected.

- Each request goes to the replica with the fewest requests in flight (ties go round the replicas in
  turn, so a quiet service still spreads its load).
- Each replica has its own circuit breaker: one that fails to connect, answers an error, or breaks off
  mid-answer is skipped after `failures` such failures in a row, and after `cooldown_s` one request
  probes it again; a success puts it back into rotation.
- Before its first event a request moves on to the next replica; after it, never (the client may
  already hold part of the answer): the error goes to the caller, as from a single server.

The chain above (fallback.py) sees one backend: it fails only when no replica produced a first event.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from backend.adapters.circuit import CircuitBreaker
from backend.adapters.llm.base import LLMBackend, LLMError, StreamEvent

log = logging.getLogger(__name__)

T = TypeVar("T")

# (model, replica base URL, outcome): outcome is "answered", "failed" (before its first event) or "broken"
# (after it): the caller's metrics.
ReplicaHook = Callable[[str, str, str], None]


@dataclass
class Replica:
    llm: LLMBackend
    breaker: CircuitBreaker
    in_flight: int = 0
    answered: int = 0  # requests that got their first event from this replica
    failed: int = 0

    @property
    def url(self) -> str:
        return self.llm.base_url


class ReplicatedLLM:
    """One model served by several servers, as one LLMBackend."""

    def __init__(self, name: str, replicas: list[Replica], on_request: ReplicaHook | None = None) -> None:
        if not replicas:
            raise ValueError("a replicated model needs at least one replica")
        self.name = name
        self.replicas = replicas
        self.backend = replicas[0].llm.backend
        self.base_url = ",".join(r.url for r in replicas)
        self._turn = itertools.count()
        self._on_request = on_request

    def _order(self) -> list[Replica]:
        """Fewest in flight first; among equals, starting from the next replica in turn."""
        start = next(self._turn) % len(self.replicas)
        rotated = self.replicas[start:] + self.replicas[:start]
        return sorted(rotated, key=lambda r: r.in_flight)  # stable: the rotation breaks ties

    def _record(self, replica: Replica, outcome: str) -> None:
        if self._on_request is not None:
            self._on_request(self.name, replica.url, outcome)

    def _fail(self, replica: Replica, exc: LLMError, outcome: str = "failed") -> None:
        replica.breaker.record_failure()
        replica.failed += 1
        self._record(replica, outcome)
        state = "ejected" if replica.breaker.state == "open" else "kept"
        log.warning("LLM replica %s of %s failed (%s), %s: %s", replica.url, self.name, exc.kind, state, exc)

    async def _any(self, call: Callable[[LLMBackend], Awaitable[T]]) -> T:
        """A side request (model id, window, token count, model list): the first replica that answers.
        Replicas whose circuit is open are asked last, without spending their probe."""
        # Not _order(): side requests must not move the turn that spreads answers.
        healthy = sorted((r for r in self.replicas if r.breaker.state == "closed"), key=lambda r: r.in_flight)
        errors: list[str] = []
        last = LLMError("no replica", "no_replica")
        for replica in healthy + [r for r in self.replicas if r not in healthy]:
            try:
                return await call(replica.llm)
            except LLMError as exc:
                if replica.breaker.state == "closed":
                    replica.breaker.record_failure()
                errors.append(f"{replica.url}: {exc}")
                last = exc
        raise LLMError(f"no replica of {self.name} answered: {'; '.join(errors)}", last.kind)

    async def list_models(self) -> list[str]:
        return await self._any(lambda llm: llm.list_models())

    async def model(self) -> str:
        return await self._any(lambda llm: llm.model())

    async def context_window(self) -> int | None:
        return await self._any(lambda llm: llm.context_window())

    async def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int | None:
        return await self._any(lambda llm: llm.count_prompt_tokens(messages))

    async def stream_chat(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[StreamEvent]:
        errors: list[str] = []
        kind = "no_replica"
        for replica in self._order():
            if not replica.breaker.allow():
                errors.append(f"{replica.url}: skipped, failing (next try in {replica.breaker.retry_in_s():.0f} s)")
                continue
            replica.in_flight += 1
            started = False
            try:
                stream = replica.llm.stream_chat(messages, max_tokens=max_tokens, temperature=temperature)
                async with contextlib.aclosing(stream):  # type: ignore[type-var]
                    async for event in stream:
                        if not started:
                            started = True
                            replica.breaker.record_success()
                            replica.answered += 1
                            self._record(replica, "answered")
                        yield event
                return
            except LLMError as exc:
                if started:  # part of the answer is out: no other replica may continue it
                    self._fail(replica, exc, "broken")
                    raise
                self._fail(replica, exc)
                errors.append(f"{replica.url}: {exc}")
                kind = exc.kind
            except BaseException:  # cancelled, or the caller closed the stream: no verdict on the replica
                if not started:
                    replica.breaker.abandon_probe()
                raise
            finally:
                replica.in_flight -= 1
        raise LLMError(f"no replica of {self.name} produced a first token: {'; '.join(errors)}", kind)

    def states(self) -> list[dict[str, object]]:
        """Each replica, in the order configured, as status and GET /models show it (/models leaves out the URL)."""
        return [
            {"replica": i, "base_url": r.url, "state": r.breaker.state, "in_flight": r.in_flight,
             "answered": r.answered, "failed": r.failed}
            for i, r in enumerate(self.replicas)
        ]  # fmt: skip
