"""kill -9 of index_cli at random moments, then a re-run: the index ends identical to an uninterrupted run.

Between kills the corpus keeps changing (three versions of every file, some files added and removed), so
kills land in hashing, embedding, journalling, upserting and deleting. After each kill every document the
index lists must be complete (all chunks of its recorded version present). At the end the crashed index
and a fresh uninterrupted one of the same files hold the same point ids, the same payloads (less the
indexing time) and the same document records, with no garbage left.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from backend.adapters.store import VectorStore

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("CRASH_KILLS", "20"))
WORDS = (
    "pump", "valve", "pressure", "reactor", "audit", "budget", "meeting", "delivery", "supplier", "contract",
    "warranty", "sensor", "calibration", "schedule", "incident", "report", "safety", "inspection", "maintenance",
    "turbine", "boiler", "cooling", "filter", "seal",
)  # fmt: skip


def write_corpus(root: Path, version: int) -> None:
    """24 files; each version rewrites two thirds of them, removes some and adds others; a mailbox and a chat
    grow."""
    rng = random.Random(version)
    wanted = {f"site{i % 4}/doc{i:02d}.txt" for i in range(24) if (i + version) % 7 != 0}
    wanted |= {f"extra/v{version}-{j}.md" for j in range(2)}
    for path in root.rglob("*"):
        if path.is_file() and path.relative_to(root).as_posix() not in wanted:
            path.unlink()
    for rel in sorted(wanted):
        index = sum(map(ord, rel))
        if (index + version) % 3 == 0 and (root / rel).exists():
            continue  # unchanged in this version
        sentences = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize() + "."
            for _ in range(rng.randint(30, 60))  # half the MiniLM-era size: multilingual-e5 embeds more slowly
        ]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"{rel} version {version}\n\n" + " ".join(sentences), encoding="utf-8")
        os.utime(root / rel, (1_700_000_000 + index, 1_700_000_000 + index))  # same dates in both indexes
    write_conversations(root, version)


def write_conversations(root: Path, version: int) -> None:
    """A mailbox and a WhatsApp chat that grow with each version: written as a stream, partly re-embedded."""
    count = 16 + 5 * version

    def sentence(i: int) -> str:
        rng = random.Random(i)
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 30))).capitalize() + "."

    mail = "".join(
        f"From u{i % 3}@x.org Fri Mar  1 10:00:00 2024\nFrom: User {i % 3} <u{i % 3}@x.org>\n"
        f"Subject: {'Re: ' if i % 4 else ''}Topic {i // 4}\nDate: {1 + i // 4:02d} Mar 2024 {8 + i % 9}:15:00 +0000\n"
        f"Message-ID: <m{i}@x.org>\n\n{sentence(i)}\n\n"
        for i in range(count)
    )
    chat = "".join(
        f"{1 + i // 3:02d}.03.2024, {8 + i % 9}:30 - User {i % 3}: {sentence(1000 + i)}\n" for i in range(count)
    )
    (root / "conversations").mkdir(parents=True, exist_ok=True)
    (root / "conversations" / "box.mbox").write_text(mail, encoding="utf-8")
    (root / "conversations" / "team.txt").write_text(chat, encoding="utf-8")
    for name in ("box.mbox", "team.txt"):
        os.utime(root / "conversations" / name, (1_700_000_000, 1_700_000_000))


def index_cmd(corpus: Path) -> list[str]:
    return [sys.executable, "-m", "cli.index_cli", "--dir", str(corpus), "--space", "docs", "--prune", "--json"]


def env_for(store: Path) -> dict[str, str]:
    return {**os.environ, "QDRANT_PATH": str(store), "HF_HUB_OFFLINE": "1", "LOG_FORMAT": "text",
            "SERVICE_URL": "http://127.0.0.1:9"}  # fmt: skip  # no service: always the store itself


def run_to_end(corpus: Path, store: Path) -> dict[str, Any]:
    done = subprocess.run(index_cmd(corpus), env=env_for(store), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout))


def snapshot(store_path: Path) -> tuple[dict[str, str], dict[str, tuple[Any, ...]]]:
    """{chunk id: payload hash (less indexed_at)}, {document id: record}; checks completeness on the way."""

    async def read() -> tuple[dict[str, str], dict[str, tuple[Any, ...]]]:
        store = VectorStore(path=store_path)
        try:
            ids = await store.chunk_ids("docs")
            chunks = await store.read_chunks("docs", ids)
            payloads = {
                c.id: hashlib.sha256(
                    json.dumps({k: v for k, v in c.payload.items() if k != "indexed_at"}, sort_keys=True).encode()
                ).hexdigest()
                for c in chunks
            }
            tagged: dict[tuple[str, str], int] = {}  # (document, version) -> chunks tagged with it
            for c in chunks:
                tags = c.payload["version"]
                for tag in tags if isinstance(tags, list) else [tags]:
                    key = (c.payload["document_id"], tag)
                    tagged[key] = tagged.get(key, 0) + 1
            docs = {}
            for d in await store.list_documents("docs"):
                docs[d.id] = (d.path, d.version, d.chunk_count, d.size, d.content_sha256, tuple(d.garbage),
                              d.writing, d.stale)  # fmt: skip
                if d.version:  # a listed version is complete: never half-old half-new
                    have = tagged.get((d.id, d.version), 0)
                    assert have == d.chunk_count, f"{d.path}: {have} of {d.chunk_count} chunks of {d.version[:8]}"
            return payloads, docs
        finally:
            store.close()

    return asyncio.run(read())


@pytest.mark.slow
def test_index_cli_killed_20_times_ends_identical_to_an_uninterrupted_run(tmp_path: Path) -> None:
    corpus, crashed, fresh = tmp_path / "corpus", tmp_path / "crashed", tmp_path / "fresh"
    write_corpus(corpus, 0)
    started = time.monotonic()
    run_to_end(corpus, crashed)
    full_run_s = time.monotonic() - started
    rng = random.Random(20261122)
    kill_points = []
    for kill in range(KILLS):
        write_corpus(corpus, 1 + kill % 3)
        # A run after a kill indexes two thirds of the files (about 0.65 of a full run): kill points over 0.7
        # of a full run land in most runs, at every stage of them, instead of after about half of them.
        delay = rng.uniform(0.3, 0.7 * full_run_s)
        proc = subprocess.Popen(index_cmd(corpus), env=env_for(crashed), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            proc.wait(timeout=delay)
            kill_points.append(f"{delay:.1f}s (finished first)")
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kill_points.append(f"{delay:.1f}s")
        snapshot(crashed)  # after every kill: the store opens, and every listed document is complete
    log.info("kill points (s after start; a full run took %.1f s): %s", full_run_s, ", ".join(kill_points))
    final = 1 + KILLS % 3
    write_corpus(corpus, final)
    summary = run_to_end(corpus, crashed)
    assert summary["files"]["failed"] == 0
    run_to_end(corpus, fresh)

    crashed_chunks, crashed_docs = snapshot(crashed)
    fresh_chunks, fresh_docs = snapshot(fresh)
    assert crashed_docs == fresh_docs
    assert all(record[-3:] == ((), None, False) for record in crashed_docs.values())  # no journal entries left
    assert set(crashed_chunks) == set(fresh_chunks), "extra or missing chunks after the crashes"
    assert crashed_chunks == fresh_chunks  # same payloads, chunk for chunk
    assert sum(1 for p in kill_points if "finished" not in p) >= KILLS // 2, kill_points
    again = run_to_end(corpus, crashed)
    assert again["chunks_written"] == 0  # and the re-run after that has nothing left to do
