"""cli.plan and /plan as users run them; --write-env through the real compose file, entrypoint and vLLM's parser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.config import Settings, load_settings
from backend.services.gpu_plan.catalogue import CATALOGUE
from tests.conftest import require_vllm_python, run_cli

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = Path(sys.executable).parent / "docker-compose"

# Parses server flags with vLLM's own argument parser and validation (what `vllm serve` runs first).
PARSE_WITH_VLLM = """
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser
args = make_arg_parser(FlexibleArgumentParser()).parse_args(sys.argv[1:])
validate_parsed_serve_args(args)
print(json.dumps({k: getattr(args, k) for k in ("model", "gpu_memory_utilization", "max_model_len", "max_num_seqs",
      "kv_cache_dtype", "quantization", "cpu_offload_gb", "tensor_parallel_size", "served_model_name")}))
"""


def test_cli_answers_two_qwen3_30b_in_fp8_on_96_gb_as_json() -> None:
    done = run_cli("cli.plan", "qwen3-30b-a3b@fp8", "qwen3-30b-a3b@fp8", "--max-model-len", "32768", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["fits"] and len(plan["models"]) == 2
    assert sum(m["gpu_memory_utilization"] for m in plan["models"]) < 1
    for m in plan["models"]:
        assert m["kv_cache"]["max_concurrency_at_max_model_len"] >= 1
        assert m["memory_gib"]["weights"] == pytest.approx(29.0, abs=0.5)


def test_cli_says_it_does_not_fit_and_lists_fixes() -> None:
    done = run_cli("cli.plan", "llama-3.1-70b", "--max-model-len", "32768")
    assert done.returncode == 3, done.stderr
    assert "DOES NOT FIT" in done.stdout and "Cheapest ways to make it fit:" in done.stdout
    assert "1. fp8 weights" in done.stdout


def test_cli_reads_a_config_json_and_refuses_bad_input_with_exit_2(tmp_path: Path) -> None:
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(CATALOGUE["qwen2.5-7b"].config))
    done = run_cli("cli.plan", str(model / "config.json"), "--gpu", "rtx-4090", "--max-model-len", "16384")
    assert done.returncode == 0, done.stderr
    assert "7.62B params" in done.stdout and "FITS" in done.stdout
    unknown = run_cli("cli.plan", "qwen9-1t")
    assert unknown.returncode == 2 and "neither a catalogue model" in unknown.stderr
    usage = run_cli("cli.plan")
    assert usage.returncode == 2 and "name a model" in usage.stderr
    listing = run_cli("cli.plan", "--list")
    assert listing.returncode == 0 and all(key in listing.stdout for key in CATALOGUE)


@pytest.mark.vllm
def test_write_env_feeds_compose_the_entrypoint_and_vllms_own_parser(tmp_path: Path) -> None:
    for name in ("docker-compose.vllm.yml", ".env.vllm"):
        shutil.copy(ROOT / name, tmp_path / name)
    env_file = tmp_path / ".env.vllm"
    done = run_cli("cli.plan", "qwen3-30b-a3b@fp8", "qwen3-30b-a3b@awq", "--max-model-len", "32768",
                   "--kv-cache-dtype", "fp8", "--write-env", str(env_file))  # fmt: skip
    assert done.returncode == 0, done.stderr
    second = tmp_path / ".env.vllm.qwen3-30b-a3b-2"
    assert f"wrote {second}" in done.stderr
    assert "HF_TOKEN=" in env_file.read_text() and "QDRANT_IMAGE=" in second.read_text()  # the rest is kept
    plan = json.loads(run_cli("cli.plan", "qwen3-30b-a3b@fp8", "qwen3-30b-a3b@awq", "--max-model-len", "32768",
                              "--kv-cache-dtype", "fp8", "--json").stdout)  # fmt: skip
    for index, path in enumerate((env_file, second)):
        config = subprocess.run(
            [str(COMPOSE), "-f", "docker-compose.vllm.yml", "--env-file", path.name, "config", "--format", "json"],
            cwd=tmp_path, capture_output=True, text=True, check=True,
        )  # fmt: skip
        services = json.loads(config.stdout)["services"]
        environment = services["vllm"]["environment"]
        expected = plan["models"][index]
        assert environment["VLLM_GPU_MEMORY_UTILIZATION"] == f"{expected['gpu_memory_utilization']:.2f}"
        assert environment["VLLM_KV_CACHE_DTYPE"] == "fp8"
        assert services["backend"]["environment"]["LLM_MODEL"] == "qwen3-30b-a3b"
        # The container's entrypoint turns those settings into flags; vLLM's own parser must accept them.
        argv_dump = tmp_path / "python3"
        argv_dump.write_text("#!/usr/bin/env python3\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
        argv_dump.chmod(0o755)
        env = {"PATH": os.environ["PATH"], "VLLM_PYTHON": str(argv_dump),
               **{k: str(v) for k, v in environment.items() if v is not None}}  # fmt: skip
        argv = json.loads(subprocess.run(["bash", str(ROOT / "docker/vllm-entrypoint.sh")], env=env,
                                         capture_output=True, text=True, check=True).stdout)  # fmt: skip
        parsed = subprocess.run([str(require_vllm_python()), "-c", PARSE_WITH_VLLM, *argv[2:]], capture_output=True,
                                text=True, env={**os.environ, "VLLM_TARGET_DEVICE": "cpu"})  # fmt: skip
        assert parsed.returncode == 0, parsed.stderr[-2000:]
        flags = json.loads(parsed.stdout.strip().splitlines()[-1])
        assert flags["gpu_memory_utilization"] == expected["gpu_memory_utilization"]
        assert flags["max_model_len"] == 32768 and flags["kv_cache_dtype"] == "fp8"
        assert flags["max_num_seqs"] == expected["recommended_max_num_seqs"]
        assert flags["model"] == expected["checkpoint"]


def test_write_env_refuses_when_it_does_not_fit_and_leaves_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env.vllm"
    env_file.write_text("VLLM_MODEL=mine\n")
    done = run_cli("cli.plan", "llama-3.1-70b", "--max-model-len", "32768", "--write-env", str(env_file))
    assert done.returncode == 3 and "re-run with one of the listed fixes" in done.stderr
    assert env_file.read_text() == "VLLM_MODEL=mine\n"


def test_plan_over_http(client: TestClient) -> None:
    got = client.get("/plan", params={"model": ["qwen3-30b-a3b@awq", "qwen3-30b-a3b@awq"], "max_model_len": 32768})
    assert got.status_code == 200 and got.json()["fits"]
    cli = json.loads(run_cli("cli.plan", "qwen3-30b-a3b@awq", "qwen3-30b-a3b@awq", "--max-model-len", "32768",
                             "--json").stdout)  # fmt: skip
    assert got.json()["models"] == cli["models"]  # the same answer from both doors
    inline = client.post("/plan", json={"model": [{"name": "mine", "config": CATALOGUE["qwen3-8b"].config,
                                                   "format": "fp8"}], "gpu": "l40s"})  # fmt: skip
    assert inline.status_code == 200 and inline.json()["models"][0]["format"] == "fp8"
    bad = client.get("/plan", params={"model": "qwen3-8b", "gpu": "tpu-v9"})
    assert bad.status_code == 422 and "unknown GPU 'tpu-v9'" in bad.json()["error"]["message"]
    no_paths = client.get("/plan", params={"model": str(ROOT / "pyproject.toml")})
    assert no_paths.status_code == 422 and "unknown model" in no_paths.json()["error"]["message"]
    assert client.get("/plan").status_code == 422
    catalogue = client.get("/plan/catalogue").json()
    assert {m["model"] for m in catalogue} == set(CATALOGUE)


@pytest.mark.vllm
def test_the_catalogues_reasoning_parsers_are_vllms() -> None:
    names = sorted({e.reasoning_parser for e in CATALOGUE.values() if e.reasoning_parser})
    check = "import sys\nfrom vllm.reasoning import ReasoningParserManager as M\n"
    check += "for name in sys.argv[1:]: M.get_reasoning_parser(name)"
    done = subprocess.run([str(require_vllm_python()), "-c", check, *names], capture_output=True, text=True,
                          env={**os.environ, "VLLM_TARGET_DEVICE": "cpu"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(("seqs", "mode"), [("8", "switching"), ("1", "co-resident")])
def test_a_planned_pair_runs_as_the_pair_profile_with_one_backend(tmp_path: Path, seqs: str, mode: str) -> None:
    for name in ("docker-compose.vllm.yml", ".env.vllm"):
        shutil.copy(ROOT / name, tmp_path / name)
    env_file = tmp_path / ".env.vllm"
    repos = ["Qwen/Qwen3-30B-A3B-Instruct-2507-FP8", "Qwen/Qwen3-30B-A3B-Thinking-2507-FP8"]
    args = ["qwen3-30b-a3b@fp8", "qwen3-30b-a3b@fp8", "--pair", "--max-model-len", "32768", "--seqs", seqs,
            "--repo", repos[0], "--repo", repos[1]]  # fmt: skip
    done = run_cli("cli.plan", *args, "--write-env", str(env_file))
    assert done.returncode == 0, done.stderr
    pair = json.loads(run_cli("cli.plan", *args, "--json").stdout)
    assert pair["mode"] == mode
    config = subprocess.run(
        [str(COMPOSE), "-f", "docker-compose.vllm.yml", "--env-file", ".env.vllm", "--profile", "pair", "config",
         "--format", "json"], cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    services = json.loads(config.stdout)["services"]
    first, second = services["vllm"]["environment"], services["vllm-b"]["environment"]
    assert (first["VLLM_MODEL"], second["VLLM_MODEL"]) == tuple(repos)
    names = (first["VLLM_SERVED_MODEL_NAME"], second["VLLM_SERVED_MODEL_NAME"])
    assert names == ("qwen3-30b-a3b-instruct-2507-fp8", "qwen3-30b-a3b-thinking-2507-fp8")
    plans = [pair["together"]["models"][0], pair["together"]["models"][1]] if mode == "co-resident" else [
        pair["alone"][0]["models"][0], pair["alone"][1]["models"][0]]  # fmt: skip
    for environment, planned in zip((first, second), plans, strict=True):
        assert environment["VLLM_GPU_MEMORY_UTILIZATION"] == f"{planned['gpu_memory_utilization']:.2f}"
        assert environment["VLLM_ENABLE_SLEEP_MODE"] == ("true" if mode == "switching" else "false")
    if mode == "co-resident":  # both awake: their shares together stay within the card
        assert float(first["VLLM_GPU_MEMORY_UTILIZATION"]) + float(second["VLLM_GPU_MEMORY_UTILIZATION"]) < 1.0
    assert services["vllm-make-room"]["environment"]["VLLM_PAIR_MODE"] == mode
    assert services["vllm-b"]["depends_on"]["vllm-make-room"]["condition"] == "service_completed_successfully"
    # One backend serves both: its LLM_MODELS names them, in one swap group when they take turns.
    backend = services["backend"]["environment"]
    fields = {n.upper() for n in Settings.model_fields}
    with pytest.MonkeyPatch.context() as env:  # read as the container reads it: from its environment
        for key in fields & backend.keys():
            env.setenv(key, str(backend[key] or ""))
        specs = load_settings(_env_file=None).model_specs
    assert [(m.name, m.base_url, m.role) for m in specs] == [
        (names[0], "http://vllm:8000/v1", "default"), (names[1], "http://vllm-b:8000/v1", "large")]  # fmt: skip
    assert {m.swap_group for m in specs} == ({"gpu0"} if mode == "switching" else {None})
