"""A disk that fills up while index_cli writes the embedded store, on a small ext4 disk mounted for the test.

Qdrant Edge writes through memory-mapped files: on a full disk the write kills the process (SIGBUS, no
message). So the store refuses writes while less than QDRANT_MIN_FREE_MB is free, and the run stops with
a message naming the disk. Either way, the index stays consistent (every listed document complete) and,
once space is freed, the next run completes it: the store ends identical to an uninterrupted run.

The disk is an ext4 image on a loop device, like a user's disk (sparse files stay sparse; tmpfs would
allocate Edge's 32 MB memory-mapped files whole). Mounting needs root and a loop device, which CI has;
elsewhere these tests are skipped, saying why.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_crash_safety import ROOT, env_for, index_cmd, run_to_end, snapshot, write_corpus

log = logging.getLogger(__name__)
DISK_MB = 64
MARGIN_MB = 4  # QDRANT_MIN_FREE_MB in the first test


@pytest.fixture(scope="module")
def corpus_and_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """212 chunks (5.2 MB of store on ext4 with their sentence vectors), and the store an uninterrupted run makes
    of them."""
    root = tmp_path_factory.mktemp("full-disk")
    write_corpus(root / "corpus", 1)
    run_to_end(root / "corpus", root / "reference")
    return root / "corpus", root / "reference"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    image, mount = tmp_path / "disk.ext4", tmp_path / "disk"
    mount.mkdir()
    with image.open("wb") as f:
        f.truncate(DISK_MB * 2**20)
    for cmd in (["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], ["mount", "-o", "loop", str(image), str(mount)]):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError as exc:
            pytest.skip(f"cannot make a small disk here: {exc}")
        if done.returncode != 0:
            pytest.skip(f"cannot make a small disk here (needs root and a loop device): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path, leave_mb: float) -> Path:
    """A file that takes all but `leave_mb` of the disk."""
    filler = mount / "filler"
    size = shutil.disk_usage(mount).free - int(leave_mb * 2**20)
    assert size > 0, f"the disk has only {shutil.disk_usage(mount).free / 2**20:.0f} MB free"
    with filler.open("wb") as f:
        os.posix_fallocate(f.fileno(), 0, size)
    return filler


def index(corpus: Path, store: Path, margin_mb: int) -> subprocess.CompletedProcess[str]:
    env = {**env_for(store), "QDRANT_MIN_FREE_MB": str(margin_mb)}
    return subprocess.run(index_cmd(corpus), env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def complete(corpus: Path, store: Path) -> None:
    done = index(corpus, store, MARGIN_MB)  # the disk is smaller than the default margin
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_a_nearly_full_disk_stops_the_run_with_a_message_and_the_next_run_completes_it(
    small_disk: Path, corpus_and_reference: tuple[Path, Path]
) -> None:
    corpus, reference = corpus_and_reference
    store = small_disk / "qdrant"
    filler = fill(small_disk, MARGIN_MB + 2.5)  # room for about half the run above the margin

    cut = index(corpus, store, MARGIN_MB)
    assert cut.returncode == 2, (cut.returncode, cut.stdout[-1000:], cut.stderr[-2000:])
    message = cut.stderr.strip().splitlines()[-1]
    assert f"StoreFullError: the disk holding the embedded store {store}" in message, message
    assert f"QDRANT_MIN_FREE_MB={MARGIN_MB}" in message and "run the same command again" in message, message

    filler.unlink()  # opening the store replays its log, which needs room: read it only now
    chunks, docs = snapshot(store)  # every document it lists as indexed is complete
    indexed = sum(1 for d in docs.values() if d[1])
    assert chunks and indexed < len(list(corpus.rglob("*.*"))), f"{len(chunks)} chunks: not cut off mid-run"
    complete(corpus, store)
    assert snapshot(store) == snapshot(reference)


@pytest.mark.slow
def test_without_the_margin_a_full_disk_kills_the_run_and_the_next_run_still_completes_it(
    small_disk: Path, corpus_and_reference: tuple[Path, Path]
) -> None:
    corpus, reference = corpus_and_reference
    store = small_disk / "qdrant"
    filler = fill(small_disk, 0.6)

    crashed = index(corpus, store, 0)
    assert crashed.returncode != 0, crashed.stdout[-1000:]  # SIGBUS, or an error if the log write failed first
    log.info("without the margin, index_cli ended with %d: %s", crashed.returncode, crashed.stderr[-300:])
    stuck = index(corpus, store, 0)  # the disk is still full, and opening the store replays its log
    assert stuck.returncode == -signal.SIGBUS or "the disk is full" in stuck.stderr, stuck.stderr[-1000:]
    assert "--recreate" not in stuck.stderr, f"a full disk is not a damaged shard: {stuck.stderr[-1000:]}"
    log.info("on the full disk, index_cli ended with %d: %s", stuck.returncode, stuck.stderr[-300:])

    filler.unlink()
    complete(corpus, store)
    assert snapshot(store) == snapshot(reference)
