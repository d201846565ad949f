"""What the service holds (spaces) and whether its dependencies answer (readiness checks)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal

from backend.adapters.embedder import Embedder
from backend.adapters.llm import LLMBackend
from backend.adapters.llm.fallback import Member
from backend.adapters.llm.models import ModelRouter
from backend.adapters.llm.replicas import ReplicatedLLM
from backend.adapters.store import SpaceInfo, VectorStore

Readiness = Literal["ready", "degraded", "unavailable"]


@dataclass
class Check:
    ok: bool
    latency_ms: float
    detail: str | None = None
    timed_out: bool = False  # no answer within the probe's timeout (rather than a refusal or an error)


class StatusService:
    def __init__(self, store: VectorStore, embedder: Embedder, llm: ModelRouter, timeout_s: float = 5.0) -> None:
        self.store = store
        self.embedder = embedder
        self.llm = llm
        self.timeout_s = timeout_s

    async def spaces(self) -> list[SpaceInfo]:
        infos = [await self.store.space_info(name) for name in await self.store.list_space_names()]
        return [i for i in infos if i is not None]

    def models(self) -> list[dict[str, object]]:
        """The named models, in LLM_MODELS order: what a request may name, and where each runs."""
        out = []
        for m in self.llm.members:
            out.append({
                "name": m.name, "default": m.name == self.llm.default, "backend": m.llm.backend,
                "base_url": m.llm.base_url, "swap_group": m.gate.name if m.gate else None,
                "awake": (m.gate.awake == m.name if m.gate.known else None) if m.gate else True,
                "replicas": m.llm.states() if isinstance(m.llm, ReplicatedLLM) else None,
            })  # fmt: skip
        return out

    def check_model(self, name: str | None) -> str:
        """The model a request gets (the default for None); UnknownModelError for a name not configured."""
        return self.llm.check(name)

    async def readiness(self) -> tuple[Readiness, dict[str, Check]]:
        """ready: everything answers; degraded: an LLM backend is down but another answers."""
        names = ["qdrant", "embedder", *(f"llm_{m.role}" for m in self.llm.members)]
        setting = "QDRANT_PATH" if self.store.embedded else "QDRANT_URL"
        probes = [
            self._check(self.store.ping(), f"the vector store at {self.store.location} ({setting})"),
            self._check(self.embedder.embed_query("ping"), f"the embedder {self.embedder.model_name}"),
            *(self._llm_check(m) for m in self.llm.members),
        ]
        checks = dict(zip(names, await asyncio.gather(*probes), strict=True))
        if checks["qdrant"].ok and (out := self.store.nodes_out_of_rotation()):
            checks["qdrant"].detail = f"{checks['qdrant'].detail or 'ok'}; nodes out of rotation: {', '.join(out)}"
        llm_ok = [c.ok for n, c in checks.items() if n.startswith("llm_")]
        if not (checks["qdrant"].ok and checks["embedder"].ok and any(llm_ok)):
            return "unavailable", checks
        return ("ready" if all(llm_ok) else "degraded"), checks

    async def _llm_check(self, member: Member) -> Check:
        """A backend that does not answer the probe in time but is streaming an answer that made progress
        within the first-token timeout is busy, not down: llama-cpp-python's server makes every other
        request wait while it writes one answer, and a 503 then would have a healthy service restarted."""
        check = await self._check(self._llm_serves(member.llm), f"{member.llm.backend} at {member.llm.base_url}")
        if check.ok and member.gate is not None and member.gate.known and member.gate.awake != member.name:
            check.detail = f"{check.detail}; asleep (GPU group {member.gate.name}: woken when a request names it)"
        if check.ok and isinstance(member.llm, ReplicatedLLM):
            out = [f"{r['base_url']} ({r['state']})" for r in member.llm.states() if r["state"] != "closed"]
            if out:  # still ready: the other replicas answer
                check.detail = f"{check.detail}; replicas out of rotation: {', '.join(out)}"
        in_flight, idle_s = member.activity.in_flight(), member.activity.idle_s()
        window_s = self.llm.first_token_timeout_s
        if check.timed_out and in_flight and idle_s is not None and idle_s <= window_s:
            llm = member.llm
            detail = (f"{llm.backend} at {llm.base_url} busy: {in_flight} answer(s) in flight, last progress "
                      f"{idle_s:.1f} s ago (within LLM_FIRST_TOKEN_TIMEOUT_S {window_s:g} s); it did not "
                      f"answer the probe within {self.timeout_s:g} s")  # fmt: skip
            return Check(True, check.latency_ms, detail)
        return check

    async def _llm_serves(self, llm: LLMBackend) -> str:
        served = await llm.list_models()
        wanted = await llm.model()
        # Ollama lists "name:tag"; a model configured without a tag means ":latest".
        if wanted not in served and f"{wanted}:latest" not in served:
            raise RuntimeError(f"{llm.backend} at {llm.base_url} does not serve {wanted!r}; it has {served}")
        return f"{llm.backend} {wanted} at {llm.base_url}"

    async def _check(self, probe: Awaitable[object], what: str) -> Check:
        """`what` names the probed part in a timeout's detail (an error's message names it already)."""
        start = time.perf_counter()
        try:
            result = await asyncio.wait_for(probe, self.timeout_s)
        except TimeoutError:
            detail = f"{what}: no answer within {self.timeout_s:g} s"
            return Check(False, (time.perf_counter() - start) * 1000, detail, True)
        except Exception as exc:
            return Check(False, (time.perf_counter() - start) * 1000, str(exc))
        return Check(True, (time.perf_counter() - start) * 1000, result if isinstance(result, str) else None)
