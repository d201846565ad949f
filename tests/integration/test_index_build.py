"""The embedded store builds a space's search index while it serves: on a copy, in a process of its own,
with the updates made meanwhile replayed onto the copy before it takes the shard's place. Nothing written
is lost or changed, searches answer throughout, and a process killed at any step leaves a whole shard."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from qdrant_client.http import models

import backend.adapters.edge_index_build as edge_index_build
from backend.adapters.edge_engine import BUILDS, SHARDS, EdgeEngine
from backend.adapters.store import VectorStore
from backend.config import Settings
from backend.main import create_app

BUILDER = Path(edge_index_build.__file__)
DIM = 384  # large enough that the engine builds an HNSW graph (it leaves small segments unindexed)


def _points(start: int, count: int, seed: int = 0) -> list[models.PointStruct]:
    rng = np.random.default_rng(seed + start)
    dense = rng.standard_normal((count, DIM)).astype(np.float32)
    return [
        models.PointStruct(
            id=start + i,
            vector={"dense": dense[i].tolist(),
                    "lexical": models.SparseVector(indices=[(start + i) % 97, 1000 + i % 13], values=[1.0, 0.5])},
            payload={"doc": f"d{(start + i) % 10}", "n": start + i, "text": f"точка {start + i}"},
        )
        for i in range(count)
    ]  # fmt: skip


def _engine(path: Path, count: int) -> EdgeEngine:
    engine = EdgeEngine(path)
    engine.create_collection(
        "c",
        vectors_config={"dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE)},
        sparse_vectors_config={"lexical": models.SparseVectorParams(modifier=models.Modifier.IDF)},
        metadata={"space": "c"},
    )
    engine.create_payload_index("c", "doc", models.PayloadSchemaType.KEYWORD)
    for start in range(0, count, 1000):
        engine.upsert("c", _points(start, min(1000, count - start)))
    return engine


def _everything(engine: EdgeEngine) -> dict[str, Any]:
    records, _ = engine.scroll("c", limit=100_000, with_payload=True, with_vectors=True)
    return {
        str(r.id): (r.payload, [round(x, 5) for x in r.vector["dense"]], r.vector["lexical"])  # type: ignore[index]
        for r in records
    }


def _doc(value: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="doc", match=models.MatchValue(value=value))])


def _write_meanwhile(engine: EdgeEngine) -> None:
    """One of each kind of update the store makes, after the copy was taken."""
    engine.upsert("c", _points(50_000, 150, seed=7))
    engine.upsert("c", _points(10, 5, seed=8))  # replaced: new vectors for old ids
    engine.delete("c", models.PointIdsList(points=[0, 1, 2]))
    engine.delete("c", models.FilterSelector(filter=_doc("d3")))
    engine.set_payload("c", {"tag": "x"}, _doc("d4"))
    engine.create_payload_index("c", "tag", models.PayloadSchemaType.KEYWORD)
    engine.update_collection("c", metadata={"note": "written during the build"})


def _build(copy: Path) -> None:
    subprocess.run([sys.executable, str(BUILDER), str(copy), str(os.getpid())], check=True, timeout=300)


def test_a_build_on_a_copy_keeps_every_update_made_meanwhile_and_searches_answer_throughout(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "store", 8000)
    try:
        before = engine.get_collection("c").indexed_vectors_count or 0
        copy, points = engine.begin_build("c")
        assert points == 8000 and copy.is_dir()
        _write_meanwhile(engine)
        expected = _everything(engine)
        assert len(expected) == 8000 + 150 - 3 - 815  # 815 in d3 (15 of them new); 10..14 were replaced
        _build(copy)

        query = engine.retrieve("c", [124], with_vectors=True)[0].vector["dense"]  # type: ignore[index]
        answers: list[list[str]] = []
        failures: list[BaseException] = []
        done = threading.Event()

        def search() -> None:
            while not done.is_set():
                try:
                    hits = engine.query_points("c", query=query, using="dense", limit=3).points
                    answers.append([str(h.id) for h in hits])
                except BaseException as exc:  # recorded, asserted below
                    failures.append(exc)

        searcher = threading.Thread(target=search)
        searcher.start()
        try:
            assert engine.finish_build("c", copy, points)
        finally:
            done.set()
            searcher.join()
        assert not failures and answers and all(a[0] == "124" for a in answers)

        assert _everything(engine) == expected
        assert engine.indexing_state("c") == (len(expected), 8000, 155)  # the 155 upserted since are not indexed
        assert (engine.get_collection("c").indexed_vectors_count or 0) > before
        assert engine.get_collection("c").config.metadata == {"space": "c", "note": "written during the build"}
        assert not copy.exists() and not (tmp_path / "store" / BUILDS / "c.old").exists()
        # The payload index made during the build is there (a filter on it is answered).
        assert engine.count("c", models.Filter(must=[models.FieldCondition(
            key="tag", match=models.MatchValue(value="x"))])).count == 815  # fmt: skip
    finally:
        engine.close()

    reopened = EdgeEngine(tmp_path / "store")  # and it is on disk
    try:
        assert _everything(reopened) == expected
        assert reopened.indexing_state("c")[:2] == (len(expected), 8000)
    finally:
        reopened.close()


@pytest.mark.parametrize("cut", ["while building", "between the two renames", "after the renames"])
def test_a_process_killed_during_a_build_leaves_a_whole_shard(tmp_path: Path, cut: str) -> None:
    store = tmp_path / "store"
    engine = _engine(store, 2000)
    copy, points = engine.begin_build("c")
    _write_meanwhile(engine)
    expected = _everything(engine)
    _build(copy)
    engine.close()  # as a killed process would leave the files (every update is in the write-ahead log)
    live, old = store / SHARDS / "c", store / BUILDS / "c.old"
    if cut == "between the two renames":
        os.rename(live, old)
    elif cut == "after the renames":
        # The copy took the shard's place; the replaced shard was not removed yet.
        os.rename(live, old)
        os.rename(copy, live)
        expected = None  # the copy without what was replayed onto it: only checked to be whole below
    reopened = EdgeEngine(store)
    try:
        assert not any((store / BUILDS).iterdir())
        found = _everything(reopened)
        if expected is not None:
            assert found == expected
        else:
            assert len(found) == points
    finally:
        reopened.close()


def test_the_build_process_dies_with_the_service_and_the_next_start_cleans_up(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _engine(store, 8000).close()
    script = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        from backend.adapters.store import VectorStore

        async def main():
            store = VectorStore(path=Path({str(store)!r}), prefix="rag", index_after=1, min_free_mb=0,
                                background_index=True)
            store._chunks = lambda space: "c"
            store.note_written("c")
            while "c" not in store._build_procs:
                await asyncio.sleep(0.01)
            sys.stdout.write(f"{{store._build_procs['c'].pid}}\\n")
            sys.stdout.flush()
            await asyncio.sleep(600)

        asyncio.run(main())
    """)
    service = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    builder = 0
    try:
        assert service.stdout is not None
        builder = int(service.stdout.readline())
        # Once the build process has the copy open (it asked to die with its parent before that), freeze it:
        # then nothing but that request can end it.
        deadline = time.monotonic() + 30
        while str(store / BUILDS) not in _maps(builder) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(builder, signal.SIGSTOP)
        os.kill(service.pid, signal.SIGKILL)
        service.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(builder) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(builder), "the build process outlived the service"
    finally:
        service.kill()
        if builder and _alive(builder):
            os.kill(builder, signal.SIGKILL)
    reopened = EdgeEngine(store)
    try:
        assert not any((store / BUILDS).iterdir())
        assert reopened.count("c").count == 8000 and reopened.indexing_state("c")[1] == 0
    finally:
        reopened.close()


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie is dead (its parent is gone: init reaps it)
    except FileNotFoundError:
        return False


def _upload(client: TestClient, name: str, text: str) -> None:
    resp = client.post("/documents", data={"space_id": "s"}, files=[("files", (name, text.encode(), "text/plain"))])
    assert resp.status_code == 200, resp.text


def test_the_service_builds_the_index_in_the_background_and_answers_meanwhile(
    make_settings: Any,
) -> None:
    settings: Settings = make_settings(qdrant_index_after=5, qdrant_min_free_mb=0)
    with TestClient(create_app(settings)) as client:
        container = client.app.state.container  # type: ignore[attr-defined]
        store = container.store
        _upload(client, "насосы.txt", "Насосная станция номер три остановлена на ремонт до пятницы. " * 60)
        # The upload made the space due: a build runs now, and the service answers as before meanwhile.
        building = store._builds.get("s")
        assert building is not None
        (space,) = client.get("/spaces").json()["spaces"]
        assert space["index_building"] and space["indexed_chunks"] == 0
        _upload(client, "crane.txt", "The tower crane on site B was inspected on Monday and passed. " * 60)
        found = []
        while not building.done():
            found.append(client.post("/search", json={"q": "насосная станция", "space_id": "s"}))
        found.append(client.post("/search", json={"q": "насосная станция", "space_id": "s"}))
        assert all(r.status_code == 200 and r.json()["sources"][0]["path"] == "насосы.txt" for r in found)
        client.portal.call(store.index_builds_settled)  # type: ignore[union-attr]
        crane = client.post("/search", json={"q": "tower crane inspection", "space_id": "s"}).json()
        assert crane["sources"][0]["path"] == "crane.txt"
        metrics = client.get("/metrics").text
        assert 'rag_index_builds_total{outcome="built",space="s"}' in metrics
        (space,) = client.get("/spaces").json()["spaces"]
        assert not space["index_building"] and 0 < space["indexed_chunks"] <= space["chunks"]

        # Dropping a space stops its build; nothing is left behind.
        _upload(client, "more.txt", "Протокол совещания: решили перенести запуск котельной на 15 марта. " * 60)
        dropped_while_building = not store._builds["s"].done()
        assert client.delete("/spaces/s").status_code == 200
        assert store._builds["s"].done()  # the drop waited for the build to stop
        assert not list((settings.qdrant_path / BUILDS).glob("rag-chunks-s*"))
        assert client.get("/spaces").json()["spaces"] == []
        if dropped_while_building:
            assert 'rag_index_builds_total{outcome="cancelled",space="s"}' in client.get("/metrics").text


def test_a_build_that_fails_leaves_the_space_as_it_was_and_is_not_tried_again_at_every_write(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    _engine(store_dir, 500).close()
    (store_dir / BUILDS).write_text("a file where the copies go")  # the copy cannot be made
    outcomes: list[str] = []

    async def scenario() -> tuple[int, bool]:
        store = VectorStore(path=store_dir, index_after=1, min_free_mb=0, background_index=True,
                            on_index_build=lambda space, outcome, s: outcomes.append(outcome))  # fmt: skip
        store._chunks = lambda space: "c"  # type: ignore[method-assign]
        try:
            store.note_written("c")
            await store.index_builds_settled()
            store.note_written("c")  # another upload right after: no second try yet
            retried = not store._builds["c"].done()
            return await store.count_chunks("c"), retried
        finally:
            store.close()

    count, retried = asyncio.run(scenario())
    assert outcomes == ["failed"] and not retried and count == 500
