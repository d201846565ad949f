"""The embedded store of before Qdrant Edge (qdrant-client's local mode): refused at start-up with the
command that moves it, moved without re-embedding, and a move cut short loses nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from qdrant_client import QdrantClient
from qdrant_client.http import models

from backend.adapters import local_mode_import
from backend.adapters.store import LOCAL_MODE_MIGRATE_HINT, StoreFormatError, VectorStore
from backend.config import Settings
from backend.container import build_ingest, load_embedder, open_store, retrieval_config
from backend.main import create_app
from backend.observability import Metrics
from backend.services.ingest import SourceFile
from backend.services.retrieval import RetrievalService
from cli import migrate as migrate_cli

DOCS = [
    SourceFile("mail/nasos.txt", ("Насосная станция номер три остановлена на ремонт. " * 30).encode()),
    SourceFile("specs/crane.md", b"# Crane\n\nThe gantry crane lifts twelve tonnes. " * 20),
    SourceFile("minutes/sovet.txt", "Совет директоров утвердил бюджет на строительство склада.".encode()),
]
QUESTIONS = ["Какая насосная станция на ремонте?", "How much does the crane lift?", "бюджет склада"]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def everything(client: QdrantClient | Any) -> dict[str, dict[str, Any]]:
    """collection -> point id -> (payload, vectors), as the engine returns them."""
    out: dict[str, dict[str, Any]] = {}
    for c in client.get_collections().collections:
        points, _ = client.scroll(c.name, limit=10_000, with_payload=True, with_vectors=True)
        out[c.name] = {str(p.id): (p.payload, _rounded(p.vector)) for p in points}
    return out


class Half:
    """A multi-vector kept in 16-bit floats: the engine normalises what it is given and rounds it to 16 bits
    again, so a moved copy equals the original to that precision (about 3 significant digits), not exactly."""

    def __init__(self, rows: list[list[float]]) -> None:
        self.rows = np.asarray(rows, dtype=np.float32)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Half) and self.rows.shape == other.rows.shape
                and bool(np.allclose(self.rows, other.rows, rtol=2e-3, atol=1e-4)))  # fmt: skip

    def __repr__(self) -> str:
        return f"Half({self.rows.shape}, first {self.rows.ravel()[:4].tolist()})"


def _rounded(vector: Any) -> Any:
    if isinstance(vector, dict):
        return {k: _rounded(v) for k, v in vector.items()}
    if isinstance(vector, models.SparseVector):
        return sorted(zip(vector.indices, [round(v, 5) for v in vector.values], strict=True))
    if vector and isinstance(vector[0], list):  # a multi-vector (each sentence of a chunk)
        return Half(vector)
    return [round(x, 5) for x in vector] if vector else vector


def search(settings: Settings) -> list[list[tuple[float, str]]]:
    store = open_store(settings)
    try:
        retrieval = RetrievalService(store, load_embedder(settings), Metrics(), retrieval_config(settings))
        # Chunks of a repeated text score alike: ties are compared as sets (their order is the engine's), and
        # those tied at the cut are left out (which of them makes the list is the engine's choice too).
        out = []
        for q in QUESTIONS:
            found = [(-round(c.score, 4), c.id) for c in run(retrieval.retrieve("s", q, 8)).chunks]
            out.append(sorted(f for f in found if f[0] < found[-1][0]))
        return out
    finally:
        store.close()


@pytest.fixture
def old_folder(settings: Settings, tmp_path: Path) -> tuple[Path, dict[str, Any], Any]:
    """A space indexed with today's code, then written out as the local-mode engine stored it."""
    store = open_store(settings)
    run(build_ingest(settings, store, load_embedder(settings), Metrics()).ingest("s", DOCS))
    store.close()
    answers = search(settings)
    edge = VectorStore(path=settings.qdrant_path)
    old = tmp_path / "old-store"
    local = QdrantClient(path=str(old))
    for c in edge._client.get_collections().collections:
        info = edge._client.get_collection(c.name)
        local.create_collection(c.name, vectors_config=info.config.params.vectors,
                                sparse_vectors_config=info.config.params.sparse_vectors,
                                metadata=info.config.metadata)  # fmt: skip
        points, _ = edge._client.scroll(c.name, limit=10_000, with_payload=True, with_vectors=True)
        local.upsert(c.name, [models.PointStruct(id=p.id, vector=p.vector or {}, payload=p.payload) for p in points])
    contents = everything(local)
    local.close()
    edge.close()
    return old, contents, answers


def test_an_old_store_folder_is_refused_with_the_command_that_moves_it(
    old_folder: Any, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    old, _, _ = old_folder
    with pytest.raises(StoreFormatError) as err:
        VectorStore(path=old)
    assert LOCAL_MODE_MIGRATE_HINT in str(err.value) and str(old) in str(err.value)
    with pytest.raises(StoreFormatError), TestClient(create_app(settings.model_copy(update={"qdrant_path": old}))):
        pass  # the service does not start on it
    assert not (old / "shards").exists()  # nothing was written into it


def test_the_move_keeps_every_point_and_every_answer(
    old_folder: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old, contents, answers = old_folder
    monkeypatch.setenv("QDRANT_PATH", str(old))
    assert migrate_cli.main(["--from-local-mode"]) == 0
    out = capsys.readouterr().out
    assert "rag-chunks-s: " in out and "rag-docs-s: 3 points" in out and "local-mode-backup" in out
    store = VectorStore(path=old)
    try:
        assert everything(store._client) == contents  # ids, payloads and vectors, every collection
        assert set(store._client.get_collection("rag-chunks-s").payload_schema or {}) >= {"file_type", "folders"}
    finally:
        store.close()
    assert search(settings.model_copy(update={"qdrant_path": old})) == answers
    assert (old / "local-mode-backup" / "collection").is_dir() and not (old / "collection").exists()
    assert migrate_cli.main(["--from-local-mode"]) == 1  # nothing left to move: said so
    assert "nothing to import" in capsys.readouterr().err


def test_a_move_cut_short_leaves_the_old_store_in_use_and_is_finished_by_running_it_again(
    old_folder: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old, contents, answers = old_folder
    real_copy = local_mode_import._copy
    copies: list[str] = []

    def killed_in_the_second(source: Any, target: Any, name: str, batch: int) -> int:
        copies.append(name)
        if len(copies) == 2:
            real_copy(source, target, name, 2)  # part of it written...
            raise KeyboardInterrupt  # ... then the process is stopped
        return real_copy(source, target, name, batch)

    monkeypatch.setattr(local_mode_import, "_copy", killed_in_the_second)
    monkeypatch.setenv("QDRANT_PATH", str(old))
    with pytest.raises(KeyboardInterrupt):
        migrate_cli.main(["--from-local-mode"])
    with pytest.raises(StoreFormatError):  # still the old store, whole
        VectorStore(path=old)
    local = QdrantClient(path=str(old))
    assert everything(local) == contents
    local.close()

    monkeypatch.setattr(local_mode_import, "_copy", real_copy)
    assert migrate_cli.main(["--from-local-mode"]) == 0
    assert "(copied by an earlier run)" in capsys.readouterr().out  # the first collection was not copied again
    store = VectorStore(path=old)
    try:
        assert everything(store._client) == contents
    finally:
        store.close()
    assert search(settings.model_copy(update={"qdrant_path": old})) == answers
