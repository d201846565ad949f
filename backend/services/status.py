"""What the service holds (spaces) and whether its dependencies answer (readiness checks)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass

from backend.adapters.embedder import Embedder
from backend.adapters.llm import OpenAICompatLLM
from backend.adapters.store import SpaceInfo, VectorStore


@dataclass
class Check:
    ok: bool
    latency_ms: float
    detail: str | None = None


class StatusService:
    def __init__(self, store: VectorStore, embedder: Embedder, llm: OpenAICompatLLM, timeout_s: float = 5.0) -> None:
        self.store = store
        self.embedder = embedder
        self.llm = llm
        self.timeout_s = timeout_s

    async def spaces(self) -> list[SpaceInfo]:
        infos = [await self.store.space_info(name) for name in await self.store.list_space_names()]
        return [i for i in infos if i is not None]

    async def readiness(self) -> dict[str, Check]:
        store, embedder, llm = await asyncio.gather(
            self._check(self.store.ping()),
            self._check(self.embedder.embed_query("ping")),
            self._check(self._llm_check()),
        )
        return {"qdrant": store, "embedder": embedder, "llm": llm}

    async def _llm_check(self) -> None:
        served = await self.llm.list_models()
        wanted = await self.llm.model()
        if wanted not in served:
            raise RuntimeError(f"model {wanted!r} is not served; the server has {served}")

    async def _check(self, probe: Awaitable[object]) -> Check:
        start = time.perf_counter()
        try:
            await asyncio.wait_for(probe, self.timeout_s)
        except TimeoutError:
            return Check(False, (time.perf_counter() - start) * 1000, f"no answer within {self.timeout_s} s")
        except Exception as exc:
            return Check(False, (time.perf_counter() - start) * 1000, str(exc))
        return Check(True, (time.perf_counter() - start) * 1000)
