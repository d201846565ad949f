"""Structured logging with request ids, and the Prometheus metrics every layer reports to."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed with `extra={"fields": {...}}` are merged in."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "request_id": request_id_var.get(),
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} [{request_id_var.get()}] "
        base += f"{record.name}: {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            base += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return base


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route every logger (ours, uvicorn's) through one handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Per-request access lines come from our middleware, with the request id.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for noisy in ("httpx", "httpcore", "sentence_transformers", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_fields(**fields: Any) -> dict[str, Any]:
    """`logger.info("msg", extra=log_fields(a=1))`: structured fields for the JSON formatter."""
    return {"fields": fields}


class Metrics:
    """All metrics of one app instance, in their own registry so several apps can coexist in tests."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "rag_http_requests_total",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "rag_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.retrieval_latency = Histogram(
            "rag_retrieval_duration_seconds",
            "Retrieval stages: embed (the question) and search.",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.llm_requests = Counter(
            "rag_llm_requests_total",
            "LLM calls by backend and outcome (ok, or the error kind: connect, timeout, http_500, ...).",
            ["backend", "outcome"],
            registry=r,
        )
        self.llm_fallbacks = Counter(
            "rag_llm_fallbacks_total",
            "Answers handed from a failing backend to the next one, before the first token.",
            ["from_backend", "to_backend", "reason"],
            registry=r,
        )
        self.llm_ttft = Histogram(
            "rag_llm_time_to_first_token_seconds",
            "LLM time to first token.",
            ["backend", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.llm_duration = Histogram(
            "rag_llm_duration_seconds",
            "LLM call duration, whole answer.",
            ["backend", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.llm_tokens = Counter(
            "rag_llm_tokens_total",
            "Tokens reported by the LLM server (prompt, completion).",
            ["backend", "model", "kind"],
            registry=r,
        )
        self.relevance_floor = Counter(
            "rag_relevance_floor_total",
            "Questions the relevance floor decided: declined (no passage near enough, no LLM call) or answered by "
            "the word rule (a passage just under the floor that holds the question's words).",
            ["decision"],
            registry=r,
        )
        self.answer_loops = Counter(
            "rag_answer_loops_total",
            "Answers stopped because the model wrote one phrase over and over (kept once; the generation ended).",
            registry=r,
        )
        self.model_answers = Counter(
            "rag_model_answers_total",
            "Answers written, by the named model that wrote them (LLM_MODELS; 'default' without it).",
            ["model"],
            registry=r,
        )
        self.llm_replica_requests = Counter(
            "rag_llm_replica_requests_total",
            "Answers sent to each replica of a model (several base URLs), by outcome: answered (first token), failed "
            "(before it: the next replica was tried), broken (after it).",
            ["model", "replica", "outcome"],
            registry=r,
        )
        self.llm_switches = Counter(
            "rag_llm_switches_total",
            "Model switches on a shared GPU (LLM_MODELS swap_group), by outcome: ok, drain_timeout, sleep_failed, "
            "wake_failed.",
            ["group", "from_model", "to_model", "outcome"],
            registry=r,
        )
        self.llm_switch_seconds = Histogram(
            "rag_llm_switch_seconds",
            "Phases of a model switch: drain (the awake model's answers end), sleep, wake.",
            ["group", "model", "phase"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ingest_files = Counter(
            "rag_ingest_files_total",
            "Ingested files by result (new, changed, unchanged, failed).",
            ["space", "result"],
            registry=r,
        )
        self.ingest_chunks = Counter(
            "rag_ingest_chunks_total",
            "Chunks written to the store.",
            ["space"],
            registry=r,
        )
        self.ingest_reused_chunks = Counter(
            "rag_ingest_reused_chunks_total",
            "Chunks written with the vector their text already had (the unchanged part of a changed document).",
            ["space"],
            registry=r,
        )
        self.summaries = Counter("rag_summaries_total", "Summaries written, by style.", ["space", "style"], registry=r)
        self.summary_llm_calls = Counter(
            "rag_summary_llm_calls_total",
            "LLM calls of summaries: map (reading the selection), reduce (merging notes), final.",
            ["space", "stage"],
            registry=r,
        )
        self.summary_cache_hits = Counter(
            "rag_summary_cache_hits_total", "Summaries answered from a stored result.", ["space"], registry=r
        )
        self.summary_duration = Histogram(
            "rag_summary_duration_seconds", "Time to write a summary.",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600), registry=r,
        )  # fmt: skip
        self.ingest_deleted_documents = Counter(
            "rag_ingest_deleted_documents_total",
            "Documents deleted or pruned.",
            ["space"],
            registry=r,
        )
        self.index_builds = Counter(
            "rag_index_builds_total",
            "Background builds of an embedded space's search index, by outcome: built, failed, cancelled.",
            ["space", "outcome"],
            registry=r,
        )
        self.index_build_seconds = Histogram(
            "rag_index_build_seconds", "Time a background index build took, copy and swap included.",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600), registry=r,
        )  # fmt: skip

    def index_built(self, space: str, outcome: str, seconds: float) -> None:
        self.index_builds.labels(space, outcome).inc()
        if outcome == "built":
            self.index_build_seconds.observe(seconds)
