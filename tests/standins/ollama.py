"""STAND-IN for an Ollama server (Ollama cannot be installed on this machine).

Implements the documented endpoints the service uses: GET /api/version, GET /api/tags, POST /api/show,
POST /api/chat (NDJSON stream, or one JSON object with "stream": false), with Ollama's error shape
{"error": "..."}. It does not run a model: it answers by quoting the first context passage it was
given, citing it as [1]. Every request body is recorded (GET /_standin/requests) so tests can check
what the service sent, e.g. options.num_ctx and keep_alive.

    python -m tests.standins.ollama --port 11434 --model smollm2:135m
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tests.servers import ThreadedServer


def create_standin(model: str = "smollm2:135m", context_length: int = 8192, thinking: str | None = None) -> FastAPI:
    """`thinking`: "tags" answers like a reasoning model that writes <think>...</think> in its content;
    "field" like one whose thinking Ollama returns in message.thinking."""
    app = FastAPI(title="Ollama stand-in")
    app.state.requests = []

    def created_at() -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())

    def unknown(name: str) -> JSONResponse:
        return JSONResponse({"error": f'model "{name}" not found, try pulling it first'}, status_code=404)

    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": "0.0.0-standin"}

    @app.get("/api/tags")
    async def tags() -> dict[str, Any]:
        return {"models": [{
            "name": model, "model": model, "modified_at": created_at(), "size": 98_000_000,
            "digest": "0" * 64, "details": {"format": "gguf", "family": "llama", "parameter_size": "135M"},
        }]}  # fmt: skip

    def known(name: str) -> bool:
        return name in (model, model.split(":")[0], f"{model}:latest")

    @app.post("/api/show")
    async def show(request: Request) -> Any:
        body = await request.json()
        app.state.requests.append({"path": "/api/show", "body": body})
        if not known(body.get("model", "")):
            return unknown(body.get("model", ""))
        return {"details": {"family": "llama"}, "model_info": {"llama.context_length": context_length}}

    @app.post("/api/chat")
    async def chat(request: Request) -> Any:
        body = await request.json()
        app.state.requests.append({"path": "/api/chat", "body": body})
        if not known(body.get("model", "")):
            return unknown(body.get("model", ""))
        user = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        passage = re.search(r"\[1\][^\n]*\n(?:<<<\n)?([^\n]+)", user)  # the first line of passage 1
        answer = f"According to the documents, {passage.group(1).strip()} [1]" if passage else "I do not know."
        thought = "Let me find the passage that answers this. "
        if thinking == "tags":
            answer = f"<think>{thought}</think>\n\n{answer}"
        words = re.findall(r"\S+\s*", answer)[: body.get("options", {}).get("num_predict", 128)]
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        final = {
            "model": body["model"], "created_at": created_at(), "message": {"role": "assistant", "content": ""},
            "done": True, "done_reason": "stop", "total_duration": 1, "load_duration": 1,
            "prompt_eval_count": prompt_tokens, "prompt_eval_duration": 1, "eval_count": len(words),
            "eval_duration": 1,
        }  # fmt: skip
        if body.get("stream") is False:
            final["message"]["content"] = "".join(words)
            return final

        def lines() -> Iterator[bytes]:
            if thinking == "field":
                for word in re.findall(r"\S+\s*", thought):
                    yield (
                        json.dumps(
                            {
                                "model": body["model"],
                                "created_at": created_at(),
                                "done": False,
                                "message": {"role": "assistant", "content": "", "thinking": word},
                            }
                        ).encode()
                        + b"\n"
                    )
            for word in words:
                chunk = {"model": body["model"], "created_at": created_at(),
                         "message": {"role": "assistant", "content": word}, "done": False}  # fmt: skip
                yield json.dumps(chunk).encode() + b"\n"
            yield json.dumps(final).encode() + b"\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.get("/_standin/requests")
    async def recorded() -> list[dict[str, Any]]:
        return list(app.state.requests)

    return app


class StandinServer(ThreadedServer):
    """The Ollama stand-in, served in a background thread (tests start and stop it)."""

    def __init__(self, port: int, **kwargs: Any) -> None:
        super().__init__(create_standin(**kwargs), port)

    @property
    def requests(self) -> list[dict[str, Any]]:
        return list(self.app.state.requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--model", default="smollm2:135m")
    args = parser.parse_args()
    uvicorn.run(create_standin(args.model), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
