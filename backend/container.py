"""Builds the adapters and services from settings, checks them at start-up, and closes them."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from pydantic import SecretStr

from backend.adapters.circuit import CircuitBreaker
from backend.adapters.embedder import Embedder
from backend.adapters.llm import LLMBackend, OpenAICompatLLM
from backend.adapters.llm.fallback import Member
from backend.adapters.llm.models import ModelRouter
from backend.adapters.llm.ollama import OllamaLLM
from backend.adapters.llm.replicas import Replica, ReplicatedLLM
from backend.adapters.llm.switching import Sleeper, SwapGroup, SwitchRecord
from backend.adapters.qdrant_nodes import ClusterOptions
from backend.adapters.reranker import Reranker
from backend.adapters.store import VectorStore
from backend.config import ModelSpec, Settings
from backend.observability import Metrics
from backend.services.answering import AnswerService
from backend.services.conversation import ConversationService
from backend.services.ingest import IngestService
from backend.services.migration import MigrationService
from backend.services.retrieval import RetrievalConfig, RetrievalService
from backend.services.status import StatusService
from backend.services.summarizing import SummaryService

log = logging.getLogger(__name__)


def open_store(settings: Settings, metrics: Metrics | None = None) -> VectorStore:
    """`metrics`: the service's; it builds the embedded store's search index in the background (index_cli,
    which passes none, builds it itself after a run)."""
    return VectorStore(
        url=settings.qdrant_url,
        api_key=settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None,
        path=settings.qdrant_path,
        prefix=settings.collection_prefix,
        timeout_s=settings.qdrant_timeout_s,
        breaker_failures=settings.qdrant_breaker_failures,
        breaker_cooldown_s=settings.qdrant_breaker_cooldown_s,
        index_after=settings.qdrant_index_after,
        min_free_mb=settings.qdrant_min_free_mb,
        cluster=cluster_options(settings),
        background_index=metrics is not None,
        on_index_build=metrics.index_built if metrics is not None else None,
        quantization=settings.qdrant_quantization,
        hnsw_ef=settings.qdrant_hnsw_ef,
        sentence_vectors=settings.hybrid_sentence_weight > 0,
    )


def cluster_options(settings: Settings) -> ClusterOptions:
    return ClusterOptions(
        shard_number=settings.qdrant_shard_number,
        replication_factor=settings.qdrant_replication_factor,
        write_consistency_factor=settings.qdrant_write_consistency_factor,
        read_consistency=settings.qdrant_read_consistency,
        write_ordering=settings.qdrant_write_ordering,
    )


def load_embedder(settings: Settings) -> Embedder:
    return Embedder(
        settings.embedding_model,
        device=settings.embedding_device,
        batch_size=settings.embedding_batch_size,
        threads=settings.embedding_threads,
        query_prefix=settings.embedding_query_prefix,
        passage_prefix=settings.embedding_passage_prefix,
    )


def build_ingest(settings: Settings, store: VectorStore, embedder: Embedder, metrics: Metrics) -> IngestService:
    return IngestService(
        store,
        embedder,
        metrics,
        chunk_tokens=settings.chunk_tokens,
        overlap_tokens=settings.chunk_overlap_tokens,
        batch_size=settings.upsert_batch_size,
        lexical_window_words=settings.lexical_window_words,
        conversation_tz=ZoneInfo(settings.conversation_timezone),
    )


def retrieval_config(settings: Settings) -> RetrievalConfig:
    return RetrievalConfig(
        mode=settings.retrieval_mode,
        fusion=settings.hybrid_fusion,
        dense_weight=settings.hybrid_dense_weight,
        dense_weight_cyrillic=settings.hybrid_dense_weight_cyrillic,
        cross_language_offset=settings.cross_language_offset,
        sentence_weight=settings.hybrid_sentence_weight,
        fusion_power=settings.hybrid_fusion_power,
        candidates=settings.retrieval_candidates,
        max_chunks_per_document=settings.max_chunks_per_document,
        mmr_lambda=settings.mmr_lambda,
        reranker_top_n=settings.reranker_top_n,
    )


def load_reranker(settings: Settings) -> Reranker | None:
    if not settings.reranker_model:
        return None
    device = None if settings.embedding_device == "auto" else settings.embedding_device
    return Reranker(settings.reranker_model, device=device)


def build_backend(
    kind: str,
    http: httpx.AsyncClient,
    base_url: str,
    model: str | None,
    api_key: SecretStr | None,
    settings: Settings,
    context_tokens: int | None = None,
) -> LLMBackend:
    if kind == "ollama":
        # num_ctx = the budget the prompt is built for, so Ollama never cuts it silently.
        num_ctx = context_tokens or settings.llm_context_tokens
        return OllamaLLM(http, base_url, model=model, num_ctx=num_ctx, keep_alive=settings.ollama_keep_alive,
                         repeat_penalty=settings.llm_repeat_penalty)  # fmt: skip
    key = api_key.get_secret_value() if api_key else None
    return OpenAICompatLLM(http, base_url, model=model, api_key=key, backend=kind,
                           repeat_penalty=settings.llm_repeat_penalty)  # fmt: skip


def build_models(settings: Settings, http: httpx.AsyncClient, metrics: Metrics) -> ModelRouter:
    """One member per named model, the swap groups of those sharing a GPU, and a chain for each model."""
    specs = settings.model_specs
    legacy = settings.llm_models is None  # status and messages keep calling them primary / fallback
    members: list[Member] = []
    servers: dict[str, LLMBackend] = {}
    for spec in specs:
        one = [build_backend(spec.backend, http, url, spec.model, spec.api_key, settings, spec.context_tokens)
               for url in spec.base_urls]  # fmt: skip
        servers[spec.name] = one[0] if len(one) == 1 else replicated(spec.name, one, settings, metrics)
        label = ("primary" if spec.role == "default" else "fallback") if legacy else spec.name
        breaker = CircuitBreaker(settings.llm_breaker_failures, settings.llm_breaker_cooldown_s)
        members.append(Member(label, servers[spec.name], breaker, name=spec.name, context_tokens=spec.context_tokens))
    default = next(spec.name for spec in specs if spec.role == "default")
    groups = build_swap_groups(settings, specs, servers, default, metrics)
    for member in members:
        member.gate = next((g for g in groups if member.name in g.members), None)
    return ModelRouter(
        members,
        default=default,
        fallbacks=[spec.name for spec in specs if spec.role == "fallback"],
        groups=groups,
        first_token_timeout_s=settings.llm_first_token_timeout_s,
        total_timeout_s=settings.llm_total_timeout_s,
        on_failure=lambda backend, kind: metrics.llm_requests.labels(backend, kind).inc(),
        on_fallback=lambda src, dst, why: metrics.llm_fallbacks.labels(src, dst, why).inc(),
    )


def replicated(name: str, servers: list[LLMBackend], settings: Settings, metrics: Metrics) -> ReplicatedLLM:
    """Replicas of one model, each with its own circuit breaker (same thresholds as a model's)."""
    replicas = [Replica(s, CircuitBreaker(settings.llm_breaker_failures, settings.llm_breaker_cooldown_s))
                for s in servers]  # fmt: skip
    return ReplicatedLLM(name, replicas,
                         on_request=lambda model, url, outcome: metrics.llm_replica_requests.labels(
                             model, url, outcome).inc())  # fmt: skip


def build_swap_groups(
    settings: Settings, specs: list[ModelSpec], servers: dict[str, LLMBackend], default: str, metrics: Metrics
) -> list[SwapGroup]:
    def record(switch: SwitchRecord) -> None:
        metrics.llm_switches.labels(switch.group, switch.from_model or "-", switch.to_model, switch.outcome).inc()
        phases = [("drain", switch.from_model, switch.drain_ms), ("sleep", switch.from_model, switch.sleep_ms),
                  ("wake", switch.to_model, switch.wake_ms)]  # fmt: skip
        for phase, model, ms in phases:
            if model is not None and ms is not None:
                metrics.llm_switch_seconds.labels(switch.group, model, phase).observe(ms / 1000)

    groups = []
    for group in sorted({spec.swap_group for spec in specs if spec.swap_group}):
        sleepers: dict[str, Sleeper] = {}
        for spec in specs:
            server = servers[spec.name]
            if spec.swap_group == group and isinstance(server, OpenAICompatLLM):
                sleepers[spec.name] = Sleeper(server, spec.sleep_level)
        groups.append(SwapGroup(
            group, sleepers, preferred=default, drain_s=settings.llm_switch_drain_s,
            timeout_s=settings.llm_switch_timeout_s, max_waiting=settings.llm_switch_queue, on_switch=record,
        ))  # fmt: skip
    return groups


async def check_space(store: VectorStore, ingest: IngestService, space: str) -> None:
    """Refuse a space built with another embedder; finish writes that a crash interrupted; say which
    spaces need `cli.migrate` (they still answer, dense only or with their old lexical vectors)."""
    await store.check_embedding(space, ingest.embedder.model_name, ingest.embedder.dimension)
    if why := await MigrationService(store, ingest).reasons(space):
        log.warning("space %s needs a migration (%s): python -m cli.migrate --space %s", space, "; ".join(why),
                    space)  # fmt: skip
    schema = await store.space_schema(space)
    if schema is not None and not schema.sentences:  # created before 2026-12-06: answers as it did
        log.info("space %s has no sentence vectors (created before them); its searches use each chunk's own "
                 "vector; re-index it to add them: python -m cli.index_cli --dir <folder> --space %s --recreate",
                 space, space)  # fmt: skip
    await ingest.repair(space)


async def check_spaces(store: VectorStore, ingest: IngestService) -> None:
    for space in await store.list_space_names():
        await check_space(store, ingest, space)


@dataclass
class Container:
    settings: Settings
    metrics: Metrics
    http: httpx.AsyncClient
    store: VectorStore
    embedder: Embedder
    llm: ModelRouter
    ingest: IngestService
    retrieval: RetrievalService
    answers: AnswerService
    status: StatusService
    conversations: ConversationService
    summaries: SummaryService

    @classmethod
    async def open(
        cls, settings: Settings, metrics: Metrics | None = None, transport: httpx.AsyncBaseTransport | None = None
    ) -> Container:
        """`transport` replaces the network under the shared HTTP client (tests inject faults with it)."""
        metrics = metrics or Metrics()
        store = open_store(settings, metrics)
        try:
            embedder = load_embedder(settings)
            ingest = build_ingest(settings, store, embedder, metrics)
            await check_spaces(store, ingest)
            for space in await store.list_space_names():  # one that became due while the service was down
                store.note_written(space)
            reranker = load_reranker(settings)
        except BaseException:
            store.close()
            raise
        # One client for every LLM call: connection pooling, and limits that apply service-wide.
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.llm_read_timeout_s, connect=settings.llm_connect_timeout_s),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            transport=transport,
        )
        llm = build_models(settings, http, metrics)
        retrieval = RetrievalService(store, embedder, metrics, retrieval_config(settings), reranker)
        answers = AnswerService(
            retrieval,
            llm,
            metrics,
            max_tokens=settings.llm_max_tokens,
            temperature=settings.llm_temperature,
            context_tokens=settings.llm_context_tokens,
            check_citations=settings.citation_check,
            relevance_floor=settings.relevance_floor,
            cross_language_floor=settings.cross_language_relevance_floor,
            relevance_word_match=settings.relevance_word_match,
            passage_cutoff=settings.answer_passage_cutoff,
        )
        log.info(
            "service ready",
            extra={
                "fields": {
                    "store": "embedded" if store.embedded else "server",
                    "store_location": store.location,
                    "embedding_model": embedder.model_name,
                    "retrieval_mode": settings.retrieval_mode,
                    "reranker": settings.reranker_model,
                    "llm_models": {m.name: m.llm.base_url for m in llm.members},
                }
            },
        )
        status = StatusService(store, embedder, llm, timeout_s=settings.ready_timeout_s)
        conversations = ConversationService(
            llm, enabled=settings.chat_rewrite, max_tokens=settings.chat_rewrite_max_tokens
        )
        summaries = SummaryService(
            store, llm, metrics, max_tokens=settings.llm_max_tokens, temperature=settings.llm_temperature,
            context_tokens=settings.llm_context_tokens, max_chunks=settings.max_summary_chunks,
            batch_tokens=settings.summary_batch_tokens, check=settings.citation_check,
        )  # fmt: skip
        return cls(settings, metrics, http, store, embedder, llm, ingest, retrieval, answers, status, conversations,
                   summaries)  # fmt: skip

    async def close(self) -> None:
        await self.store.stop_index_builds()
        await self.http.aclose()
        if self.retrieval.reranker is not None:
            self.retrieval.reranker.close()
        self.embedder.close()
        self.store.close()


@asynccontextmanager
async def throwaway_container(settings: Settings, **overrides: object) -> AsyncIterator[Container]:
    """The service's parts on an embedded store in a temporary folder, removed afterwards: what the
    evaluation and the benchmarks index into, never the service's own store. `overrides` are settings."""
    with tempfile.TemporaryDirectory(prefix="rag-throwaway-") as tmp:
        update = {"qdrant_url": None, "qdrant_path": Path(tmp) / "qdrant", **overrides}
        container = await Container.open(settings.model_copy(update=update))
        try:
            yield container
        finally:
            await container.close()
