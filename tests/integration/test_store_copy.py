"""`cli.migrate --to URL` / `--from URL`: the embedded store into a Qdrant server and back, nothing re-embedded.
The server is the REST stand-in over Qdrant Edge (no Qdrant server binary installs here)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from backend.adapters.edge_engine import EdgeEngine
from backend.adapters.store_copy import JOURNAL, StoreCopyError, copy_store
from backend.config import Settings
from backend.container import build_ingest, load_embedder, open_store
from backend.main import create_app
from backend.observability import Metrics
from backend.services.ingest import SourceFile
from tests.conftest import QdrantStandin, run_cli

DOCS = [
    SourceFile("mail/nasos.txt", ("Насосная станция номер три остановлена на ремонт. " * 30).encode()),
    SourceFile("specs/crane.md", b"# Crane\n\nThe gantry crane lifts twelve tonnes. " * 20),
    SourceFile("minutes/sovet.txt", "Совет директоров утвердил бюджет на строительство склада.".encode()),
]
SUMMARY = {"documents": ["d1"], "text": "Кран поднимает двенадцать тонн [1].", "style": "brief"}


def snapshot(folder: Path) -> dict[str, dict[str, tuple[Any, Any]]]:
    """Every point of every collection: {collection: {id: (vectors, payload)}}."""
    engine = EdgeEngine(folder)
    try:
        out: dict[str, dict[str, tuple[Any, Any]]] = {}
        for c in engine.get_collections().collections:
            points, _ = engine.scroll(c.name, limit=100_000, with_payload=True, with_vectors=True)
            out[c.name] = {str(p.id): (p.vector, p.payload) for p in points}
        return out
    finally:
        engine.close()


@pytest.fixture
def laptop(settings: Settings) -> Iterator[Path]:
    """An embedded store with two spaces and a stored summary, closed (the service is stopped)."""
    store = open_store(settings)
    try:
        ingest = build_ingest(settings, store, load_embedder(settings), Metrics())
        asyncio.run(ingest.ingest("docs", DOCS))
        asyncio.run(ingest.ingest("mail", DOCS[:1]))
        asyncio.run(store.put_summary("docs", "5c8f4d2e-0000-4000-8000-000000000001", SUMMARY))
    finally:
        store.close()
    yield settings.qdrant_path


@pytest.fixture
def server(qdrant_server: QdrantStandin) -> Iterator[QdrantStandin]:
    yield qdrant_server
    qdrant_server.drop_all()


def search(settings: Settings, query: str) -> list[tuple[str, float]]:
    with TestClient(create_app(settings)) as c:
        r = c.post("/search", json={"q": query, "space_id": "docs", "top_k": 5})
        assert r.status_code == 200, r.text
        return [(h["path"], round(h["score"], 5)) for h in r.json()["sources"]]


def test_round_trip_embedded_server_embedded_ends_identical(
    laptop: Path, server: QdrantStandin, settings: Settings, make_settings: Any, tmp_path: Path
) -> None:
    before = snapshot(laptop)
    assert {"rag-chunks-docs", "rag-docs-docs", "rag-summaries-docs", "rag-chunks-mail", "rag-docs-mail"} <= set(before)
    expected = search(settings, "Какую нагрузку поднимает кран?")

    out = run_cli("cli.migrate", "--to", server.url, "--shards", "6", "--replicas", "2",
                  env={"QDRANT_PATH": str(laptop)})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "counts and ids checked" in out.stdout and f"QDRANT_URL={server.url}" in out.stdout
    params = httpx.get(f"{server.url}/collections/rag-chunks-docs").json()["result"]["config"]["params"]
    assert (params["shard_number"], params["replication_factor"]) == (6, 2)  # laid out for the cluster
    assert not (laptop / JOURNAL).exists()  # finished
    assert snapshot(laptop) == before  # the source is unchanged
    # The service on the server answers as it did on the laptop: the same passages, the same scores.
    assert search(make_settings(qdrant_url=server.url), "Какую нагрузку поднимает кран?") == expected
    names = {c["name"] for c in httpx.get(f"{server.url}/collections").json()["result"]["collections"]}
    assert set(before) <= names

    back = tmp_path / "offline"
    out = run_cli("cli.migrate", "--from", server.url, env={"QDRANT_PATH": str(back)})
    assert out.returncode == 0, out.stderr
    assert snapshot(back) == before  # vectors (dense and sparse), payloads, ids: identical

    one = tmp_path / "one-space"
    out = run_cli("cli.migrate", "--from", server.url, "--space", "mail", env={"QDRANT_PATH": str(one)})
    assert out.returncode == 0, out.stderr
    assert set(snapshot(one)) == {"rag-chunks-mail", "rag-docs-mail"}


def test_a_copy_cut_short_is_finished_by_the_next_run(laptop: Path, server: QdrantStandin) -> None:
    before = snapshot(laptop)
    seen: list[str] = []

    def cut(name: str, written: int) -> None:
        seen.append(name)
        if len(seen) == 3:
            raise KeyboardInterrupt  # as a user's Ctrl-C, mid-collection

    with pytest.raises(KeyboardInterrupt):
        copy_store(laptop, server.url, direction="to", prefix="rag", batch=2, progress=cut)
    assert (laptop / JOURNAL).exists()

    copied = copy_store(laptop, server.url, direction="to", prefix="rag", batch=2)
    assert {c.name: c.points for c in copied} == {name: len(points) for name, points in before.items()}
    assert sum(c.written for c in copied) < sum(c.points for c in copied)  # what the first run wrote stayed
    assert not (laptop / JOURNAL).exists()
    back = snapshot(laptop)
    assert back == before


def test_a_collection_the_copy_did_not_create_is_never_touched(laptop: Path, server: QdrantStandin) -> None:
    httpx.put(f"{server.url}/collections/rag-docs-mail", json={"vectors": {}}).raise_for_status()
    with pytest.raises(StoreCopyError, match="rag-docs-mail, which this copy did not create"):
        copy_store(laptop, server.url, direction="to", prefix="rag")
    names = {c["name"] for c in httpx.get(f"{server.url}/collections").json()["result"]["collections"]}
    assert names == {"rag-docs-mail"}  # nothing written


def test_bad_targets_get_a_clear_message(laptop: Path) -> None:
    out = run_cli("cli.migrate", "--to", "qdrant:6333", env={"QDRANT_PATH": str(laptop)})
    assert out.returncode == 2 and "must start with http" in out.stderr
    out = run_cli("cli.migrate", "--to", "http://127.0.0.1:9", env={"QDRANT_PATH": str(laptop)})
    assert out.returncode == 1 and "no Qdrant server answered" in out.stderr
    out = run_cli("cli.migrate", "--all", "--space", "docs", env={"QDRANT_PATH": str(laptop)})
    assert out.returncode == 2 and "--space goes alone" in out.stderr
    out = run_cli("cli.migrate", "--from", "http://127.0.0.1:9", "--shards", "3", env={"QDRANT_PATH": str(laptop)})
    assert out.returncode == 2 and "go with --to" in out.stderr


def test_an_empty_source_is_refused_with_what_to_check(server: QdrantStandin, tmp_path: Path) -> None:
    with pytest.raises(StoreCopyError, match=r"the source holds no spaces.*QDRANT_PATH and COLLECTION_PREFIX"):
        copy_store(tmp_path / "empty", server.url, direction="to", prefix="rag")
    with pytest.raises(StoreCopyError, match="no such space at the source: nope"):
        copy_store(tmp_path / "empty", server.url, direction="from", prefix="rag", spaces=["nope"])
