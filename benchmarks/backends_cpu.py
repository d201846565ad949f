"""vLLM on CPU next to llama.cpp, both serving SmolLM2-135M-Instruct, measured through the service.

    .venv/bin/python -m benchmarks.backends_cpu --asks 20

Needs .venv-vllm (`make vllm-venv`). The same 20 questions over the same small corpus go through /ask
with each backend in turn (one at a time: this is a latency view, not a load test; issue #5 adds load).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fastapi.testclient import TestClient

from backend.config import Settings
from backend.main import create_app
from tests.conftest import LlamaServer
from tests.vllm.server import VllmServer

DOCS = {
    "pump.txt": b"The Glimmer pump has a maximum pressure of 9 bar. It was installed in 2021 in hall B.",
    "reactor.txt": b"The Zorblat reactor runs at 42 kelvin and was designed by Mira Quell.",
    "minutes.txt": b"The board approved the Orion budget of 3 million euros on 12 March.",
    "cat.txt": b"Captain Whiskers is the ship's cat and sleeps in the engine room.",
}
QUESTIONS = [
    "What is the maximum pressure of the Glimmer pump?", "Where was the Glimmer pump installed?",
    "At what temperature does the Zorblat reactor run?", "Who designed the Zorblat reactor?",
    "How large is the Orion budget?", "When was the Orion budget approved?",
    "Where does the ship's cat sleep?", "What is the name of the ship's cat?",
]  # fmt: skip


def run(settings: Settings, n: int) -> dict[str, Any]:
    rows: dict[str, list[float]] = {"ttft": [], "llm": [], "tps": [], "prompt": []}
    with TestClient(create_app(settings)) as client:
        files = [("files", (name, data)) for name, data in DOCS.items()]
        client.post("/documents", data={"space_id": "b"}, files=files)
        client.post("/ask", json={"q": "warm-up", "space_id": "b"})
        for i in range(n):
            body = client.post("/ask", json={"q": QUESTIONS[i % len(QUESTIONS)], "space_id": "b"}).json()
            t = body["timings"]
            rows["ttft"].append(t["llm_ttft_ms"])
            rows["llm"].append(t["llm_ms"])
            decode_s = max(1e-3, (t["llm_ms"] - t["llm_ttft_ms"]) / 1000)
            rows["tps"].append(max(0, body["usage"]["completion_tokens"] - 1) / decode_s)
            rows["prompt"].append(body["context"]["prompt_tokens"])
    return {k: statistics.median(v) for k, v in rows.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asks", type=int, default=20)
    args = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("llama.cpp", "vLLM"):
            t0 = time.monotonic()
            server: LlamaServer | VllmServer
            server = LlamaServer(Path(tmp) / "llama.log") if name == "llama.cpp" else VllmServer(Path(tmp) / "vllm.log")
            startup = time.monotonic() - t0
            try:
                settings = Settings(_env_file=None, qdrant_path=Path(tmp) / f"q-{name}", log_level="WARNING", top_k=3,
                    llm_backend="vllm" if name == "vLLM" else "openai", llm_base_url=server.base_url,
                    llm_max_tokens=64, llm_context_tokens=2048, auth_disabled=True,
                )  # fmt: skip
                results.append((name, startup, run(settings, args.asks)))
            finally:
                server.stop()
    lines = [
        f"SmolLM2-135M-Instruct on 2 CPU cores, {args.asks} asks one at a time, top_k 3, answers up to 64 tokens "
        "(medians).",
        "",
        "| server | start-up s | prompt tokens | TTFT ms | whole answer ms | decode tokens/s |",
        "|---|---|---|---|---|---|",
        *(f"| {n} | {s:.1f} | {r['prompt']:.0f} | {r['ttft']:.0f} | {r['llm']:.0f} | {r['tps']:.1f} |"
          for n, s, r in results),
    ]  # fmt: skip
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
