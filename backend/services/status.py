"""What the service holds (spaces) and whether its dependencies answer (readiness checks)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal

from backend.adapters.embedder import Embedder
from backend.adapters.llm import LLMBackend
from backend.adapters.llm.fallback import FallbackLLM
from backend.adapters.store import SpaceInfo, VectorStore

Readiness = Literal["ready", "degraded", "unavailable"]


@dataclass
class Check:
    ok: bool
    latency_ms: float
    detail: str | None = None


class StatusService:
    def __init__(self, store: VectorStore, embedder: Embedder, llm: FallbackLLM, timeout_s: float = 5.0) -> None:
        self.store = store
        self.embedder = embedder
        self.llm = llm
        self.timeout_s = timeout_s

    async def spaces(self) -> list[SpaceInfo]:
        infos = [await self.store.space_info(name) for name in await self.store.list_space_names()]
        return [i for i in infos if i is not None]

    async def readiness(self) -> tuple[Readiness, dict[str, Check]]:
        """ready: everything answers; degraded: an LLM backend is down but another answers."""
        names = ["qdrant", "embedder", *(f"llm_{m.role}" for m in self.llm.members)]
        probes = [
            self._check(self.store.ping()),
            self._check(self.embedder.embed_query("ping")),
            *(self._check(self._llm_check(m.llm)) for m in self.llm.members),
        ]
        checks = dict(zip(names, await asyncio.gather(*probes), strict=True))
        llm_ok = [c.ok for n, c in checks.items() if n.startswith("llm_")]
        if not (checks["qdrant"].ok and checks["embedder"].ok and any(llm_ok)):
            return "unavailable", checks
        return ("ready" if all(llm_ok) else "degraded"), checks

    async def _llm_check(self, llm: LLMBackend) -> str:
        served = await llm.list_models()
        wanted = await llm.model()
        # Ollama lists "name:tag"; a model configured without a tag means ":latest".
        if wanted not in served and f"{wanted}:latest" not in served:
            raise RuntimeError(f"{llm.backend} at {llm.base_url} does not serve {wanted!r}; it has {served}")
        return f"{llm.backend} {wanted} at {llm.base_url}"

    async def _check(self, probe: Awaitable[object]) -> Check:
        start = time.perf_counter()
        try:
            result = await asyncio.wait_for(probe, self.timeout_s)
        except TimeoutError:
            return Check(False, (time.perf_counter() - start) * 1000, f"no answer within {self.timeout_s} s")
        except Exception as exc:
            return Check(False, (time.perf_counter() - start) * 1000, str(exc))
        return Check(True, (time.perf_counter() - start) * 1000, result if isinstance(result, str) else None)
