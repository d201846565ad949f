"""Optional cross-encoder reranker (sentence-transformers `CrossEncoder`), off the event loop.

Off by default: no reranker weights ship offline. Set RERANKER_MODEL to a local folder or a hub id
the machine can reach (e.g. BAAI/bge-reranker-v2-m3, which reads Russian).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


class RerankerError(Exception):
    """The reranker model cannot be loaded."""


class Reranker:
    def __init__(self, model: str, device: str | None = None, max_length: int = 512) -> None:
        from sentence_transformers import CrossEncoder  # torch: imported only when a reranker is configured

        try:
            self._model = CrossEncoder(model, device=device, max_length=max_length)
        except Exception as exc:  # missing folder, no network for a hub id, not a cross-encoder
            raise RerankerError(
                f"cannot load the reranker RERANKER_MODEL={model!r}: {exc}. Point it at a local folder "
                "holding a sentence-transformers CrossEncoder, or unset it to rank without a reranker."
            ) from exc
        self.model_name = model
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reranker")
        log.info("reranker %s loaded", model)

    def score_sync(self, query: str, passages: list[str]) -> list[float]:
        if not passages:
            return []
        return [float(s) for s in self._model.predict([(query, p) for p in passages], show_progress_bar=False)]

    async def score(self, query: str, passages: list[str]) -> list[float]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.score_sync, query, passages)

    def close(self) -> None:
        self._executor.shutdown(wait=False)
