"""The whole local stack in one command: LLM server, index docs/ into `demo`, serve the API; Ctrl-C stops all.

`python -m cli.run_local` (what `make run` calls). The LLM server is llama.cpp's OpenAI-compatible
server with LOCAL_MODEL (default Qwen2.5-Coder-1.5B-Instruct, assembled from PyPI on first use:
cli/local_models.py), unless LLM_BASE_URL already answers.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse

import httpx

from backend.config import ConfigError, Settings, load_settings
from backend.observability import configure_logging
from cli import local_models

log = logging.getLogger("run_local")

SMOLLM2_ALIAS = "smollm2-135m-instruct"


def bundled_gguf() -> Path:
    """SmolLM2-135M-Instruct: tiny and fast, for the tests that check mechanics rather than answers."""
    return local_models.resolve(SMOLLM2_ALIAS, Path("data/models"))


def llama_server_command(
    model: Path, host: str, port: int, n_ctx: int, threads: int, alias: str = SMOLLM2_ALIAS
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        alias,
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(threads),
        # Default True: a new request silently cuts off the stream in progress (still HTTP 200).
        "--interrupt_requests",
        "False",
    ]


def wait_until(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def index_demo(folder: Path, space: str, env: dict[str, str]) -> bool:
    """Index `folder` into the demo space; a demo space built with another embedder (an older default)
    holds nothing but this folder, so it is rebuilt rather than refused."""
    cmd = [sys.executable, "-m", "cli.index_cli", "--dir", str(folder), "--space", space, "--prune"]
    result = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0 and "was indexed with embedding model" in result.stderr:
        log.warning("the %s space was built with another embedding model: indexing %s into it again", space, folder)
        result = subprocess.run([*cmd, "--recreate"], env=env, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        log.error("indexing %s failed (exit %d)", folder, result.returncode)
    return result.returncode == 0


class Stack:
    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log.info("starting %s: %s", name, " ".join(cmd))
        proc = subprocess.Popen(cmd, env=env)
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                log.info("stopping %s (pid %d)", name, proc.pid)
                proc.terminate()
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.run_local", description=__doc__)
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="folder indexed into the demo space")
    parser.add_argument("--space", default="demo")
    parser.add_argument("--no-index", action="store_true", help="serve without indexing first")
    args = parser.parse_args(argv)
    try:
        settings: Settings = load_settings()
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    configure_logging(settings.log_level, "text")
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    if not (settings.api_keys or settings.api_keys_file or settings.auth_disabled):
        if settings.host not in ("127.0.0.1", "localhost"):
            log.error("HOST=%s without API keys: set API_KEYS (docs/security.md) or AUTH_DISABLED=true", settings.host)
            return 2
        # The local demo listens on this machine only; serving others needs keys (docs/security.md).
        log.warning("no API keys set: the local demo at %s runs without authentication", settings.host)
        env["AUTH_DISABLED"] = "true"
    stack = Stack()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        models_url = f"{settings.llm_base_url}/models"
        if wait_until(models_url, 1):
            log.info("using the LLM server already answering at %s", settings.llm_base_url)
        else:
            llm = urlparse(settings.llm_base_url)
            if llm.hostname not in ("127.0.0.1", "localhost"):
                log.error("the LLM server at %s does not answer", settings.llm_base_url)
                return 1
            try:
                # Pieces missing from this environment are installed from PyPI (once: pip keeps them).
                model = local_models.fetch(settings.local_model, settings.local_models_dir)
            except local_models.LocalModelError as exc:
                log.error("%s", exc)
                return 1
            log.info("serving %s from %s", settings.local_model, model)
            command = llama_server_command(
                model, llm.hostname, llm.port or 80, settings.llm_context_tokens, os.cpu_count() or 2,
                alias=local_models.served_name(settings.local_model),
            )  # fmt: skip
            proc = stack.start("llm server", command, env)
            if not wait_until(models_url, 120, proc):
                log.error("the LLM server did not come up at %s", settings.llm_base_url)
                return 1
        if not args.no_index and not index_demo(args.docs, args.space, env):
            return 1
        api = stack.start(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "backend.main:app_from_env",
                "--host",
                settings.host,
                "--port",
                str(settings.port),
            ],
            env,
        )
        base = f"http://{settings.host}:{settings.port}"
        if not wait_until(f"{base}/health", 120, api):
            log.error("the API did not start; see its log above")
            return 1
        sys.stdout.write(
            f"\nReady. Ask a question (Ctrl-C stops everything):\n\n  curl -s {base}/ask "
            "-H 'Content-Type: application/json' "
            f'-d \'{{"q": "How do I index a folder?", "space_id": "{args.space}"}}\'\n\n'
            f'  or: .venv/bin/rag ask "How do I index a folder?" --space {args.space} --url {base}\n'
            f'  по-русски: .venv/bin/rag ask "Как проиндексировать папку?" --space {args.space} --url {base}\n'
            f"  web page: {base}/   (no API key needed in this local demo)\n"
            f"  API docs: {base}/docs\n\n"
        )
        sys.stdout.flush()
        while all(p.poll() is None for _, p in stack.procs):
            time.sleep(0.5)
        dead = [name for name, p in stack.procs if p.poll() is not None]
        log.error("%s exited; stopping the rest", ", ".join(dead))
        return 1
    except KeyboardInterrupt:
        log.info("interrupted")
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
