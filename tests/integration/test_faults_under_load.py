"""Faults during a load of asks: the primary LLM (real llama.cpp) turns slow, then returns garbage, then
refuses connections, then recovers, while four clients keep asking. Every ask must be answered (by the
fallback, the Ollama stand-in, while the primary misbehaves) within a bound, and the primary must take
the traffic back after it recovers, without a restart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from backend.config import Settings
from backend.main import create_app
from tests.conftest import LlamaServer
from tests.faults import FaultTransport, Mode
from tests.integration.test_llm_backends import DOC, ollama, with_fallback  # noqa: F401 (fixture)
from tests.servers import ThreadedServer, free_port
from tests.standins.ollama import StandinServer

log = logging.getLogger(__name__)
FIRST_TOKEN_TIMEOUT_S = 6.0
PHASES: list[tuple[Mode | None, float]] = [(None, 6), ("slow", 12), ("garbage", 6), ("refuse", 6), (None, 14)]
BOUND_S = 20.0  # first-token timeout + the fallback's answer + queueing behind three other clients


@pytest.mark.slow
def test_asks_under_load_survive_a_slow_a_garbage_and_a_dead_primary_and_it_recovers(
    make_settings: Callable[..., Settings],
    llm_server: LlamaServer,
    ollama: StandinServer,  # noqa: F811
) -> None:
    faults = FaultTransport(llm_server.base_url, None, delay_s=30)
    settings = with_fallback(make_settings, llm_server, ollama, llm_first_token_timeout_s=FIRST_TOKEN_TIMEOUT_S,
                             llm_breaker_failures=2, llm_breaker_cooldown_s=2.0, llm_max_tokens=24,
                             rate_limit_per_minute=0)  # fmt: skip
    server = ThreadedServer(create_app(settings, http_transport=faults), free_port())
    records: list[dict[str, Any]] = []
    try:
        files = [("files", (name, data)) for name, data in DOC.items()]
        httpx.post(f"{server.base_url}/documents", data={"space_id": "s"}, files=files, timeout=60).raise_for_status()

        async def drive() -> None:
            phase = {"name": "healthy"}
            started = time.monotonic()
            end = started + sum(seconds for _, seconds in PHASES)

            async def schedule() -> None:
                for mode, seconds in PHASES:
                    faults.mode = mode
                    phase["name"] = mode or ("healthy" if not records else "recovered")
                    await asyncio.sleep(seconds)

            async def client(http: httpx.AsyncClient) -> None:
                while time.monotonic() < end:
                    name, t0 = phase["name"], time.monotonic()
                    body = {"q": "What is the maximum pressure of the Glimmer pump?", "space_id": "s"}
                    try:
                        resp = await http.post("/ask", json=body)
                        data = resp.json()
                        records.append({"phase": name, "status": resp.status_code, "backend": data.get("backend"),
                                        "s": time.monotonic() - t0, "at": t0 - started,
                                        "answer": data.get("answer", "")})  # fmt: skip
                    except httpx.HTTPError as exc:
                        records.append({"phase": name, "status": type(exc).__name__, "s": time.monotonic() - t0})

            async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as http:
                await asyncio.gather(schedule(), *(client(http) for _ in range(4)))

        asyncio.run(drive())
    finally:
        server.stop()

    by_phase: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_phase.setdefault(r["phase"], []).append(r)
    log.info("faults under load: %s", {p: (len(rs), round(max(r["s"] for r in rs), 1),
             sorted({str(r.get("backend")) for r in rs})) for p, rs in by_phase.items()})  # fmt: skip
    assert set(by_phase) == {"healthy", "slow", "garbage", "refuse", "recovered"}, set(by_phase)
    assert all(r["status"] == 200 for r in records), [r for r in records if r["status"] != 200][:5]
    assert max(r["s"] for r in records) < BOUND_S
    wrong = [r for r in records if r["backend"] == "ollama" and "9 bar" not in r["answer"]]
    assert not wrong, [r["answer"] for r in wrong[:3]]
    for bad in ("slow", "garbage", "refuse"):
        # Asks that began once the fault was in place (a slow primary is only known after the timeout) and
        # reached the LLM before the phase ended: one begun in its last moments may ask the primary after
        # it has recovered (embedding and search come first, and take longer on a loaded machine).
        settle = FIRST_TOKEN_TIMEOUT_S if bad == "slow" else 1.0
        length = next(seconds for mode, seconds in PHASES if mode == bad)
        begin, end = _phase_start(bad) + settle, _phase_start(bad) + length - 1.0
        late = [r for r in by_phase[bad] if begin < r["at"] < end]
        assert late and all(r["backend"] == "ollama" for r in late), (
            bad,
            [(round(r["at"], 2), r["backend"]) for r in by_phase[bad]],
        )
    # Recovery without a restart: once the breaker's cooldown has passed, the primary answers again. (Under
    # this load a few asks still go to the fallback when the single llama.cpp queue outlasts the timeout.)
    settled = [r for r in by_phase["recovered"] if r["at"] > _phase_start("recovered") + 4]
    back = sum(r["backend"] == "openai" for r in settled)
    assert settled and back >= len(settled) / 3, [(round(r["at"], 1), r["backend"]) for r in settled]


def _phase_start(name: str) -> float:
    start = 0.0
    for index, (mode, seconds) in enumerate(PHASES):
        if (mode or ("healthy" if index == 0 else "recovered")) == name:
            return start
        start += seconds
    raise KeyError(name)
