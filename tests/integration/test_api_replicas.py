"""Two API replicas (uvicorn) behind a real nginx (Debian's nginx-light) on one Qdrant server, one killed under
load: every question answered (nginx moves it, or the client retries), writes go on through the other replica.
The nginx routes are the compose profile's own (docker/nginx/rag-locations.conf)."""

from __future__ import annotations

import re
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from backend.config import Settings
from backend.main import create_app
from benchmarks.scale_out import Process, api_replicas, find_nginx, nginx_conf
from tests.conftest import LlamaServer, QdrantStandin, missing
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def nginx() -> str:
    """Missing nginx: skipped, except where REQUIRE_NGINX=1 (make test installs it)."""
    found = find_nginx()
    if found is None:
        missing("nginx is not installed: `make nginx` (apt-get install nginx-light)", "REQUIRE_NGINX")
    return found


def test_killing_an_api_replica_under_load_loses_no_request(
    nginx: str, llm_server: LlamaServer, tmp_path: Path
) -> None:
    result = api_replicas(tmp_path, asks=20, concurrency=4, kill_after=5, llm_url=llm_server.base_url)

    assert result["warm"]["errors"] == 0
    load = result["under_kill"]
    assert load["requests"] == 20 and load["answered"] == 20, result["failed"]
    assert result["nginx_upstream_errors"] >= 1  # the kill was felt: requests met the dead replica
    assert result["upload_after_kill"] == 200, result["nginx_upstream_log"]  # the writer is dead: its backup
    assert result["documents_after_kill"] == ["pump.txt", "valve.txt"], result["nginx_upstream_log"]


class IdleNotingReplica(socketserver.ThreadingTCPServer):
    """A stand-in API replica for what uvicorn cannot tell: it answers every HTTP/1.1 request with 200 on a
    keep-alive connection and notes, for each request that came on a connection used before, how long that
    connection had been idle."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int) -> None:
        self.idle_s: list[float] = []
        super().__init__(("127.0.0.1", port), self.Handler)

    class Handler(socketserver.StreamRequestHandler):
        server: IdleNotingReplica

        def handle(self) -> None:
            answered_at = None
            while True:
                lines = []
                while (line := self.rfile.readline()) not in (b"\r\n", b""):
                    lines.append(line)
                if not lines:
                    return  # nginx closed the connection
                if answered_at is not None:
                    self.server.idle_s.append(time.monotonic() - answered_at)
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                self.wfile.flush()
                answered_at = time.monotonic()


@pytest.fixture
def idle_noting_replicas() -> Iterator[list[IdleNotingReplica]]:
    replicas = [IdleNotingReplica(free_port()) for _ in range(2)]
    threads = [threading.Thread(target=r.serve_forever, daemon=True) for r in replicas]
    for t in threads:
        t.start()
    yield replicas
    for r in replicas:
        r.shutdown()
        r.server_close()


def dockerfile_keep_alive_s() -> float:
    """How long the Dockerfile's uvicorn keeps an idle connection: its --timeout-keep-alive, else uvicorn's default."""
    cmd = next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD"))
    assert "uvicorn" in cmd, cmd
    given = re.search(r"--timeout-keep-alive[= ]+(\d+)", cmd)
    return float(given.group(1)) if given else float(uvicorn.Config("backend.main:app_from_env").timeout_keep_alive)


def test_nginx_lets_an_idle_connection_to_a_replica_go_before_the_replica_closes_it(
    nginx: str, idle_noting_replicas: list[IdleNotingReplica], tmp_path: Path
) -> None:
    """uvicorn closes a keep-alive connection that has been idle for its --timeout-keep-alive; a request nginx
    sends onto such a connection just then fails, and with max_fails=1 takes that replica out: with the other
    one down, a 502. docker/nginx/nginx.conf (run here as it is) must let idle connections go sooner."""
    keep_alive_s = dockerfile_keep_alive_s()
    port = free_port()
    proxy = Process([nginx, "-p", str(tmp_path), "-e", str(tmp_path / "nginx-error.log"), "-c",
                     str(nginx_conf(tmp_path, port, [r.server_address[1] for r in idle_noting_replicas]))],
                    tmp_path / "nginx.log")  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    proxy.start(f"{url}/health")
    try:
        with httpx.Client(timeout=10) as client:
            for _ in range(6):
                assert client.get(f"{url}/health").status_code == 200
            reused = sum(len(r.idle_s) for r in idle_noting_replicas)
            time.sleep(keep_alive_s + 0.5)
            for _ in range(6):
                assert client.get(f"{url}/health").status_code == 200
    finally:
        proxy.stop()
    assert reused >= 2  # the premise: nginx keeps connections to the replicas open between requests
    idle = [s for r in idle_noting_replicas for s in r.idle_s]
    assert max(idle) < keep_alive_s - 0.5, idle


def test_what_one_replica_writes_or_deletes_the_other_sees(
    make_settings: Callable[..., Settings], qdrant_server: QdrantStandin, tmp_path: Path
) -> None:
    """Two replicas on one Qdrant server: the summary cache is shared, and a space one deletes is gone for the
    other too (a clean 404, though the other had it cached) rather than a 503."""
    replicas = [make_settings(qdrant_url=qdrant_server.url, qdrant_path=tmp_path / f"unused-{i}", llm_max_tokens=32)
                for i in range(2)]  # fmt: skip
    try:
        with TestClient(create_app(replicas[0])) as a, TestClient(create_app(replicas[1])) as b:
            pump = [("files", ("pump.md", b"# Pump\n\nThe Glimmer pump runs at a maximum pressure of 9 bar."))]
            assert a.post("/documents", data={"space_id": "shared"}, files=pump).status_code == 200
            assert b.post("/search", json={"q": "Glimmer pump", "space_id": "shared"}).status_code == 200
            first = a.post("/summarize", json={"space_id": "shared", "filters": {}})
            assert first.status_code == 200 and first.json()["cached"] is False
            again = b.post("/summarize", json={"space_id": "shared", "filters": {}})
            assert again.status_code == 200 and again.json()["cached"] is True  # made by a, served by b
            assert again.json()["summary"] == first.json()["summary"]

            assert a.delete("/spaces/shared").status_code == 200
            gone = b.post("/search", json={"q": "Glimmer pump", "space_id": "shared"})
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "space_not_found"
            assert "deleted meanwhile" in gone.json()["error"]["message"]
            again = b.post("/search", json={"q": "Glimmer pump", "space_id": "shared"})
            assert again.status_code == 404 and "does not exist" in again.json()["error"]["message"]
    finally:
        qdrant_server.drop_all()
