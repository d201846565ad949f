"""`rag`, the one entry point of the command-line tools, run as users run it: the installed console
script in a subprocess, against the real store, embedder and (for `rag ask`) the served app."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.config import Settings
from backend.main import create_app
from tests.servers import ThreadedServer, free_port

RAG = shutil.which("rag", path=str(Path(sys.executable).parent))
ROOT = Path(__file__).resolve().parents[2]
ANSI = "\x1b["


def rag(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert RAG, "the `rag` console script is not installed (pip install -e .)"
    base = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    return subprocess.run([RAG, *args], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**base, **(env or {})})  # fmt: skip


def test_help_lists_every_command_with_an_example() -> None:
    done = rag("--help")
    assert done.returncode == 0
    for command in ("index", "ask", "plan", "eval", "bench", "migrate"):
        assert f"  {command} " in done.stdout and f"e.g. rag {command}" in done.stdout
    assert rag().returncode == 2  # no command: usage, and a usage error for scripts


def test_each_command_has_its_own_help_under_its_rag_name() -> None:
    for command in ("index", "ask", "plan", "eval", "bench", "migrate"):
        done = rag(command, "--help")
        assert done.returncode == 0 and done.stdout.startswith(f"usage: rag {command} "), done.stdout[:200]


def test_a_mistyped_command_gets_a_suggestion() -> None:
    done = rag("plam", "qwen3-8b")
    assert done.returncode == 2 and "did you mean `rag plan`?" in done.stderr


def test_output_is_plain_in_a_pipe_and_coloured_when_asked() -> None:
    plain = rag("plan", "qwen3-8b")
    assert plain.returncode == 0 and "FITS" in plain.stdout and ANSI not in plain.stdout
    coloured = rag("plan", "qwen3-8b", env={"FORCE_COLOR": "1"})
    assert ANSI in coloured.stdout and coloured.stdout.count("FITS") == plain.stdout.count("FITS")
    data = json.loads(rag("plan", "qwen3-8b", "--json", env={"FORCE_COLOR": "1"}).stdout)  # JSON never coloured
    assert data["fits"] is True


@pytest.fixture
def served(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`rag index` into a store, then the app serving that store; yields its URL and the CLI's environment."""
    corpus = tmp_path / "docs"
    (corpus / "pumps").mkdir(parents=True)
    (corpus / "pumps" / "glimmer.md").write_text("# Glimmer pump\n\nThe Glimmer pump runs at 9 bar at most.\n")
    (corpus / "notes.txt").write_text("Котельная на Садовой переведена на газ в марте.\n")
    (corpus / "chats").mkdir()
    (corpus / "chats" / "team.txt").write_text(
        "14.03.2024, 09:00 - Анна Смирнова: Котельную проверили, всё в порядке.\n"
        "15.03.2024, 10:02 - Пётр Петров: Предлагаю перенести проверку насоса на понедельник.\n"
    )
    env = {"QDRANT_PATH": str(tmp_path / "qdrant"), "HF_HUB_OFFLINE": "1"}
    indexed = rag("index", "--dir", str(corpus), "--space", "docs", "--json", env=env)
    assert indexed.returncode == 0, indexed.stderr
    assert json.loads(indexed.stdout)["files"]["new"] == 3
    again = rag("index", "--dir", str(corpus), "--space", "docs", env=env)
    assert again.returncode == 0 and "0 new, 0 changed, 3 unchanged" in again.stdout
    server = ThreadedServer(create_app(make_settings(qdrant_path=tmp_path / "qdrant", llm_max_tokens=32)), free_port())
    try:
        yield server.base_url, env
    finally:
        server.stop()


def test_rag_ask_streams_an_answer_then_its_sources_and_has_json(served: tuple[str, dict[str, str]]) -> None:
    url, env = served
    done = rag("ask", "What pressure does the Glimmer pump run at?", "--space", "docs", "--url", url, env=env)
    assert done.returncode == 0, done.stderr
    answer, _, rest = done.stdout.partition("Sources (* cited)")
    assert answer.strip() and "pumps/glimmer.md" in rest and "answered by default: openai" in rest
    as_json = rag("ask", "What pressure does the Glimmer pump run at?", "--space", "docs", "--url", url, "--json")
    assert json.loads(as_json.stdout)["sources"][0]["path"] == "pumps/glimmer.md"


def test_rag_ask_filters_a_chat_by_participant_and_shows_who_wrote(served: tuple[str, dict[str, str]]) -> None:
    url, env = served
    args = ("ask", "Что предложили насчёт проверки?", "--space", "docs", "--url", url, "--participant", "Петров")
    as_json = rag(*args, "--after", "2024-03-15T00:00:00+00:00", "--json", env=env)
    sources = json.loads(as_json.stdout)["sources"]
    assert sources and all("Пётр Петров" in s["conversation"]["participants"] for s in sources), sources
    shown = rag(*args, env=env)
    assert shown.returncode == 0 and "Пётр Петров, 2024-03-15 10:02 UTC" in shown.stdout, shown.stdout
    nobody = rag(*args, "--before", "2020-01-01T00:00:00Z", "--json", env=env)
    assert json.loads(nobody.stdout)["sources"] == []


def test_rag_ask_shows_the_services_refusal(served: tuple[str, dict[str, str]]) -> None:
    url, _ = served
    done = rag("ask", "anything", "--space", "nope", "--url", url)
    assert done.returncode == 1 and "404" in done.stderr and "nope" in done.stderr
    unreachable = rag("ask", "anything", "--space", "docs", "--url", f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 1 and "cannot reach the service" in unreachable.stderr


def test_rag_summarize_reads_everything_selected_and_shows_what_it_cited(served: tuple[str, dict[str, str]]) -> None:
    url, env = served
    done = rag("summarize", "--space", "docs", "--all", "--style", "decisions", "--url", url, env=env)
    assert done.returncode == 0, done.stderr
    assert "read 4 of 4 chunks; LLM calls: 1" in done.stdout and "openai" in done.stdout, done.stdout  # a chat: 2 days
    as_json = json.loads(rag("summarize", "--space", "docs", "--document", "pumps/glimmer.md", "--url", url,
                             "--json", env=env).stdout)  # fmt: skip
    assert as_json["coverage"] == {"chunks_read": 1, "chunks_selected": 1} and as_json["cached"] is False
    again = rag("summarize", "--space", "docs", "--document", "pumps/glimmer.md", "--url", url, env=env)
    assert "stored earlier" in again.stdout, again.stdout
    chat = json.loads(rag("summarize", "--space", "docs", "--participant", "Петров", "--url", url, "--json").stdout)
    assert chat["coverage"]["chunks_selected"] == 1 and chat["language"] == "ru"
    missing = rag("summarize", "--space", "docs", "--document", "nope.md", "--url", url, env=env)
    assert missing.returncode == 1 and "404" in missing.stderr and "nope.md" in missing.stderr
    assert rag("summarize", "--space", "docs", "--url", url).returncode == 2  # nothing said to summarise
