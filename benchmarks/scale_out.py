"""Scale-out under a kill: what users see when one of several servers dies mid-load.

    .venv/bin/python -m benchmarks.scale_out llm --asks 60 --concurrency 4
    .venv/bin/python -m benchmarks.scale_out api --asks 60 --concurrency 4
    .venv/bin/python -m benchmarks.scale_out copy --chunks 20000

`llm`: one model on two real llama.cpp servers (SmolLM2-135M, LLM_BASE_URL with both URLs); replica A
is killed (-9) after `--kill-after` answers and started again after `--restart-after`; then
`--settle` more asks show whether A is back in rotation. `api`: two uvicorn replicas of the service on
one Qdrant server (the REST stand-in over Qdrant Edge) behind a real nginx (Debian's `nginx-light`);
replica 1 is killed after `--kill-after` answers; the client retries a request that got no answer
(connection refused or 502/503/504) up to twice. Both print a markdown table; --out writes JSON.
`copy`: `cli.migrate --to` and `--from` of a synthetic space through the REST stand-in, timed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx

from backend.adapters.store import VectorStore
from backend.adapters.store_copy import copy_store
from backend.config import Settings
from backend.main import create_app
from benchmarks.retrieval_latency import build
from cli.run_local import bundled_gguf, llama_server_command, wait_until
from tests.servers import ThreadedServer, free_port, stop_process

PUMP = ("pump.txt", b"The Glimmer pump has a maximum pressure of 9 bar.")
QUESTION = "What is the pump's maximum pressure?"
RETRY_STATUSES = (502, 503, 504)
ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = ROOT / "docker" / "nginx" / "nginx.conf"  # nginx in front of the API replicas (compose profile)
LOCATIONS = ROOT / "docker" / "nginx" / "rag-locations.conf"  # the routes it includes


@dataclass
class Outcome:
    i: int
    status: int  # 0: no HTTP answer at all
    seconds: float
    attempts: int
    body: dict[str, Any] = field(default_factory=dict)


def ask_under_load(
    base_url: str,
    asks: int,
    concurrency: int,
    events: dict[int, Callable[[], None]] | None = None,
    *,
    space: str = "scale",
    retries: int = 0,
    timeout_s: float = 90.0,
) -> list[Outcome]:
    """`asks` non-streaming /ask calls from `concurrency` threads. `events[n]` runs (once, in the thread
    that finished it) when the n-th answer has come back. A request that got no answer (connection
    refused or reset, 502/503/504: the server or proxy could not reach a replica) is sent again up to
    `retries` times, as a client behind a load balancer would."""
    events = dict(events or {})
    done: list[Outcome] = []
    lock = threading.Lock()

    def one(i: int, http: httpx.Client) -> Outcome:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                r = http.post("/ask", json={"q": f"{QUESTION} ({i})", "space_id": space})
                status, body = r.status_code, r.json()
            except (httpx.TransportError, ValueError) as exc:
                status, body = 0, {"error": {"code": "transport", "message": str(exc)}}
            if (status == 0 or status in RETRY_STATUSES) and attempt <= retries:
                time.sleep(0.2)
                continue
            return Outcome(i, status, time.monotonic() - started, attempt, body)

    def run(i: int) -> Outcome:
        with httpx.Client(base_url=base_url, timeout=timeout_s) as http:
            out = one(i, http)
        with lock:
            done.append(out)
            event = events.pop(len(done), None)
        if event is not None:
            event()
        return out

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(run, range(asks)))


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    seconds = sorted(o.seconds for o in outcomes)

    def pct(q: float) -> float:
        return round(seconds[min(len(seconds) - 1, int(q * len(seconds)))], 2) if seconds else float("nan")

    return {
        "requests": len(outcomes),
        "answered": sum(o.status == 200 for o in outcomes),
        "errors": sum(o.status != 200 for o in outcomes),
        "retried": sum(o.attempts > 1 for o in outcomes),
        "restarted_mid_answer": sum(any("broke off" in n for n in o.body.get("notices", [])) for o in outcomes),
        "p50_s": round(statistics.median(seconds), 2) if seconds else float("nan"),
        "p95_s": pct(0.95),
        "max_s": round(seconds[-1], 2) if seconds else float("nan"),
    }


class Process:
    """A server process whose output goes to a log file; wait for a URL to answer before use."""

    def __init__(self, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.cmd, self.log, self.env = cmd, log, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_url: str, timeout_s: float = 120) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, **(self.env or {})})  # fmt: skip
        if not wait_until(ready_url, timeout_s, self.proc):
            raise RuntimeError(f"{' '.join(self.cmd[:4])} did not start; see {self.log}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout_s=15)


class Llama(Process):
    """A llama.cpp server (SmolLM2) on a fixed port, so it can be killed and started again where it was."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        super().__init__(llama_server_command(bundled_gguf(), "127.0.0.1", self.port, 4096, 1), Path(os.devnull))
        self.start()

    def start(self, ready_url: str = "", timeout_s: float = 90) -> None:
        super().start(ready_url or f"{self.base_url}/models", timeout_s)


def replica_states(base_url: str) -> list[dict[str, Any]]:
    models = httpx.get(f"{base_url}/models", timeout=10).json()["models"]
    return list(models[0]["replicas"] or [])


def llm_replicas(workdir: Path, asks: int, concurrency: int, kill_after: int, restart_after: int,
                 settle: int) -> dict[str, Any]:  # fmt: skip
    """The `llm` scenario; returns its figures (see the module's doc)."""
    a, b = Llama(), Llama()
    settings = Settings(
        _env_file=None, qdrant_path=workdir / "qdrant", llm_base_url=f"{a.base_url},{b.base_url}",
        llm_model="smollm2", llm_max_tokens=16, llm_first_token_timeout_s=20.0, llm_total_timeout_s=40.0,
        llm_breaker_cooldown_s=2.0, top_k=1, auth_disabled=True, log_format="text",
        rate_limit_per_minute=0,
    )  # fmt: skip
    service = ThreadedServer(create_app(settings), free_port())
    try:
        r = httpx.post(f"{service.base_url}/documents", data={"space_id": "scale"}, files=[("files", PUMP)],
                       timeout=120)  # fmt: skip
        r.raise_for_status()
        warm = ask_under_load(service.base_url, 2 * concurrency, concurrency)
        before = replica_states(service.base_url)
        timeline: dict[str, float] = {}
        started = time.monotonic()

        def kill() -> None:
            a.kill()
            timeline["killed_at_s"] = round(time.monotonic() - started, 2)

        def restart() -> None:
            a.start()
            timeline["restarted_at_s"] = round(time.monotonic() - started, 2)

        load = ask_under_load(service.base_url, asks, concurrency, {kill_after: kill, restart_after: restart})
        middle = replica_states(service.base_url)
        time.sleep(settings.llm_breaker_cooldown_s)  # the restarted replica is probed after its cool-down
        settled = ask_under_load(service.base_url, settle, concurrency)
        after = replica_states(service.base_url)
    finally:
        service.stop()
        a.stop()
        b.stop()
    return {
        "warm": summary(warm),
        "under_kill": summary(load),
        "settle": summary(settled),
        "timeline": timeline,
        "replicas_before": before,
        "replicas_after_load": middle,
        "replicas_after_settle": after,
        "failed": [asdict(o) for o in load + settled if o.status != 200],
    }


def print_llm(result: dict[str, Any]) -> None:
    out = sys.stdout.write
    out("| phase | requests | answered | errors | restarted mid-answer | p50 s | p95 s | max s |\n")
    out("|---|---|---|---|---|---|---|---|\n")
    for phase in ("warm", "under_kill", "settle"):
        s = result[phase]
        out(f"| {phase} | {s['requests']} | {s['answered']} | {s['errors']} | {s['restarted_mid_answer']} | "
            f"{s['p50_s']} | {s['p95_s']} | {s['max_s']} |\n")  # fmt: skip
    out(f"\ntimeline: {result['timeline']}\n")
    for when in ("replicas_before", "replicas_after_load", "replicas_after_settle"):
        cells = ", ".join(f"replica {'AB'[r['replica']]}: {r['answered']} answered, {r['failed']} failed, {r['state']}"
                          for r in result[when])  # fmt: skip
        out(f"{when}: {cells}\n")


def find_nginx() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def nginx_conf(workdir: Path, port: int, replicas: list[int]) -> Path:
    """docker/nginx/nginx.conf itself, run on this machine: `backend` (the writer) is the first of two local
    replicas, `backend-replica` the second, it listens on `port`, and its logs and temporary files go to
    `workdir`. The routes are the same included file (LOCATIONS)."""
    writer, reader = replicas
    text = NGINX_CONF.read_text()
    swaps = {
        "backend-replica:8000": f"127.0.0.1:{reader}",
        "backend:8000": f"127.0.0.1:{writer}",
        "listen 8080;": f"listen 127.0.0.1:{port};",
        "/etc/nginx/rag-locations.conf": str(LOCATIONS),
        "worker_processes auto;": f"worker_processes 1;\ndaemon off;\npid {workdir / 'nginx.pid'};",
        "access_log /dev/stdout;": "access_log off;",
        "error_log /dev/stderr warn;": f"error_log {workdir / 'nginx-error.log'} warn;",
    }
    for old, new in swaps.items():
        if old not in text:
            raise RuntimeError(
                f"{NGINX_CONF} no longer holds {old!r}: benchmarks/scale_out.py nginx_conf needs the same change"
            )
        text = text.replace(old, new)
    temp = "".join(f"\n    {kind}_temp_path {workdir / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                              "scgi"))  # fmt: skip
    text = text.replace("http {", "http {" + temp, 1)
    conf = workdir / "nginx.conf"
    conf.write_text(text)
    return conf


def api_replicas(workdir: Path, asks: int, concurrency: int, kill_after: int, *, llm_url: str | None = None,
                 retries: int = 2) -> dict[str, Any]:  # fmt: skip
    """The `api` scenario; returns its figures (see the module's doc)."""
    nginx = find_nginx()
    if nginx is None:
        raise RuntimeError("nginx is not installed: apt-get install nginx-light (make nginx)")
    llama = Llama() if llm_url is None else None
    qdrant_port = free_port()
    started: list[Process] = []
    try:
        qdrant = Process([sys.executable, "-m", "tests.standins.qdrant_rest", "--port", str(qdrant_port), "--path",
                          str(workdir / "qdrant")], workdir / "qdrant.log")  # fmt: skip
        qdrant.start(f"http://127.0.0.1:{qdrant_port}/readyz")
        started.append(qdrant)
        env = {"QDRANT_URL": f"http://127.0.0.1:{qdrant_port}", "LLM_BASE_URL": llm_url or (llama.base_url if llama
               else ""), "LLM_MODEL": "smollm2", "LLM_MAX_TOKENS": "16", "TOP_K": "1", "AUTH_DISABLED": "true",
               "RATE_LIMIT_PER_MINUTE": "0", "LOG_FORMAT": "text", "HF_HUB_OFFLINE": "1",
               "EMBEDDING_THREADS": "1"}  # fmt: skip
        ports = [free_port(), free_port()]
        replicas = []
        for i, port in enumerate(ports):
            cmd = [sys.executable, "-m", "uvicorn", "--factory", "backend.main:app_from_env", "--host", "127.0.0.1",
                   "--port", str(port)]  # fmt: skip
            replica = Process(cmd, workdir / f"replica-{i + 1}.log", env)
            replica.start(f"http://127.0.0.1:{port}/health")
            replicas.append(replica)
            started.append(replica)
        proxy_port = free_port()
        proxy = Process([nginx, "-p", str(workdir), "-e", str(workdir / "nginx-error.log"), "-c",
                         str(nginx_conf(workdir, proxy_port, ports))], workdir / "nginx.log")  # fmt: skip
        url = f"http://127.0.0.1:{proxy_port}"
        proxy.start(f"{url}/health")
        started.append(proxy)
        r = httpx.post(f"{url}/documents", data={"space_id": "scale"}, files=[("files", PUMP)], timeout=120)
        r.raise_for_status()
        warm = ask_under_load(url, 2 * concurrency, concurrency, retries=retries)
        timeline: dict[str, float] = {}
        t0 = time.monotonic()

        def kill() -> None:
            replicas[0].kill()  # the writer, with questions in flight
            timeline["killed_at_s"] = round(time.monotonic() - t0, 2)

        load = ask_under_load(url, asks, concurrency, {kill_after: kill}, retries=retries)
        # With the writer dead, a write goes to the backup replica.
        valve = ("valve.txt", b"The Aster valve closes in 4 seconds.")
        upload = httpx.post(f"{url}/documents", data={"space_id": "scale"}, files=[("files", valve)], timeout=120)
        listed = httpx.get(f"{url}/documents", params={"space_id": "scale"}, timeout=30)
    finally:
        for process in reversed(started):
            process.stop()
        if llama is not None:
            llama.stop()
    errors = workdir / "nginx-error.log"
    upstream = [line for line in errors.read_text().splitlines() if "upstream" in line] if errors.exists() else []
    return {
        "warm": summary(warm),
        "under_kill": summary(load),
        "timeline": timeline,
        # each one a request nginx found its replica dead for, and sent to the next (the client saw nothing)
        # ([error] lines: a [warn] line follows each one that took the replica out)
        "nginx_upstream_errors": sum("[error]" in line for line in upstream),
        "upload_after_kill": upload.status_code,
        # what went wrong, where the list did not come: the status and the start of the body
        "documents_after_kill": sorted(d["path"] for d in listed.json()["documents"])
        if listed.status_code == 200
        else f"HTTP {listed.status_code}: {listed.text[:300]}",
        "nginx_upstream_log": upstream[-12:],
        "failed": [asdict(o) for o in load if o.status != 200],
    }


def print_api(result: dict[str, Any]) -> None:
    out = sys.stdout.write
    out("| phase | requests | answered | errors | retried by the client | p50 s | p95 s | max s |\n")
    out("|---|---|---|---|---|---|---|---|\n")
    for phase in ("warm", "under_kill"):
        s = result[phase]
        out(f"| {phase} | {s['requests']} | {s['answered']} | {s['errors']} | {s['retried']} | {s['p50_s']} | "
            f"{s['p95_s']} | {s['max_s']} |\n")  # fmt: skip
    out(f"\ntimeline: {result['timeline']}; requests nginx moved to the other replica: "
        f"{result['nginx_upstream_errors']}; an upload after the kill: HTTP {result['upload_after_kill']}, "
        f"documents then: {result['documents_after_kill']}\n")  # fmt: skip


def store_copy(workdir: Path, chunks: int) -> dict[str, Any]:
    """The `copy` scenario: a space of `chunks` synthetic chunks (random 384-dim vectors, real lexical vectors
    and payloads) copied from the embedded store to the Qdrant stand-in and back, timed and counted."""
    words = ["насосная", "станция", "ремонт", "бюджет", "склад", "pump", "valve", "pressure", "night", "shift"]
    rng = random.Random(7)
    texts = [" ".join(rng.choice(words) for _ in range(120)) for _ in range(50)]
    laptop = workdir / "laptop"
    store = VectorStore(path=laptop)
    try:
        asyncio.run(build(store, "big", texts, chunks, rng))
    finally:
        store.close()
    port = free_port()
    standin = Process([sys.executable, "-m", "tests.standins.qdrant_rest", "--port", str(port), "--path",
                       str(workdir / "server")], workdir / "qdrant.log")  # fmt: skip
    standin.start(f"http://127.0.0.1:{port}/readyz")
    try:
        url = f"http://127.0.0.1:{port}"
        t = time.perf_counter()
        to = copy_store(laptop, url, direction="to", prefix="rag")
        to_s = time.perf_counter() - t
        t = time.perf_counter()
        back = copy_store(workdir / "back", url, direction="from", prefix="rag")
        from_s = time.perf_counter() - t
    finally:
        standin.stop()
    points = sum(c.points for c in to)
    return {"chunks": chunks, "points": points, "to_s": round(to_s, 1), "from_s": round(from_s, 1),
            "to_points_per_s": round(points / to_s), "from_points_per_s": round(points / from_s),
            "identical_counts": [c.points for c in to] == [c.points for c in back]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=["llm", "api", "copy"])
    p.add_argument("--chunks", type=int, default=20_000, help="copy: chunks of the space copied (20000)")
    p.add_argument("--asks", type=int, default=60)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--kill-after", type=int, default=10)
    p.add_argument("--restart-after", type=int, default=30, help="llm: start replica A again after this many")
    p.add_argument("--settle", type=int, default=16, help="llm: asks after the run, replica A back")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.scenario == "llm":
            result = llm_replicas(Path(tmp), args.asks, args.concurrency, args.kill_after, args.restart_after,
                                  args.settle)  # fmt: skip
            print_llm(result)
        elif args.scenario == "copy":
            result = store_copy(Path(tmp), args.chunks)
            sys.stdout.write(json.dumps(result) + "\n")
        else:
            result = api_replicas(Path(tmp), args.asks, args.concurrency, args.kill_after)
            print_api(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
