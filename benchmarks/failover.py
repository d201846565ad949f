"""What a user sees when the primary LLM server dies: answers, errors and latency around a kill -9.

    .venv/bin/python -m benchmarks.failover --asks 50 --kill-after 10 --concurrency 3

Two real llama.cpp servers (SmolLM2-135M) as primary and fallback, the service served by uvicorn,
asks from `--concurrency` client threads; the primary is killed after `--kill-after` answers.
Prints a markdown report; writes the per-ask outcomes as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx

from backend.config import Settings
from backend.main import create_app
from cli.run_local import bundled_gguf, llama_server_command, wait_until
from tests.servers import ThreadedServer, free_port

PUMP = ("pump.txt", b"The Glimmer pump has a maximum pressure of 9 bar.")


def llama(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        llama_server_command(bundled_gguf(), "127.0.0.1", port, 4096, 1),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    if not wait_until(f"http://127.0.0.1:{port}/v1/models", 60, proc):
        raise SystemExit("llama.cpp server did not start")
    return proc


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 0) if ordered else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asks", type=int, default=50)
    p.add_argument("--kill-after", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=3)
    p.add_argument("--first-token-timeout", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=Path("bench-out/failover.json"))
    args = p.parse_args()

    primary_port, fallback_port = free_port(), free_port()
    primary, fallback = llama(primary_port), llama(fallback_port)
    outcomes: list[dict[str, Any]] = []
    lock = threading.Lock()
    killed_at: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, qdrant_path=Path(tmp) / "q", log_level="WARNING",
            auth_disabled=True, llm_base_url=f"http://127.0.0.1:{primary_port}/v1", llm_model="smollm2",
            llm_fallback="openai", llm_fallback_base_url=f"http://127.0.0.1:{fallback_port}/v1",
            llm_fallback_model="smollm2", llm_max_tokens=16, top_k=1,
            llm_first_token_timeout_s=args.first_token_timeout, llm_total_timeout_s=60,
        )  # fmt: skip
        service = ThreadedServer(create_app(settings), free_port())
        try:
            with httpx.Client(base_url=service.base_url, timeout=120) as http:
                http.post("/documents", data={"space_id": "f"}, files=[("files", PUMP)])
                http.post("/ask", json={"q": "warm-up", "space_id": "f"})

                def ask(i: int) -> None:
                    start = time.monotonic()
                    r = http.post("/ask", json={"q": f"What is the pump's maximum pressure? ({i})", "space_id": "f"})
                    body = r.json()
                    with lock:
                        outcomes.append({
                            "i": i, "start": start, "seconds": time.monotonic() - start, "status": r.status_code,
                            "fallback": body.get("fallback_used"), "error": body.get("error", {}).get("code"),
                        })  # fmt: skip
                        if len(outcomes) == args.kill_after:
                            primary.kill()
                            killed_at.append(time.monotonic())

                with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                    list(pool.map(ask, range(args.asks)))
        finally:
            service.stop()
            primary.kill()
            fallback.terminate()
            fallback.wait()

    kill = killed_at[0]
    before = [o for o in outcomes if o["start"] + o["seconds"] <= kill]
    around = [o for o in outcomes if o["start"] < kill < o["start"] + o["seconds"]]
    after = [o for o in outcomes if o["start"] >= kill]
    ok = [o for o in outcomes if o["status"] == 200]

    def ms(rows: list[dict[str, Any]]) -> str:
        secs = [o["seconds"] * 1000 for o in rows]
        return f"{pct(secs, 0.5):.0f} / {pct(secs, 0.95):.0f}" if secs else "-"

    lines = [
        f"{args.asks} asks, {args.concurrency} at a time; primary killed (SIGKILL) after {args.kill_after} answers.",
        "",
        "| | asks | answered | by fallback | errors | latency p50 / p95 ms |", "|---|---|---|---|---|---|",
        *(
            f"| {name} | {len(rows)} | {sum(o['status'] == 200 for o in rows)} "
            f"| {sum(bool(o['fallback']) for o in rows)} | {sum(o['status'] != 200 for o in rows)} | {ms(rows)} |"
            for name, rows in (("finished before the kill", before), ("in flight at the kill", around),
                               ("started after the kill", after))
        ),
        "",
        f"All {len(outcomes)} asks returned: {len(ok)} answers, {len(outcomes) - len(ok)} clean errors "
        f"({', '.join(sorted({str(o['error']) for o in outcomes if o['error']})) or 'none'}); "
        f"slowest {max(o['seconds'] for o in outcomes):.2f} s.",
        f"Mean latency before the kill {statistics.fmean(o['seconds'] for o in before) * 1000:.0f} ms, "
        f"after {statistics.fmean(o['seconds'] for o in after) * 1000:.0f} ms." if before and after else "",
    ]  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(outcomes, indent=2))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
