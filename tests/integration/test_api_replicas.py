"""Two API replicas (uvicorn) behind a real nginx (Debian's nginx-light) on one Qdrant server, one killed under
load: every question answered (nginx moves it, or the client retries), writes go on through the other replica.
The nginx routes are the compose profile's own (docker/nginx/rag-locations.conf)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.config import Settings
from backend.main import create_app
from benchmarks.scale_out import api_replicas, find_nginx
from tests.conftest import LlamaServer, QdrantStandin, missing


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
    assert result["upload_after_kill"] == 200  # the writer is dead: its backup takes the write
    assert result["documents_after_kill"] == ["pump.txt", "valve.txt"]


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
