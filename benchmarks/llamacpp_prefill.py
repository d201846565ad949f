"""Prompt reading (prefill) and writing (decode) speed of the local model under llama.cpp settings.

The first token of a CPU answer waits for the whole prompt to be read, so prefill speed is most of the
time to first token. This times llama.cpp itself (in-process, no server, no HTTP) on a prompt of the
size the service sends (five 128-token Russian passages with the system prompt: about 700 tokens) for
each combination of the settings that may change it without changing the model: flash attention and
the logical / physical batch sizes.

    .venv/bin/python -m benchmarks.llamacpp_prefill --out bench-out/llamacpp-prefill.json

Run it on an idle machine: a second busy process halves the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from backend.config import Settings
from cli.local_models import resolve

log = logging.getLogger("benchmarks.llamacpp_prefill")

# Russian business prose, varied so the tokenizer sees ordinary text; repeated up to the wanted size.
SENTENCES = [
    "Совещание по проекту модернизации котельной на Садовой улице прошло во вторник в десять часов.",
    "Петров доложил, что замена горелок закончена в марте, а пусконаладочные работы займут ещё две недели.",
    "Бюджет на второй квартал утверждён в размере четырёх миллионов двухсот тысяч рублей без учёта НДС.",
    "Иванова предложила перенести срок сдачи отчёта на пятнадцатое апреля из-за задержки поставки насосов.",
    "Поставщик подтвердил отгрузку двенадцати задвижек со склада в Екатеринбурге до конца месяца.",
    "Решено провести повторную проверку давления в системе после замены уплотнений на всех узлах.",
    "Ответственным за согласование графика с подрядчиком назначен Сидоров, срок исполнения пятница.",
]


def prompt_tokens(llm: Any, n_tokens: int) -> list[int]:
    """`n_tokens` tokens of Russian prose (prefill cost depends on the count, not on what the text says)."""
    text = ""
    while len(tokens := llm.tokenize(text.encode(), add_bos=True)) < n_tokens:
        text += " ".join(SENTENCES) + "\n"
    return list(tokens[:n_tokens])


def measure(model: Path, *, flash_attn: bool, n_batch: int, n_ubatch: int, n_tokens: int, repeats: int,
            decode_tokens: int) -> dict[str, Any]:  # fmt: skip
    from llama_cpp import Llama

    llm = Llama(model_path=str(model), n_ctx=4096, n_threads=2, n_threads_batch=2, flash_attn=flash_attn,
                n_batch=n_batch, n_ubatch=n_ubatch, verbose=False)  # fmt: skip
    tokens = prompt_tokens(llm, n_tokens)
    llm.eval(tokens[:32])  # warm-up: first-use allocations and weight repacking
    prefill, decode = [], []
    for _ in range(repeats):
        llm.reset()  # type: ignore[no-untyped-call]
        start = time.perf_counter()
        llm.eval(tokens)
        prefill.append(len(tokens) / (time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(decode_tokens):
            llm.eval([tokens[-1]])
        decode.append(decode_tokens / (time.perf_counter() - start))
    del llm
    result = {
        "flash_attn": flash_attn, "n_batch": n_batch, "n_ubatch": n_ubatch, "prompt_tokens": len(tokens),
        "prefill_tok_s": round(statistics.median(prefill), 1), "decode_tok_s": round(statistics.median(decode), 1),
        "prefill_s": round(len(tokens) / statistics.median(prefill), 2),
    }  # fmt: skip
    log.info("%s", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct", help="catalogue name of the local model")
    parser.add_argument("--prompt-tokens", type=int, default=700)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--flash-attn", default="false,true", help="comma-separated: false,true")
    parser.add_argument("--batches", default="512:512,1024:512,1024:1024,512:256",
                        help="comma-separated n_batch:n_ubatch pairs")  # fmt: skip
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    model = resolve(args.model, Settings(_env_file=None).local_models_dir)
    flash = [f.strip().lower() == "true" for f in args.flash_attn.split(",")]
    batches = [tuple(int(x) for x in pair.split(":")) for pair in args.batches.split(",")]
    results = [
        measure(model, flash_attn=fa, n_batch=nb, n_ubatch=nu, n_tokens=args.prompt_tokens, repeats=args.repeats,
                decode_tokens=args.decode_tokens)
        for fa, (nb, nu) in itertools.product(flash, batches)
    ]  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"model": args.model, "results": results}, indent=2))
        log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
