"""STAND-IN for an OpenAI-compatible LLM server that answers in a fixed time, to isolate our overhead.

Not a model: every chat completion waits `--ttft` seconds, then streams `--tokens` pieces of a fixed
answer spread evenly until `--total` seconds have passed since the request arrived, with the usage
chunk vLLM sends for `stream_options.include_usage`. GET /v1/models lists one model with vLLM's
`max_model_len`. Used by benchmarks/overhead.py (the service's own overhead) only.

    python -m tests.standins.openai_fixed --port 8099 --ttft 0.2 --total 1.0 --tokens 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

MODEL = "fixed-standin"


def create_standin(ttft_s: float, total_s: float, tokens: int) -> FastAPI:
    app = FastAPI(title="STAND-IN OpenAI-compatible server (fixed answer, fixed delay)")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model", "max_model_len": 8192}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        arrived = time.perf_counter()
        body = await request.json()
        pieces = [f"word{i} " for i in range(tokens - 1)] + ["[1]."]
        usage = {"prompt_tokens": 100, "completion_tokens": tokens, "total_tokens": 100 + tokens}
        if not body.get("stream"):
            await asyncio.sleep(total_s)
            return {"id": "x", "object": "chat.completion", "model": MODEL, "usage": usage,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "".join(pieces)}}]}  # fmt: skip

        async def events() -> AsyncIterator[bytes]:
            await asyncio.sleep(max(0.0, ttft_s - (time.perf_counter() - arrived)))
            gap = (total_s - ttft_s) / max(tokens - 1, 1)
            for i, piece in enumerate(pieces):
                if i:
                    await asyncio.sleep(max(0.0, arrived + ttft_s + i * gap - time.perf_counter()))
                chunk = {"id": "x", "object": "chat.completion.chunk", "model": MODEL,
                         "choices": [{"index": 0, "delta": {"content": piece},
                                      "finish_reason": "stop" if i == tokens - 1 else None}]}  # fmt: skip
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            final = {"id": "x", "object": "chat.completion.chunk", "model": MODEL, "choices": [], "usage": usage}
            yield f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--ttft", type=float, default=0.2, help="seconds to the first token")
    p.add_argument("--total", type=float, default=1.0, help="seconds to the last token")
    p.add_argument("--tokens", type=int, default=20)
    args = p.parse_args()
    uvicorn.run(create_standin(args.ttft, args.total, args.tokens), host="127.0.0.1", port=args.port,
                log_level="warning")  # fmt: skip


if __name__ == "__main__":
    main()
