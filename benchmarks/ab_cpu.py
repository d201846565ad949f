"""cli.bench against two real LLM servers on this CPU machine: llama.cpp and vLLM, raw and through the service.

    .venv/bin/python -m benchmarks.ab_cpu --out-dir bench-out/ab-cpu

Needs .venv-vllm (`make vllm-venv`). Both servers serve SmolLM2-135M-Instruct (llama.cpp from the GGUF,
vLLM from its conversion). Two services run side by side, one per backend, each with its own
embedded store holding the same XQuAD-en paragraphs: the A/B set-up of the GPU server's two stacks
(:8000 Ollama, :9000 vLLM), with llama.cpp in Ollama's place (Ollama cannot be installed here).
Then `python -m cli.bench` runs twice: raw servers, and the two services. This is the command whose
output docs/benchmarks.md shows; on a GPU server, point cli.bench at the real stacks instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx

from backend.config import Settings
from backend.main import create_app
from cli import bench
from tests.conftest import LlamaServer
from tests.servers import ThreadedServer, free_port
from tests.vllm.server import VllmServer


def start_service(llm_url: str, tmp: Path, name: str, paragraphs: Path) -> ThreadedServer:
    settings = Settings(_env_file=None, qdrant_path=tmp / f"qdrant-{name}", llm_base_url=llm_url,
                        auth_disabled=True, llm_max_tokens=64, log_level="WARNING", log_format="text")  # fmt: skip
    server = ThreadedServer(create_app(settings), free_port())
    files = [("files", (p.name, p.read_bytes())) for p in sorted(paragraphs.glob("*.txt"))]
    resp = httpx.post(f"{server.base_url}/documents", data={"space_id": "demo"}, files=files, timeout=600)
    resp.raise_for_status()
    return server


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--questions", type=Path, default=Path("../shared/eval/xquad.en.dev.json"))
    p.add_argument("--out-dir", type=Path, default=Path("bench-out/ab-cpu"))
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--raw-concurrency", default="1,4,16")
    p.add_argument("--service-concurrency", default="1,4")
    p.add_argument("--rate", default="0.5")
    p.add_argument("--max-seconds", type=float, default=90)
    args = p.parse_args()
    common = ["--questions", str(args.questions), "--limit-questions", "64", "--requests", str(args.requests),
              "--max-tokens", "64", "--max-seconds", str(args.max_seconds)]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        llama = LlamaServer(tmp / "llama.log")
        vllm = VllmServer(tmp / "vllm.log")
        try:
            code = bench.main([*common, "--target", f"llama.cpp=openai:{llama.base_url}",
                               "--target", f"vllm=vllm:{vllm.base_url}", "--concurrency", args.raw_concurrency,
                               "--rate", args.rate, "--out-dir", str(args.out_dir / "raw")])  # fmt: skip
            # The service side: the question set's paragraphs as documents, one file each.
            paragraphs = tmp / "paragraphs"
            paragraphs.mkdir()
            from backend.services.evaluation import load_squad

            for i, doc in enumerate(load_squad(args.questions).documents):
                (paragraphs / f"p{i:03d}.txt").write_bytes(doc.data)
            services = [start_service(llama.base_url, tmp, "llama", paragraphs),
                        start_service(vllm.base_url, tmp, "vllm", paragraphs)]  # fmt: skip
            try:
                code |= bench.main([*common, "--target", f"rag+llama.cpp=service:{services[0].base_url}",
                                    "--target", f"rag+vllm=service:{services[1].base_url}",
                                    "--concurrency", args.service_concurrency,
                                    "--out-dir", str(args.out_dir / "service")])  # fmt: skip
            finally:
                for s in services:
                    s.stop()
        finally:
            llama.stop()
            vllm.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
