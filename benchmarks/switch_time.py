"""How long a model switch takes on a shared GPU: the awake model put to sleep, the other woken, its first token.

    python -m benchmarks.switch_time --cpu --rounds 5 --out bench-out/switch-time.json        # here, on CPU
    python -m benchmarks.switch_time --a http://vllm:8000/v1 --b http://vllm-b:8000/v1 --rounds 10   # GPU server

Switches are made exactly as the service makes them (backend.adapters.llm.switching.SwapGroup: drain,
/sleep, /wake_up), alternating A -> B and B -> A `--rounds` times; after each, one short chat is streamed
from the woken model (first token after the wake), and once per round from the model already awake
(first token without a switch, for comparison). `--cpu` starts two vLLM-on-CPU servers (SmolLM2-135M,
.venv-vllm): there sleep only pauses the engine and frees nothing, so the figure is the protocol's own
cost, not a GPU's. On the GPU server run it where the vLLM services are reachable, e.g. inside the
backend container (docs/models.md shows how); `--level 2` measures sleep level 2 (weights dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from backend.adapters.llm import OpenAICompatLLM
from backend.adapters.llm.switching import Sleeper, SwapGroup, SwitchRecord

PROMPT = [{"role": "user", "content": "Say hello in one short sentence."}]


async def first_token_ms(llm: OpenAICompatLLM) -> float:
    start = time.perf_counter()
    async for event in llm.stream_chat(PROMPT, max_tokens=8, temperature=0.0):
        if event.delta or event.reasoning or event.finish_reason:
            ms = (time.perf_counter() - start) * 1000
            break
    else:
        raise RuntimeError("the stream ended without any event")
    return ms


async def measure(url_a: str, url_b: str, rounds: int, level: int, timeout_s: float) -> dict[str, Any]:
    records: list[SwitchRecord] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=10)) as http:
        servers = {"a": OpenAICompatLLM(http, url_a, backend="vllm"), "b": OpenAICompatLLM(http, url_b, backend="vllm")}
        group = SwapGroup("bench", {n: Sleeper(s, level) for n, s in servers.items()}, preferred="a",
                          drain_s=timeout_s, timeout_s=timeout_s, max_waiting=4, on_switch=records.append)  # fmt: skip
        release = await group.acquire("a", timeout_s)  # finds out which is awake; puts b to sleep if both are
        await first_token_ms(servers["a"])  # warm-up
        release()
        rows: list[dict[str, Any]] = []
        for _ in range(rounds):
            for target in ("b", "a"):
                start = time.perf_counter()
                release = await group.acquire(target, timeout_s)
                switch_ms = (time.perf_counter() - start) * 1000
                try:
                    after_wake = await first_token_ms(servers[target])
                    warm = await first_token_ms(servers[target])
                finally:
                    release()
                record = records[-1]
                if record.outcome != "ok":
                    raise RuntimeError(f"switch to {target} failed: {record.detail}")
                rows.append({"to": target, "switch_ms": switch_ms, "sleep_ms": record.sleep_ms,
                             "wake_ms": record.wake_ms, "first_token_after_wake_ms": after_wake,
                             "first_token_awake_ms": warm})  # fmt: skip
    keys = ["switch_ms", "sleep_ms", "wake_ms", "first_token_after_wake_ms", "first_token_awake_ms"]
    summary = {k: {"median": round(statistics.median(float(r[k]) for r in rows), 1),
                   "max": round(max(float(r[k]) for r in rows), 1)} for k in keys}  # fmt: skip
    return {"rounds": rounds, "sleep_level": level, "switches": len(rows), "summary": summary, "rows": rows}


def table(result: dict[str, Any], where: str) -> str:
    labels = {
        "switch_ms": "whole switch (drain + sleep + wake), as a request waits for it",
        "sleep_ms": "/sleep of the awake model",
        "wake_ms": "/wake_up of the other",
        "first_token_after_wake_ms": "first token, right after the wake",
        "first_token_awake_ms": "first token, model already awake",
    }
    lines = [f"{where}: {result['switches']} switches, sleep level {result['sleep_level']}", "",
             "| | median ms | max ms |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {labels[k]} | {v['median']:,.1f} | {v['max']:,.1f} |" for k, v in result["summary"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", help="first vLLM server's base URL (ends in /v1), in sleep mode")
    p.add_argument("--b", help="second vLLM server's base URL")
    p.add_argument("--cpu", action="store_true", help="start two vLLM-on-CPU servers here (.venv-vllm) and use them")
    p.add_argument("--rounds", type=int, default=5, help="A -> B -> A rounds (default 5)")
    p.add_argument("--level", type=int, choices=[1, 2], default=1, help="sleep level (default 1)")
    p.add_argument("--timeout", type=float, default=600, help="longest wait for one sleep, wake or answer (600 s)")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    if args.cpu == bool(args.a and args.b) or bool(args.a) != bool(args.b):
        p.error("give either --cpu or both --a and --b")
    with ExitStack() as stack:
        where = "given servers"
        if args.cpu:
            from tests.vllm.server import VLLM_PYTHON, VllmServer  # the test tier's: SmolLM2 converted for vLLM

            if not VLLM_PYTHON.is_file():
                p.error(f"--cpu needs vLLM on CPU in {VLLM_PYTHON.parent.parent}: run `make vllm-venv` first")

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            servers = [VllmServer(tmp / f"vllm-{n}.log", served_name=f"smollm2-{n}") for n in ("a", "b")]
            for server in servers:
                stack.callback(server.stop)
            args.a, args.b = servers[0].base_url, servers[1].base_url
            where = "vLLM 0.32 on 2 CPU cores (SmolLM2-135M; sleep frees no memory on CPU)"
        result = asyncio.run(measure(args.a, args.b, args.rounds, args.level, args.timeout))
    result["where"] = where
    sys.stdout.write(table(result, where))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
