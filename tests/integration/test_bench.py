"""cli.bench against real servers: llama.cpp (OpenAI-compatible), our service, and the Ollama stand-in."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.config import Settings
from backend.main import create_app
from cli import bench
from cli.benchkit.clients import Client, Target
from tests.conftest import LlamaServer
from tests.integration.test_eval_harness import SQUAD
from tests.servers import ThreadedServer, free_port
from tests.standins.ollama import StandinServer


@pytest.fixture
def questions(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(SQUAD))
    return path


@pytest.fixture
def service(settings: Settings) -> Iterator[str]:
    server = ThreadedServer(create_app(settings), free_port())
    files = [("files", (f"p{i}.txt", p["context"].encode())) for i, p in enumerate(SQUAD["data"][0]["paragraphs"])]
    resp = httpx.post(f"{server.base_url}/documents", data={"space_id": "demo"}, files=files, timeout=120)
    assert resp.status_code == 200, resp.text
    yield server.base_url
    server.stop()


@pytest.fixture
def ollama() -> Iterator[str]:
    server = StandinServer(free_port())
    yield server.base_url
    server.stop()


def run_bench(tmp_path: Path, *args: str) -> tuple[int, list[dict[str, Any]]]:
    out = tmp_path / "out"
    code = bench.main([*args, "--out-dir", str(out), "--requests", "4", "--warmup", "1", "--max-tokens", "16"])
    results = json.loads((out / "bench.json").read_text()) if (out / "bench.json").exists() else []
    return code, results


def test_closed_and_open_loop_against_llama_cpp_and_the_service(
    tmp_path: Path, questions: Path, llm_server: LlamaServer, service: str, ollama: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code, results = run_bench(
        tmp_path, "--target", f"llama=openai:{llm_server.base_url}", "--target", f"rag=service:{service}",
        "--target", f"ollama-standin=ollama:{ollama}", "--questions", str(questions),
        "--concurrency", "1,2", "--rate", "4",
    )  # fmt: skip
    assert code == 0
    assert [(r["target"], r["load"]) for r in results] == [
        (t, load) for t in ("llama", "rag", "ollama-standin") for load in ("concurrency 1", "concurrency 2", "4 req/s")
    ]
    for r in results:
        s = r["stats"]
        assert (s["requests"], s["completed"], s["errors"]) == (4, 4, 0), r
        assert 0 < s["ttft_ms"]["p50"] <= s["e2e_ms"]["p50"] and s["e2e_ms"]["p50"] <= s["e2e_ms"]["p99"]
        assert s["output_tokens"] >= 4 and s["output_tokens_per_s"] > 0 and s["request_throughput"] > 0
        assert s["quality"]["graded"] == 4 and 0.0 <= s["quality"]["f1"] <= 1.0
    assert results[0]["model"] == "smollm2-135m-instruct"  # the first served model, asked for
    out = capsys.readouterr()
    assert "| llama | concurrency 2 | 4 / 4 |" in out.out and "rag, 4 req/s: 4/4 done" in out.err
    assert (tmp_path / "out" / "bench-closed.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "bench-open.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "bench.md").read_text().startswith("| target | load |")


def test_a_dead_target_is_reported_not_crashed(tmp_path: Path, questions: Path, capsys: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    code, _ = run_bench(tmp_path, "--target", f"x=openai:{dead}/v1", "--questions", str(questions))
    assert code == 2 and "target x (" in capsys.readouterr().err
    code, results = run_bench(tmp_path, "--target", f"x=service:{dead}", "--questions", str(questions),
                              "--concurrency", "2")  # fmt: skip
    assert code == 1 and results[0]["stats"]["errors"] == 4 and results[0]["stats"]["completed"] == 0
    assert "every request failed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "vllm:http://x"], "expected NAME=KIND[/MODEL]:URL"),
        (["--target", "a=grpc:http://x"], "KIND one of service, vllm, openai, ollama"),
        (["--target", "a=openai:http://x", "--target", "a=openai:http://y"], "two targets share a name"),
        (["--target", "a=openai:http://x", "--concurrency", "0"], "every value must be above 0"),
        (["--target", "a=openai:http://x", "--rate", "fast"], "expected comma-separated numbers"),
    ],
)
def test_usage_errors_name_the_fix(tmp_path: Path, questions: Path, args: list[str], message: str, capsys: Any) -> None:
    assert bench.main([*args, "--questions", str(questions), "--out-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_raw_servers_get_the_services_repetition_penalty_in_their_own_field(tmp_path: Path, questions: Path) -> None:
    # Servers' own defaults differ (llama.cpp and Ollama 1.1, vLLM the model's): the A/B sends one value.
    server = StandinServer(free_port())
    try:
        args = ["--target", f"o=ollama:{server.base_url}", "--questions", str(questions), "--concurrency", "1",
                "--no-plots"]  # fmt: skip
        assert run_bench(tmp_path, *args)[0] == 0
        sent = [r["body"]["options"] for r in server.requests if r["path"] == "/api/chat"]
        assert sent and all(o["repeat_penalty"] == 1.0 for o in sent)
        assert run_bench(tmp_path, *args, "--repeat-penalty", "server")[0] == 0
        later = [r["body"]["options"] for r in server.requests if r["path"] == "/api/chat"][len(sent) :]
        assert later and not any("repeat_penalty" in o for o in later)
    finally:
        server.stop()
    with pytest.raises(SystemExit):
        bench.parse_args(["--target", "o=ollama:http://x", "--questions", "q", "--repeat-penalty", "0"])
    vllm = Client(httpx.AsyncClient(), Target("v", "vllm", "http://x/v1"), 16)
    assert vllm.llm is not None and vllm.llm.backend == "vllm"  # repetition_penalty, vLLM's name


def test_a_text_file_of_questions_needs_no_gold(tmp_path: Path, llm_server: LlamaServer) -> None:
    plain = tmp_path / "q.txt"
    plain.write_text("What is a pump?\n\nName a colour.\n")
    code, results = run_bench(tmp_path, "--target", f"llama=openai:{llm_server.base_url}", "--questions", str(plain),
                              "--concurrency", "1", "--no-plots")  # fmt: skip
    assert code == 0 and results[0]["stats"]["completed"] == 4 and results[0]["stats"]["quality"]["f1"] is None
    assert not list((tmp_path / "out").glob("*.png"))


def test_two_named_models_of_one_service_are_benchmarked_side_by_side(
    tmp_path: Path, questions: Path, make_settings: Any, llm_server: LlamaServer
) -> None:
    models = [{"name": "fast", "base_url": llm_server.base_url, "role": "default"},
              {"name": "large", "base_url": llm_server.base_url, "role": "large"}]  # fmt: skip
    server = ThreadedServer(create_app(make_settings(llm_models=models)), free_port())
    try:
        files = [("files", (f"p{i}.txt", p["context"].encode())) for i, p in enumerate(SQUAD["data"][0]["paragraphs"])]
        assert httpx.post(f"{server.base_url}/documents", data={"space_id": "demo"}, files=files,
                          timeout=120).status_code == 200  # fmt: skip
        code, results = run_bench(tmp_path, "--target", f"fast=service/fast:{server.base_url}", "--target",
                                  f"large=service/large:{server.base_url}", "--questions", str(questions),
                                  "--concurrency", "1")  # fmt: skip
        metrics = httpx.get(f"{server.base_url}/metrics").text
    finally:
        server.stop()
    assert code == 0 and [(r["target"], r["stats"]["completed"]) for r in results] == [("fast", 4), ("large", 4)]
    answered = dict(re.findall(r'rag_model_answers_total{model="(\w+)"} ([0-9.]+)', metrics))
    assert {k: float(v) >= 4 for k, v in answered.items()} == {"fast": True, "large": True}  # each by its model
