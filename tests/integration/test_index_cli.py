"""index_cli end to end: re-runs write nothing, edits and deletions are followed, exit codes, hand-off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.adapters.edge_engine import EdgeEngine
from cli import index_cli
from tests.conftest import LlamaServer, run_cli
from tests.files import make_pdf
from tests.servers import free_port

INDEX_KEY = "test-index-key-0123456789"
AUTH = {"Authorization": f"Bearer {INDEX_KEY}"}


@pytest.fixture
def env(tmp_path: Path, llm_server: LlamaServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "QDRANT_PATH": str(tmp_path / "qdrant"),
        "LLM_BASE_URL": llm_server.base_url,
        "PORT": str(free_port()),
        "MAX_UPLOAD_MB": "0.05",  # small, so the hand-off test can exceed it
        "LOG_FORMAT": "text",
        # The service (when one runs) requires this key; index_cli sends it from RAG_API_KEY.
        "API_KEYS": f"{INDEX_KEY}=read:*,write:*,admin",
        "RAG_API_KEY": INDEX_KEY,
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SERVICE_URL", raising=False)
    return values


def index(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = index_cli.main([*args, "--json"])
    out = capsys.readouterr().out.strip()
    return code, json.loads(out) if out else {}


def test_second_run_writes_nothing(env: dict[str, str], corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, first = index(capsys, "--dir", str(corpus), "--space", "demo")
    assert code == 0
    assert first["files"] == {"new": 10, "changed": 0, "unchanged": 0, "failed": 0, "deleted": 0}
    assert first["chunks_written"] >= 10 and first["chunks_per_second"] > 0
    code, second = index(capsys, "--dir", str(corpus), "--space", "demo")
    assert code == 0
    assert second["files"]["unchanged"] == 10 and second["chunks_written"] == 0


def test_file_dates_reach_the_index(env: dict[str, str], corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = corpus / "guide.md"
    os.utime(old, (1_600_000_000, 1_600_000_000))
    assert index(capsys, "--dir", str(corpus), "--space", "demo")[0] == 0
    client = EdgeEngine(Path(env["QDRANT_PATH"]))
    points, _ = client.scroll("rag-chunks-demo", limit=1000, with_payload=["path", "modified_at"])
    client.close()
    dates = {p.payload["path"]: p.payload["modified_at"] for p in points}  # type: ignore[index]
    assert dates["guide.md"] == 1_600_000_000 and all(
        d and d > 1_600_000_000 for k, d in dates.items() if k != "guide.md"
    )


def test_edits_deletions_prune_and_dry_run(
    env: dict[str, str], corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index(capsys, "--dir", str(corpus), "--space", "demo")
    (corpus / "guide.md").write_text("# Reactor guide\n\nThe reactor now runs at 50 kelvin.\n")
    (corpus / "notes" / "plain.txt").unlink()
    (corpus / "added.txt").write_text("A new file about otters.\n")

    code, dry = index(capsys, "--dir", str(corpus), "--space", "demo", "--prune", "--dry-run")
    assert code == 0 and dry["dry_run"]
    assert dry["files"] == {"new": 1, "changed": 1, "unchanged": 8, "failed": 0, "deleted": 1}
    code, again = index(capsys, "--dir", str(corpus), "--space", "demo", "--prune", "--dry-run")
    assert again["files"] == dry["files"]  # the dry run wrote nothing

    code, real = index(capsys, "--dir", str(corpus), "--space", "demo")
    assert real["files"] == {"new": 1, "changed": 1, "unchanged": 8, "failed": 0, "deleted": 0}
    code, pruned = index(capsys, "--dir", str(corpus), "--space", "demo", "--prune")
    assert pruned["files"] == {"new": 0, "changed": 0, "unchanged": 10, "failed": 0, "deleted": 1}
    code, final = index(capsys, "--dir", str(corpus), "--space", "demo", "--prune", "--dry-run")
    assert final["files"]["deleted"] == 0 and final["files"]["unchanged"] == 10


def test_broken_files_are_reported_and_strict_fails(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.txt").write_text("Good content.")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    (folder / "scan.pdf").write_bytes(make_pdf([]))
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    (folder / "chat.txt").write_text("15.03.2024, 10:00 - Анна: первое\n31.02.2024, 10:05 - Пётр: второе\n")
    code, summary = index(capsys, "--dir", str(folder), "--space", "mixed")
    assert code == 0
    assert summary["files"]["new"] == 2 and summary["files"]["failed"] == 2
    (partly,) = summary["warnings"]  # indexed, with the message whose date is impossible reported
    assert partly["path"] == "chat.txt" and "31.02.2024 10:05 does not parse" in partly["warnings"][0]
    assert "PARTLY chat.txt: line 2: the date 31.02.2024 10:05 does not parse" in index_cli.render(
        index_cli.Summary(**{**summary, "warnings": summary["warnings"]})
    )
    assert summary["skipped_unsupported"] == 1
    reasons = {f["path"]: f["reason"] for f in summary["failed"]}
    assert "broken PDF" in reasons["broken.pdf"] and "no extractable text" in reasons["scan.pdf"]
    code, _ = index(capsys, "--dir", str(folder), "--space", "mixed", "--strict")
    assert code == 1


def test_nothing_indexable_exits_non_zero(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    (only_broken / "a.docx").write_bytes(b"not a docx")
    code, summary = index(capsys, "--dir", str(only_broken), "--space", "b")
    assert code == 1 and summary["files"]["failed"] == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _ = index(capsys, "--dir", str(empty), "--space", "b")
    assert code == 1


def test_usage_errors_exit_2(env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert index_cli.main(["--dir", str(tmp_path), "--space", "Not Valid"]) == 2
    assert "invalid --space" in capsys.readouterr().err
    assert index_cli.main(["--dir", str(tmp_path / "missing"), "--space", "ok"]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.fixture
def running_service(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """The real service in its own process, holding the embedded store."""
    log = (tmp_path / "service.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "backend.main:app_from_env", "--port", env["PORT"]],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )
    base = f"http://127.0.0.1:{env['PORT']}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError(f"service did not start: {(tmp_path / 'service.log').read_text()[-2000:]}")
    yield base
    proc.terminate()
    proc.wait(timeout=15)
    log.close()


def test_index_cli_hands_work_to_the_running_service(running_service: str, env: dict[str, str], corpus: Path) -> None:
    (corpus / "huge.txt").write_text("Too big to upload. " * 6000)  # > MAX_UPLOAD_MB of the service
    (corpus / "chat.txt").write_text("15.03.2024, 10:00 - Анна: первое\n31.02.2024, 10:05 - Пётр: второе\n")
    first = run_cli("cli.index_cli", "--dir", str(corpus), "--space", "demo", "--json", env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["target"] == f"service {running_service}"
    assert summary["files"]["new"] == 11 and summary["files"]["failed"] == 1
    assert summary["warnings"][0]["path"] == "chat.txt"  # the service's per-message warnings come back
    assert summary["failed"][0]["path"] == "huge.txt" and "MAX_UPLOAD_MB" in summary["failed"][0]["reason"]
    (corpus / "huge.txt").unlink()
    assert "already accessed" not in first.stderr

    second = run_cli("cli.index_cli", "--dir", str(corpus), "--space", "demo", "--json", env=env)
    assert json.loads(second.stdout)["chunks_written"] == 0

    (corpus / "guide.md").unlink()
    pruned = run_cli("cli.index_cli", "--dir", str(corpus), "--space", "demo", "--prune", "--json", env=env)
    assert json.loads(pruned.stdout)["files"]["deleted"] == 1

    answer = httpx.post(
        f"{running_service}/ask",
        json={"q": "What is the maximum pressure of the Glimmer pump?", "space_id": "demo"},
        headers=AUTH,
        timeout=60,
    )
    assert answer.status_code == 200
    assert any("9 bar" in s["text"] for s in answer.json()["sources"])
    # The files' dates travelled with the upload: date filters see them.
    for flt, hits in (
        ({"modified_after": "2001-01-01T00:00:00Z"}, True),
        ({"modified_before": "2001-01-01T00:00:00Z"}, False),
    ):
        found = httpx.post(
            f"{running_service}/search",
            json={"q": "pump", "space_id": "demo", "filters": flt},
            headers=AUTH,
            timeout=60,
        )
        assert found.status_code == 200 and bool(found.json()["sources"]) is hits, found.text


def test_locked_store_without_a_service_is_a_clear_error(env: dict[str, str], corpus: Path) -> None:
    holder = EdgeEngine(Path(env["QDRANT_PATH"]))  # another holder of the folder, no service on PORT
    try:
        result = run_cli("cli.index_cli", "--dir", str(corpus), "--space", "demo", env=env)
    finally:
        holder.close()
    assert result.returncode == 2
    assert "open in another process" in result.stderr and "--service" in result.stderr


def test_an_unreadable_file_is_reported_and_never_pruned(
    env: dict[str, str], corpus: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    index(capsys, "--dir", str(corpus), "--space", "demo")
    real = index_cli.sha256_file

    def locked(path: Path) -> str:  # root reads through chmod 000, so the denial is injected
        if path.name == "guide.md":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(index_cli, "sha256_file", locked)
    code, summary = index(capsys, "--dir", str(corpus), "--space", "demo", "--prune")
    assert code == 0
    assert summary["files"] == {"new": 0, "changed": 0, "unchanged": 9, "failed": 1, "deleted": 0}
    assert summary["failed"] == [{"path": "guide.md", "reason": "cannot read the file: Permission denied"}]
    monkeypatch.setattr(index_cli, "sha256_file", real)
    code, again = index(capsys, "--dir", str(corpus), "--space", "demo")
    assert again["files"]["unchanged"] == 10  # guide.md was kept in the space all along


def test_index_cli_through_the_service_says_when_its_key_is_refused(
    running_service: str, env: dict[str, str], corpus: Path
) -> None:
    done = run_cli("cli.index_cli", "--dir", str(corpus), "--space", "demo", "--json", env={**env, "RAG_API_KEY": "x"})
    assert done.returncode != 0 and "API key is not valid" in done.stderr
