"""Two API replicas (uvicorn) behind a real nginx (Debian's nginx-light) on one Qdrant server, one killed under
load: every question answered (nginx moves it, or the client retries), writes go on through the other replica.
The nginx routes are the compose profile's own (docker/nginx/rag-locations.conf)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.scale_out import api_replicas, find_nginx
from tests.conftest import LlamaServer


@pytest.fixture
def nginx() -> str:
    """Missing nginx: skipped, except where REQUIRE_NGINX=1 (make test installs it)."""
    found = find_nginx()
    if found is None:
        message = "nginx is not installed: `make nginx` (apt-get install nginx-light)"
        if os.environ.get("REQUIRE_NGINX") == "1":
            pytest.fail(message)
        pytest.skip(message)
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
