"""`cli.plan --users`: LLM and API replicas for N concurrent users, from a real cli.bench run or estimated."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from backend.services.gpu_plan.capacity import CapacityInputs, OperatingPoint, plan_capacity
from cli import bench
from tests.conftest import LlamaServer, run_cli


def test_the_formula_on_points_worked_by_hand() -> None:
    points = [OperatingPoint(8, 2.0, 4.0, 6.0), OperatingPoint(32, 4.0, 8.0, 16.0)]
    plan = plan_capacity(points, CapacityInputs(users=100, think_s=36, latency_target_s=15))
    assert plan.point.concurrency == 8  # 32 users would break the 15 s target (p95 16 s)
    assert plan.arrival_rps == pytest.approx(2.5)  # 100 / (36 + 4)
    assert plan.in_flight == pytest.approx(10.0)  # 2.5 * 4
    assert (plan.llm_replicas_needed, plan.llm_replicas) == (2, 3)  # ceil(2.5 / 2.0), plus one spare
    assert plan.api_replicas == 2  # 0.1 cores busy: two for availability, not for load
    slow = plan_capacity(points, CapacityInputs(users=10, latency_target_s=3))
    assert slow.point.concurrency == 8 and "no load level meets the 3 s target" in slow.notes[0]


def test_from_a_real_bench_run(tmp_path: Path, llm_server: LlamaServer) -> None:
    questions = tmp_path / "q.txt"
    questions.write_text("What is a pump?\nName a colour.\nWhat is water?\n")
    out = tmp_path / "bench"
    code = bench.main(["--target", f"llama=openai:{llm_server.base_url}", "--questions", str(questions),
                       "--concurrency", "1,2", "--requests", "4", "--max-tokens", "16", "--no-plots",
                       "--out-dir", str(out)])  # fmt: skip
    assert code == 0
    measured = json.loads((out / "bench.json").read_text())

    done = run_cli("cli.plan", "--users", "3,30", "--bench", str(out / "bench.json"), "--think-s", "10",
                   "--latency-target-s", "60", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    levels = {int(r["load_value"]): r["stats"] for r in measured}
    best = max(levels, key=lambda c: levels[c]["request_throughput"])  # both levels meet a 60 s target
    x, r50 = levels[best]["request_throughput"], levels[best]["e2e_ms"]["p50"] / 1000
    for plan, users in zip(doc["plans"], (3, 30), strict=True):
        arrival = users / (10 + r50)
        assert plan["operating_point"]["concurrency"] == best
        assert plan["arrival_rps"] == pytest.approx(arrival, abs=1e-3)
        need = max(1, math.ceil(arrival / x - 1e-9), math.ceil(arrival * r50 / best - 1e-9))
        assert (plan["llm_replicas_needed"], plan["llm_replicas"]) == (need, need + 1)

    table = run_cli("cli.plan", "--users", "30", "--bench", str(out / "bench.json"), "--think-s", "10")
    assert table.returncode == 0 and "| users | think s |" in table.stdout and "measured:" in table.stdout


def test_the_worked_example_of_the_docs() -> None:
    """docs/deployment.md, "Capacity": Qwen3-30B-A3B FP8 on RTX PRO 6000 cards, estimated."""
    done = run_cli("cli.plan", "qwen3-30b-a3b@fp8", "--max-model-len", "32768", "--users", "50,500", "--json")
    assert done.returncode == 0, done.stderr
    plans = {p["users"]: p for p in json.loads(done.stdout)["plans"]}
    assert (plans[50]["llm_replicas_needed"], plans[50]["llm_replicas"], plans[50]["api_replicas"]) == (1, 2, 2)
    assert (plans[500]["llm_replicas_needed"], plans[500]["llm_replicas"], plans[500]["api_replicas"]) == (5, 6, 2)
    at_once = run_cli("cli.plan", "qwen3-30b-a3b@fp8", "--max-model-len", "32768", "--users", "500", "--think-s", "0",
                      "--json")  # fmt: skip
    plan = json.loads(at_once.stdout)["plans"][0]
    assert plan["llm_replicas_needed"] == 16 and "think time 0" in plan["notes"][0]  # 500 in flight / 32 each


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "50"], "--users needs --bench FILE (measured) or a model (estimated)"),
        (["--users", "fifty", "qwen3-30b-a3b@fp8"], "--users takes whole numbers"),
        (["--users", "50", "--bench", "/nonexistent.json"], "cannot read /nonexistent.json"),
        (["--users", "50", "--bench", "{not_bench}"], "not a cli.bench bench.json"),
    ],
)
def test_bad_capacity_input_says_what_to_fix(args: list[str], message: str, tmp_path: Path) -> None:
    not_bench = tmp_path / "other.json"
    not_bench.write_text('[{"name": "something else"}]')
    done = run_cli("cli.plan", *[a.replace("{not_bench}", str(not_bench)) for a in args])
    assert done.returncode == 2 and message in done.stderr
