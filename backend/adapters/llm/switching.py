"""Models that share one GPU and cannot be awake together: wake the one a request needs, put the other to sleep.

A swap group holds vLLM servers in sleep mode (VLLM_SERVER_DEV_MODE=1). At most one of them is awake:
- A request for the awake model enters at once, unless a switch is pending; then it waits, so that the
  drain the switch waits for comes to an end.
- A request for a sleeping model waits (at most `max_waiting` requests per group wait; past that
  `SwitchQueueFullError`, a 429 to the client). The first one starts a switch: the awake model's answers
  drain (at most `drain_s`), it is put to sleep, the wanted one is woken, and every request waiting for it
  enters together. Requests for the model just put to sleep then lead the next switch back: waiting
  requests are served in batches, one switch per batch, not one switch per request.
- The switch runs in a task of its own: a client that leaves does not stop it half way.
- A switch that fails (drain too long, /sleep or /wake_up refused, slow past `timeout_s`, server gone)
  puts the previous model back if it had been put to sleep, and the requests waiting for the target get
  `SwitchFailedError` (an LLMError: the fallback chain takes them, the awake model first).
A server that cannot be reached is taken as asleep: a dead process holds no GPU memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from backend.adapters.llm.base import LLMError

log = logging.getLogger(__name__)


class SleepCapable(Protocol):
    base_url: str

    async def sleep(self, level: int) -> None: ...

    async def wake_up(self) -> None: ...

    async def is_sleeping(self) -> bool: ...


class SwitchFailedError(LLMError):
    """The wanted model could not be made the awake one; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "switch_failed")


class SwitchQueueFullError(Exception):
    """Too many requests already wait for a switch in this group; retry after `retry_after_s`."""

    def __init__(self, group: str, waiting: int, retry_after_s: float) -> None:
        super().__init__(
            f"{waiting} requests already wait for a model switch on GPU group {group!r} (LLM_SWITCH_QUEUE); "
            f"retry in {retry_after_s:.0f} s"
        )
        self.retry_after_s = retry_after_s


@dataclass
class SwitchRecord:
    """One switch, for logs and metrics: what slept, what woke, how long each took, and how it ended."""

    group: str
    from_model: str | None
    to_model: str
    drain_ms: float
    sleep_ms: float | None
    wake_ms: float | None
    outcome: str  # "ok", or what failed: "drain_timeout", "sleep_failed", "wake_failed"
    detail: str = ""


SwitchHook = Callable[[SwitchRecord], None]


@dataclass
class Sleeper:
    """A member of a group: the server's sleep controls and the level it sleeps at."""

    server: SleepCapable
    level: int = 1


class SwapGroup:
    def __init__(
        self,
        name: str,
        members: dict[str, Sleeper],
        *,
        preferred: str | None = None,
        drain_s: float,
        timeout_s: float,
        max_waiting: int,
        on_switch: SwitchHook | None = None,
    ) -> None:
        self.name = name
        self.members = members
        self.preferred = preferred if preferred in members else next(iter(members))
        self.drain_s = drain_s
        self.timeout_s = timeout_s
        self.max_waiting = max_waiting
        self._on_switch = on_switch
        self.awake: str | None = None
        self.known = False  # whether `awake` reflects the servers (found out on first use, again after doubt)
        # model -> {lease id: deadline}: a lease whose answer was dropped unread expires instead of blocking drains
        self._leases: dict[str, dict[int, float]] = {name: {} for name in members}
        self._lease_ids = itertools.count()
        self.waiting = 0
        self._waiting_for = dict.fromkeys(members, 0)
        self.switching_to: str | None = None
        self.last_switch_s = 0.0
        self._attempts = 0
        self._failures: dict[str, tuple[int, str]] = {}  # target -> (attempt number, why it failed)
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    # --- public -----------------------------------------------------------------------------------
    def in_flight(self, name: str) -> int:
        now = time.monotonic()
        leases = self._leases[name]
        for lease in [lease for lease, deadline in leases.items() if deadline < now]:
            del leases[lease]
        return len(leases)

    async def acquire(self, name: str, hold_s: float) -> Callable[[], None]:
        """Wait until `name` is awake and keep it awake (for at most `hold_s`); returns the release to call
        when the answer ends."""
        if not self.known and self.switching_to is None:
            self._start(None)  # find out which model is awake, as a switch would, one at a time
        if self._enters(name):
            return self._hold(name, hold_s)
        if self.waiting >= self.max_waiting:
            raise SwitchQueueFullError(self.name, self.waiting, max(1.0, self.last_switch_s or self.timeout_s))
        self.waiting += 1
        self._waiting_for[name] += 1
        # a switch to `name` already under way counts as this request's own
        since = self._attempts - 1 if self.switching_to == name else self._attempts
        try:
            async with asyncio.timeout(self.drain_s + 3 * self.timeout_s):
                while True:
                    if self._enters(name):
                        return self._hold(name, hold_s)
                    failed = self._failures.get(name)
                    if failed is not None and failed[0] > since:
                        raise SwitchFailedError(failed[1])
                    if self.switching_to is None and not self._awake_one_has_waiters():
                        self._start(name)
                    await self._change()
        except TimeoutError:
            raise SwitchFailedError(
                f"model {name!r} was not awake after {self.drain_s + 3 * self.timeout_s:.0f} s of waiting "
                f"(GPU group {self.name!r})"
            ) from None
        finally:
            self.waiting -= 1
            self._waiting_for[name] -= 1
            self._notify()  # a request that stopped waiting may be what another waits for

    # --- state ------------------------------------------------------------------------------------
    def _enters(self, name: str) -> bool:
        return self.known and self.awake == name and self.switching_to is None

    def _awake_one_has_waiters(self) -> bool:
        """Requests for the model just woken have yet to enter: the batch a switch was for goes in first."""
        return self.known and self.awake is not None and self._waiting_for[self.awake] > 0

    def _hold(self, name: str, hold_s: float) -> Callable[[], None]:
        lease = next(self._lease_ids)
        self._leases[name][lease] = time.monotonic() + hold_s

        def release() -> None:
            if self._leases[name].pop(lease, None) is not None:
                self._notify()

        return release

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _change(self) -> None:
        await self._changed.wait()

    def _start(self, target: str | None) -> None:
        """Begin a switch to `target` (None: only find out which model is awake) in a task of its own."""
        self._attempts += 1
        self.switching_to = target or "?"
        self._task = asyncio.create_task(self._run(target, self._attempts), name=f"switch {self.name}")

    async def _run(self, target: str | None, attempt: int) -> None:
        try:
            if not self.known:
                await self._discover()
            if target is not None and self.awake != target:
                await self._switch(target, attempt)
        except Exception as exc:  # a bug here must not leave the group switching forever
            log.exception("switch in GPU group %s failed", self.name)
            self.known = False
            if target is not None:
                self._failures[target] = (attempt, f"switching to {target!r} failed: {exc}")
        finally:
            self.switching_to = None
            self._notify()

    # --- the switch itself ------------------------------------------------------------------------
    async def _discover(self) -> None:
        """Ask each server whether it sleeps; if several are awake, keep the preferred one awake."""
        answers = await asyncio.gather(*(self._ask_sleeping(n) for n in self.members))
        awake = [n for n, sleeping in zip(self.members, answers, strict=True) if sleeping is False]
        keep = self.preferred if self.preferred in awake else (awake[0] if awake else None)
        for other in awake:
            if other != keep:
                log.warning("GPU group %s: %s and %s were both awake; putting %s to sleep", self.name, keep, other,
                            other)  # fmt: skip
                await self._call(self.members[other].server.sleep(self.members[other].level))
        self.awake, self.known = keep, True
        log.info("GPU group %s: awake model %s", self.name, keep, extra={"fields": {"group": self.name}})

    async def _ask_sleeping(self, name: str) -> bool | None:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self.members[name].server.is_sleeping()
        except (LLMError, TimeoutError) as exc:
            log.warning("GPU group %s: cannot ask %s whether it sleeps: %s", self.name, name, exc)
            return None

    async def _switch(self, target: str, attempt: int) -> None:
        previous = self.awake
        began = time.perf_counter()
        record = SwitchRecord(self.name, previous, target, 0.0, None, None, "ok")
        try:
            if previous is not None:
                if not await self._drained(previous):
                    record.outcome = "drain_timeout"
                    raise SwitchFailedError(
                        f"model {previous!r} still had {self.in_flight(previous)} answer(s) running after "
                        f"{self.drain_s:.0f} s (LLM_SWITCH_DRAIN_S), so {target!r} was not woken"
                    )
                record.drain_ms = (time.perf_counter() - began) * 1000
                record.sleep_ms, error = await self._timed(self.members[previous].server.sleep(
                    self.members[previous].level))  # fmt: skip
                if error is not None and error.kind != "connect":  # a server gone holds no memory: go on
                    record.outcome = "sleep_failed"
                    self.known = False  # it may or may not sleep now: ask again before the next request
                    raise SwitchFailedError(f"putting {previous!r} to sleep failed: {error}")
                self.awake = None
            record.wake_ms, error = await self._timed(self.members[target].server.wake_up())
            if error is not None:
                record.outcome = "wake_failed"
                await self._restore(previous, target, error)
                raise SwitchFailedError(f"waking {target!r} failed: {error}")
            self.awake = target
        except SwitchFailedError as exc:
            record.detail = str(exc)
            self._failures[target] = (attempt, str(exc))
            log.warning("GPU group %s: %s", self.name, exc)
        finally:
            self.last_switch_s = time.perf_counter() - began
            log.info("GPU group %s: switch %s -> %s %s", self.name, previous, target, record.outcome,
                     extra={"fields": {k: v for k, v in vars(record).items() if k != "detail"}})  # fmt: skip
            if self._on_switch is not None:
                self._on_switch(record)

    async def _drained(self, name: str) -> bool:
        try:
            async with asyncio.timeout(self.drain_s):
                while self.in_flight(name) > 0:
                    with contextlib.suppress(TimeoutError):  # look again now and then: leases expire
                        async with asyncio.timeout(1.0):
                            await self._change()
            return True
        except TimeoutError:
            return False

    async def _restore(self, previous: str | None, target: str, error: LLMError) -> None:
        """After a failed wake: the target back to sleep if it may be half awake, the previous model awake."""
        if error.kind != "connect":
            await self._call(self.members[target].server.sleep(self.members[target].level))
        if previous is not None:
            _, again = await self._timed(self.members[previous].server.wake_up())
            self.awake = previous if again is None else None
            if again is not None:
                log.error("GPU group %s: %s could not be woken again either: %s", self.name, previous, again)
        self.known = self.awake is not None

    async def _timed(self, call: Awaitable[None]) -> tuple[float, LLMError | None]:
        began = time.perf_counter()
        error = await self._call(call)
        return (time.perf_counter() - began) * 1000, error

    async def _call(self, call: Awaitable[None]) -> LLMError | None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await call
        except TimeoutError:
            return LLMError(f"no answer within {self.timeout_s:.0f} s (LLM_SWITCH_TIMEOUT_S)", "timeout")
        except LLMError as exc:
            return exc
        return None
