"""Shared fixtures: a real llama.cpp server, embedded Qdrant in a temp dir, the real embedder, test files."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded during tests

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from fastapi.testclient import TestClient

from backend.config import Settings
from backend.main import create_app
from cli.run_local import bundled_gguf, llama_server_command
from tests.files import write_corpus
from tests.servers import free_port, stop_process, wait_until_serving
from tests.vllm.server import VLLM_PYTHON, VllmServer


class LlamaServer:
    """A real llama.cpp OpenAI-compatible server serving SmolLM2-135M-Instruct on a free port."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._log = log_path.open("wb")
        cmd = llama_server_command(bundled_gguf(), "127.0.0.1", self.port, n_ctx=4096, threads=2)
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_until_serving(f"{self.base_url}/models", self.proc, 90, "llama.cpp server", log_path)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.proc, timeout_s=10)
        self._log.close()


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = LlamaServer(tmp_path_factory.mktemp("llm") / "llama.log")
    yield server
    server.stop()


def missing(message: str, flag: str) -> NoReturn:
    """A tool a test needs is not installed: skip, except where `flag`=1 (make test, CI installs the tool):
    there a missing tool is a failure, not a silent skip."""
    if os.environ.get(flag) == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_vllm_python() -> Path:
    """.venv-vllm's python (`make vllm-venv`); see missing() for REQUIRE_VLLM."""
    if not VLLM_PYTHON.is_file():
        missing(f"the vLLM tier needs {VLLM_PYTHON}: run `make vllm-venv`", "REQUIRE_VLLM")
    return VLLM_PYTHON


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """Real vLLM on CPU (see require_vllm_python)."""
    require_vllm_python()
    server = VllmServer(tmp_path_factory.mktemp("vllm") / "vllm.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def vllm_server_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A second real vLLM on CPU under another model name: the pair a GPU would share (model switching)."""
    require_vllm_python()
    server = VllmServer(tmp_path_factory.mktemp("vllm-b") / "vllm.log", served_name="smollm2-vllm-b")
    yield server
    server.stop()


class QdrantStandin:
    """The Qdrant REST stand-in (tests/standins/qdrant_rest.py) as a process on a fixed port, so that a
    test can kill it and start it again over the same data, as a Qdrant server restarts."""

    def __init__(self, data: Path, log_path: Path) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("ab")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        cmd = [sys.executable, "-m", "tests.standins.qdrant_rest", "--port", str(self.port), "--path", str(self.data)]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1])
        wait_until_serving(f"{self.url}/readyz", self.proc, 60, "the Qdrant stand-in", Path(self._log.name))

    def kill(self) -> None:
        """kill -9: no goodbye to open connections, the port refuses from now on."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def drop_all(self) -> None:
        for c in httpx.get(f"{self.url}/collections").json()["result"]["collections"]:
            httpx.delete(f"{self.url}/collections/{c['name']}").raise_for_status()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout_s=10)
        self._log.close()


@pytest.fixture(scope="session")
def qdrant_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QdrantStandin]:
    folder = tmp_path_factory.mktemp("qdrant-server")
    server = QdrantStandin(folder / "data", folder / "qdrant.log")
    yield server
    server.stop()


@pytest.fixture
def make_settings(tmp_path: Path, llm_server: LlamaServer) -> Callable[..., Settings]:
    def build(**overrides: object) -> Settings:
        values: dict[str, Any] = {
            "qdrant_path": tmp_path / "qdrant",
            "llm_base_url": llm_server.base_url,
            "llm_max_tokens": 64,
            "log_format": "text",
            # Most tests are about something else; tests/integration/test_auth.py runs with keys.
            "auth_disabled": True,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture(params=["embedded", "server"])
def store_settings(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Iterator[Settings]:
    """Settings for embedded Qdrant, then for a Qdrant server (the stand-in): the tests that use this
    fixture run against both of the store adapter's clients."""
    if request.param == "embedded":
        yield make_settings()
        return
    server: QdrantStandin = request.getfixturevalue("qdrant_server")
    yield make_settings(qdrant_url=server.url)
    server.drop_all()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    write_corpus(root)
    return root


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run a CLI module as a real subprocess (the way users do)."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parents[1],
    )
