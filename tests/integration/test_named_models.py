"""Named models (LLM_MODELS) through the API, against the real llama.cpp server: a request picks one, a key
may be limited to some, and what lists them lists only the key's own. The switching of models that share
a GPU is in test_model_switching.py (real vLLM servers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from backend.config import ConfigError, Settings
from backend.main import create_app
from tests.conftest import LlamaServer
from tests.integration.test_api import upload
from tests.integration.test_rag_cli import rag
from tests.servers import ThreadedServer, free_port

EVERY = "every-model-0123456789"
FAST_ONLY = "fast-only-0123456789"
LARGE_ONLY = "large-only-0123456789"
KEYS = f"{EVERY}=read:*,write:* {FAST_ONLY}=read:*,model:fast"
FACTS = {"pump.txt": b"The Glimmer pump has a maximum pressure of 9 bar."}
QUESTION = {"q": "What is the maximum pressure of the Glimmer pump?", "space_id": "s"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def two_models(server: LlamaServer) -> list[dict[str, str]]:
    # Two names for one server: what matters here is which name a request gets and who may use it.
    return [{"name": "fast", "base_url": server.base_url, "role": "default"},
            {"name": "large", "base_url": server.base_url, "role": "large"}]  # fmt: skip


@pytest.fixture
def client(make_settings: Callable[..., Settings], llm_server: LlamaServer) -> Iterator[TestClient]:
    settings = make_settings(llm_models=two_models(llm_server), auth_disabled=False, api_keys=KEYS,
                             rate_limit_per_minute=0)  # fmt: skip
    with TestClient(create_app(settings)) as c:
        assert upload(c, "s", FACTS).status_code == 401
        c.headers.update(bearer(EVERY))
        assert upload(c, "s", FACTS).status_code == 200
        yield c


def test_a_request_names_its_model_and_the_answer_says_which_answered(client: TestClient) -> None:
    default = client.post("/ask", json=QUESTION).json()
    named = client.post("/ask", json={**QUESTION, "model": "large"}).json()
    assert (default["model_name"], named["model_name"]) == ("fast", "large")
    assert default["notices"] == named["notices"] == [] and not named["fallback_used"]
    unknown = client.post("/ask", json={**QUESTION, "model": "huge"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_model"
    assert "the models here are fast, large (LLM_MODELS)" in unknown.json()["error"]["message"]
    bad = client.post("/ask", json={**QUESTION, "model": "Huge Model"})
    assert bad.status_code == 422 and "model" in bad.json()["error"]["message"]
    summary = client.post("/summarize", json={"space_id": "s", "filters": {}, "model": "large"})
    assert summary.status_code == 200, summary.text
    assert [m["name"] for m in client.get("/models").json()["models"]] == ["fast", "large"]
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["rag-s", "rag-s:fast", "rag-s:large"]


def test_a_key_limited_to_some_models_may_use_only_those(client: TestClient) -> None:
    limited = bearer(FAST_ONLY)
    assert client.post("/ask", json=QUESTION, headers=limited).json()["model_name"] == "fast"
    refused = client.post("/ask", json={**QUESTION, "model": "large"}, headers=limited)
    assert refused.status_code == 403 and "may not use model 'large'" in refused.json()["error"]["message"]
    summary = client.post("/summarize", json={"space_id": "s", "filters": {}, "model": "large"}, headers=limited)
    assert summary.status_code == 403
    chat = {"model": "rag-s:large", "messages": [{"role": "user", "content": QUESTION["q"]}]}
    assert client.post("/v1/chat/completions", json=chat, headers=limited).status_code == 403
    assert [m["name"] for m in client.get("/models", headers=limited).json()["models"]] == ["fast"]
    ids = [m["id"] for m in client.get("/v1/models", headers=limited).json()["data"]]
    assert ids == ["rag-s", "rag-s:fast"]


def test_a_key_naming_a_model_that_is_not_configured_stops_the_start(
    make_settings: Callable[..., Settings], llm_server: LlamaServer
) -> None:
    settings = make_settings(llm_models=two_models(llm_server), auth_disabled=False,
                             api_keys=f"{EVERY}=read:*,model:fsat")  # fmt: skip
    with pytest.raises(ConfigError, match=r"names models \['fsat'\] that LLM_MODELS does not define"):
        create_app(settings)


def test_a_key_limited_to_a_model_other_than_the_default_must_name_it(
    make_settings: Callable[..., Settings], llm_server: LlamaServer
) -> None:
    settings = make_settings(llm_models=two_models(llm_server), auth_disabled=False, rate_limit_per_minute=0,
                             api_keys=f"{EVERY}=read:*,write:* {LARGE_ONLY}=read:*,model:large")  # fmt: skip
    with TestClient(create_app(settings)) as c:
        assert upload(c, "s", FACTS).status_code == 401
        c.headers.update(bearer(EVERY))
        upload(c, "s", FACTS)
        only_large = bearer(LARGE_ONLY)
        assert c.post("/ask", json=QUESTION, headers=only_large).status_code == 403  # the default is fast
        assert c.post("/ask", json={**QUESTION, "model": "large"}, headers=only_large).json()["model_name"] == "large"


def test_the_rag_cli_names_a_model(make_settings: Callable[..., Settings], llm_server: LlamaServer) -> None:
    server = ThreadedServer(create_app(make_settings(llm_models=two_models(llm_server))), free_port())
    try:
        assert httpx.post(f"{server.base_url}/documents", data={"space_id": "s"}, timeout=120,
                          files=[("files", ("pump.txt", FACTS["pump.txt"]))]).status_code == 200  # fmt: skip
        done = rag("ask", QUESTION["q"], "--space", "s", "--url", server.base_url, "--model", "large")
        assert done.returncode == 0, done.stderr
        assert "answered by large: openai" in done.stdout
        wrong = rag("ask", QUESTION["q"], "--space", "s", "--url", server.base_url, "--model", "huge")
        assert wrong.returncode != 0 and "unknown model 'huge'" in wrong.stderr
        summary = rag("summarize", "--space", "s", "--all", "--url", server.base_url, "--model", "large", "--json")
        assert summary.returncode == 0, summary.stderr
    finally:
        server.stop()
