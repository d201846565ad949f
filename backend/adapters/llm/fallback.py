"""Primary LLM backend with fallbacks: switch only before the first token, skip a backend that keeps failing.

- A backend is abandoned for the next one if it fails to connect, answers an error, sends garbage, or
  sends no token within the first-token timeout. After the first token has gone to the client there is
  no switching: a later failure ends the answer with an error (the caller shows it).
- A circuit breaker per backend: after `failures` consecutive failures it is skipped for `cooldown_s`,
  then one request probes it (half-open); a success closes the circuit again.
- The whole answer is bounded by the total timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from backend.adapters.circuit import CircuitBreaker
from backend.adapters.llm.base import LLMBackend, LLMError, StreamEvent
from backend.adapters.llm.switching import SwapGroup, SwitchFailedError

log = logging.getLogger(__name__)


class AllBackendsFailedError(Exception):
    """No backend produced a first token; `attempts` says what happened to each."""

    def __init__(self, attempts: list[str]) -> None:
        super().__init__("; ".join(attempts))
        self.attempts = attempts


@dataclass
class StartedAnswer:
    """A stream that has produced its first event, from the backend that produced it."""

    backend: str
    model: str
    role: str  # "primary" or "fallback": the first member of the chain answered, or a later one
    first: StreamEvent
    rest: AsyncIterator[StreamEvent]
    ttft_s: float
    name: str = ""  # the named model that answered (LLM_MODELS)
    notices: list[str] = field(default_factory=list)  # why the members before it did not answer


class Activity:
    """The answers one backend is streaming and when it last made progress (a request sent, an event
    received). llama-cpp-python's server handles one request at a time, side requests included: while it
    writes an answer, /v1/models waits. Readiness asks this before it calls such a backend dead."""

    def __init__(self) -> None:
        # answer id -> its deadline; an answer whose stream is dropped unread expires instead of leaking
        self._deadlines: dict[int, float] = {}
        self._ids = itertools.count()
        self.last_progress: float | None = None  # time.monotonic()

    def begin(self, total_s: float) -> int:
        now = time.monotonic()
        answer_id = next(self._ids)
        self._deadlines[answer_id] = now + total_s
        self.last_progress = now
        return answer_id

    def progress(self) -> None:
        self.last_progress = time.monotonic()

    @contextmanager
    def side_request(self, timeout_s: float) -> Iterator[None]:
        """A window lookup or a token count in flight: the server is as busy with it as with an answer
        (llama-cpp-python serves one request at a time), and readiness must see that."""
        request_id = self.begin(timeout_s)
        try:
            yield
        finally:
            self.end(request_id)

    def end(self, answer_id: int) -> None:
        self._deadlines.pop(answer_id, None)

    def in_flight(self) -> int:
        now = time.monotonic()
        for answer_id in [a for a, deadline in self._deadlines.items() if deadline < now]:
            del self._deadlines[answer_id]
        return len(self._deadlines)

    def idle_s(self) -> float | None:
        """Seconds since the last progress; None if there has been none."""
        return None if self.last_progress is None else time.monotonic() - self.last_progress


@dataclass
class Member:
    role: str  # what status and messages call it: "primary" / "fallback", or its name in LLM_MODELS
    llm: LLMBackend
    breaker: CircuitBreaker
    activity: Activity = field(default_factory=Activity)
    name: str = ""  # its name in LLM_MODELS ("default" / "fallback" without it)
    context_tokens: int | None = None  # its own window setting; None: the service's LLM_CONTEXT_TOKENS
    gate: SwapGroup | None = None  # set when it shares a GPU with models it cannot be awake with


# Hooks for the caller's metrics: (backend, error kind) on each failure before a first token, and
# (from backend, to backend, reason) each time an answer moves on to the next backend.
FailureHook = Callable[[str, str], None]
FallbackHook = Callable[[str, str, str], None]


class FallbackLLM:
    def __init__(
        self,
        members: list[Member],
        *,
        first_token_timeout_s: float,
        total_timeout_s: float,
        on_failure: FailureHook | None = None,
        on_fallback: FallbackHook | None = None,
    ) -> None:
        self.members = members
        self.first_token_timeout_s = first_token_timeout_s
        self.total_timeout_s = total_timeout_s
        # Window lookups and token counts are side requests: never let them stall an answer.
        self.side_timeout_s = min(5.0, first_token_timeout_s)
        self._on_failure = on_failure
        self._on_fallback = on_fallback

    async def context_window(self, default: int) -> int:
        """The smallest window among the backends (the prompt is built once, for whichever answers)."""
        windows = []
        for member in self.members:
            if member.breaker.state != "closed":  # failing: ask it nothing, assume the default
                windows.append(member.context_tokens or default)
                continue
            try:
                with member.activity.side_request(self.side_timeout_s):
                    async with asyncio.timeout(self.side_timeout_s):
                        window = await member.llm.context_window()
                windows.append(window or member.context_tokens or default)
            except (LLMError, TimeoutError):
                windows.append(member.context_tokens or default)  # unreachable now: it may answer later
        return min(windows)

    async def primary_model(self) -> str | None:
        """The model the primary serves (None while it cannot be asked): what a stored result is keyed by."""
        member = self.members[0]
        if member.breaker.state != "closed":
            return None
        try:
            async with asyncio.timeout(self.side_timeout_s):
                return await member.llm.model()
        except (LLMError, TimeoutError):
            return None

    async def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int | None:
        """Counted by the first reachable backend that can count; None if none can."""
        for member in self.members:
            if member.breaker.state != "closed":  # do not spend a half-open probe on counting
                continue
            try:
                with member.activity.side_request(self.side_timeout_s):
                    async with asyncio.timeout(self.side_timeout_s):
                        count = await member.llm.count_prompt_tokens(messages)
            except (LLMError, TimeoutError):
                continue
            if count is not None:
                return count
        return None

    async def start(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float) -> StartedAnswer:
        """The first member that produces a first token answers. Raises SwitchQueueFullError when the
        requested model waits for a GPU switch behind too many requests, AllBackendsFailedError when none
        answers."""
        attempts: list[str] = []
        deadline = asyncio.get_running_loop().time() + self.total_timeout_s
        for i, member in enumerate(self.members):
            name = f"{member.role} ({member.llm.backend} at {member.llm.base_url})"
            if not member.breaker.allow():
                attempts.append(
                    f"{name}: skipped, failing repeatedly (next try in {member.breaker.retry_in_s():.0f} s)"
                )
                continue
            start = time.perf_counter()
            release = None
            if member.gate is not None:
                try:
                    release = await member.gate.acquire(member.name, self.total_timeout_s)
                except SwitchFailedError as exc:
                    member.breaker.abandon_probe()
                    attempts.append(f"{name}: {exc}")
                    self._failed(i, member, exc)
                    continue
                except BaseException:
                    member.breaker.abandon_probe()
                    raise
            answer_id = member.activity.begin(self.total_timeout_s)
            try:
                model, stream, first = await self._begin(member.llm, messages, max_tokens, temperature)
            except asyncio.CancelledError:
                member.activity.end(answer_id)
                member.breaker.abandon_probe()
                if release is not None:
                    release()
                raise
            except LLMError as exc:
                member.activity.end(answer_id)
                if release is not None:
                    release()
                member.breaker.record_failure()
                attempts.append(f"{name}: {exc}")
                self._failed(i, member, exc)
                continue
            member.breaker.record_success()
            member.activity.progress()
            rest = _bounded(stream, deadline, self.total_timeout_s, member.activity, answer_id, release)
            return StartedAnswer(member.llm.backend, model, "primary" if i == 0 else "fallback", first, rest,
                                 time.perf_counter() - start, member.name, attempts)  # fmt: skip
        raise AllBackendsFailedError(attempts)

    def _failed(self, i: int, member: Member, exc: LLMError) -> None:
        if self._on_failure:
            self._on_failure(member.llm.backend, exc.kind)
        nxt = next((m for m in self.members[i + 1 :] if m.breaker.state != "open"), None)
        if nxt is not None and self._on_fallback:
            self._on_fallback(member.llm.backend, nxt.llm.backend, exc.kind)
        log.warning("LLM %s (%s) failed before its first token: %s", member.role, member.llm.base_url, exc)

    async def _begin(
        self, llm: LLMBackend, messages: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> tuple[str, AsyncIterator[StreamEvent], StreamEvent]:
        """Model lookup and first event, together bounded by the first-token timeout."""
        stream: AsyncIterator[StreamEvent] | None = None
        try:
            # asyncio.timeout, not wait_for: the stream must stay in this task (its HTTP context does).
            async with asyncio.timeout(self.first_token_timeout_s):
                model = await llm.model()
                stream = llm.stream_chat(messages, max_tokens=max_tokens, temperature=temperature)
                return model, stream, await anext(stream)
        except TimeoutError:
            if stream is not None:
                await _close(stream)
            raise LLMError(
                f"no first token within {self.first_token_timeout_s} s (LLM_FIRST_TOKEN_TIMEOUT_S)",
                "first_token_timeout",
            ) from None
        except StopAsyncIteration:
            raise LLMError("the stream ended before any token", "empty") from None
        except LLMError:
            if stream is not None:
                await _close(stream)
            raise


async def _bounded(
    stream: AsyncIterator[StreamEvent],
    deadline: float,
    total_s: float,
    activity: Activity,
    answer_id: int,
    release: Callable[[], None] | None = None,
) -> AsyncIterator[StreamEvent]:
    """The rest of a stream, cut with an LLMError when the whole answer passes its deadline."""
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    event = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise LLMError(
                    f"the answer took longer than {total_s} s (LLM_TOTAL_TIMEOUT_S)", "total_timeout"
                ) from None
            activity.progress()
            yield event
    finally:
        activity.end(answer_id)
        if release is not None:  # the model may be put to sleep for another once its answers are done
            release()
        await _close(stream)


async def _close(stream: AsyncIterator[StreamEvent]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a broken stream must not hide the error being reported
            log.debug("closing an LLM stream failed", exc_info=True)
