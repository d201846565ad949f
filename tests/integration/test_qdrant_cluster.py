"""A Qdrant cluster as the service sees it: several node URLs with failover, and the cluster settings on every
call. The server is the REST stand-in (one node; it reports the settings it was asked for and logs each
request's query); a real 3-node cluster cannot run here (docs/deployment.md, "Qdrant cluster", says how to
check one)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from backend.config import ConfigError, Settings, load_settings
from backend.main import create_app
from tests.conftest import QdrantStandin
from tests.servers import free_port

DOCS = [("files", ("pumps/glimmer.md", b"# Glimmer pump\n\nThe Glimmer pump runs at a maximum pressure of 9 bar.")),
        ("files", ("notes/kotel.txt", "Котельная на Садовой улице переведена на газ.".encode()))]  # fmt: skip


@pytest.fixture
def server(qdrant_server: QdrantStandin) -> Iterator[QdrantStandin]:
    yield qdrant_server
    qdrant_server.drop_all()


def test_cluster_settings_reach_every_call_and_a_dead_node_is_skipped(
    make_settings: Callable[..., Settings], server: QdrantStandin
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # the first node listed is down from the start
    settings = make_settings(
        qdrant_url=f"{dead},{server.url}", qdrant_shard_number=6, qdrant_replication_factor=2,
        qdrant_write_consistency_factor=2, qdrant_read_consistency="majority", qdrant_write_ordering="strong",
        qdrant_timeout_s=2.0, qdrant_breaker_failures=1, qdrant_breaker_cooldown_s=60,
    )  # fmt: skip
    with TestClient(create_app(settings)) as c:
        assert c.post("/documents", data={"space_id": "clustered"}, files=DOCS).status_code == 200
        found = c.post("/search", json={"q": "Glimmer pump pressure", "space_id": "clustered"})
        assert found.status_code == 200 and found.json()["sources"][0]["path"] == "pumps/glimmer.md"
        ready = c.get("/ready").json()
    assert ready["status"] == "ready"
    assert f"nodes out of rotation: {dead} (open)" in ready["checks"]["qdrant"]["detail"]

    for name in ("rag-chunks-clustered", "rag-docs-clustered"):
        params = httpx.get(f"{server.url}/collections/{name}").json()["result"]["config"]["params"]
        assert (params["shard_number"], params["replication_factor"], params["write_consistency_factor"]) == (6, 2, 2)
    seen = [
        r
        for r in httpx.get(f"{server.url}/standin/requests").json()
        if r["path"].startswith(("/collections/rag-chunks-clustered/", "/collections/rag-docs-clustered/"))
    ]  # this test's space (the stand-in serves the whole session)
    queries = [r for r in seen if r["path"].endswith(("/points/query", "/points/query/batch"))]
    writes = [r for r in seen if r["method"] == "PUT" and r["path"].endswith("/points")]
    assert queries and all(r["query"].get("consistency") == "majority" for r in queries)
    assert writes and all(r["query"].get("ordering") == "strong" for r in writes)


def test_every_node_down_is_a_clean_503_and_a_node_back_rejoins_after_its_cool_down(
    make_settings: Callable[..., Settings], server: QdrantStandin
) -> None:
    settings = make_settings(qdrant_url=f"{server.url},http://127.0.0.1:{free_port()}", qdrant_timeout_s=2.0,
                             qdrant_breaker_failures=1, qdrant_breaker_cooldown_s=1.0)  # fmt: skip
    search = {"q": "Glimmer pump pressure", "space_id": "k"}
    with TestClient(create_app(settings)) as c:
        assert c.post("/documents", data={"space_id": "k"}, files=DOCS).status_code == 200
        server.kill()  # the node in use dies; the other one listed is down too
        try:
            r = c.post("/search", json=search)
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
            assert "QDRANT_URL" in r.json()["error"]["message"]
        finally:
            server.start()
        time.sleep(2.5)  # both circuits (the node's, the store's) cool down, then one request probes
        r = c.post("/search", json=search)
        assert r.status_code == 200 and r.json()["sources"][0]["path"] == "pumps/glimmer.md"


def test_a_node_back_from_the_dead_is_probed_after_its_cool_down_and_used_again(
    make_settings: Callable[..., Settings], server: QdrantStandin, tmp_path: Path
) -> None:
    other = QdrantStandin(tmp_path / "node-b", tmp_path / "node-b.log")  # a second node, on its own port
    other.kill()  # down from the start
    settings = make_settings(qdrant_url=f"{other.url},{server.url}", qdrant_timeout_s=2.0, qdrant_breaker_failures=1,
                             qdrant_breaker_cooldown_s=1.0)  # fmt: skip
    try:
        with TestClient(create_app(settings)) as c:
            assert c.get("/spaces").status_code == 200  # answered by the live node; node b's circuit opens
            assert f"{other.url} (open)" in c.get("/ready").json()["checks"]["qdrant"]["detail"]
            other.start()
            time.sleep(1.5)  # its cool-down
            assert c.get("/spaces").status_code == 200
            assert "out of rotation" not in (c.get("/ready").json()["checks"]["qdrant"]["detail"] or "")
        assert any(r["path"] == "/collections" for r in httpx.get(f"{other.url}/standin/requests").json())
    finally:
        other.stop()


def test_cluster_settings_are_checked_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"QDRANT_SHARD_NUMBER": "3"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match="QDRANT_SHARD_NUMBER apply to a Qdrant server or cluster; set QDRANT_URL"):
        load_settings(_env_file=None)
    monkeypatch.setenv("QDRANT_URL", "http://a:6333,http://b:6333")
    monkeypatch.setenv("QDRANT_WRITE_CONSISTENCY_FACTOR", "2")
    with pytest.raises(ConfigError, match=r"QDRANT_WRITE_CONSISTENCY_FACTOR \(2\) cannot exceed"):
        load_settings(_env_file=None)
    monkeypatch.setenv("QDRANT_REPLICATION_FACTOR", "2")
    monkeypatch.setenv("QDRANT_READ_CONSISTENCY", "3")
    with pytest.raises(ConfigError, match="QDRANT_READ_CONSISTENCY=3 must lie between 1"):
        load_settings(_env_file=None)
    monkeypatch.setenv("QDRANT_READ_CONSISTENCY", "quorum")
    assert load_settings(_env_file=None).qdrant_read_consistency == "quorum"
    monkeypatch.setenv("QDRANT_READ_CONSISTENCY", "2")
    assert load_settings(_env_file=None).qdrant_read_consistency == 2
