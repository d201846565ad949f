"""A circuit breaker: stop calling a dependency that keeps failing, probe it again after a cool-down.

After `failures` consecutive failures the circuit opens and callers fail fast for `cooldown_s`; then one
call probes the dependency (half-open) and its outcome closes or re-opens the circuit. Used per LLM
backend (adapters/llm/fallback.py) and for a Qdrant server (adapters/store.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

CircuitState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures_to_open = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.state: CircuitState = "closed"
        self.consecutive_failures = 0
        self._opened_at = 0.0

    def allow(self) -> bool:
        """May a request go to this backend now? In half-open state only the one probe may."""
        if self.state == "open" and self._clock() - self._opened_at >= self.cooldown_s:
            self.state = "half_open"
            return True
        return self.state == "closed"

    def record_success(self) -> None:
        self.state, self.consecutive_failures = "closed", 0

    def abandon_probe(self) -> None:
        """The probe ended without a verdict (the client went away): wait a cool-down, then probe again.
        Without this the circuit would stay half-open, and the backend unused, for ever."""
        if self.state == "half_open":
            self.state, self._opened_at = "open", self._clock()

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        if self.state == "half_open" or self.consecutive_failures >= self.failures_to_open:
            self.state, self._opened_at = "open", self._clock()

    def retry_in_s(self) -> float:
        return max(0.0, self.cooldown_s - (self._clock() - self._opened_at)) if self.state == "open" else 0.0
