"""API keys against the real app: who may read, write and delete what; rate limits; CORS; tenancy."""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.config import ConfigError, Settings
from backend.main import create_app
from tests.integration.test_api import upload

READ_A = "reader-of-a-0123456789"
WRITE_A = "writer-of-a-0123456789"
READ_AB = "reader-of-ab-012345678"
ADMIN = "admin-key-0123456789abc"
KEYS = f"{READ_A}=read:a {WRITE_A}=read:a,write:a {READ_AB}=read:a,read:b {ADMIN}=admin,read:*,write:*"
PUBLIC = {"/health", "/ready", "/metrics", "/docs", "/openapi.json", "/", "/ui/app.js"}  # / and /ui: the web page


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keyed(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    settings = make_settings(auth_disabled=False, api_keys=KEYS, rate_limit_per_minute=0)
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_service_refuses_to_start_without_keys_unless_told_to(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="AUTH_DISABLED=true to serve without authentication"):
        create_app(make_settings(auth_disabled=False))
    with TestClient(create_app(make_settings(auth_disabled=True))) as open_client:
        assert open_client.get("/ready").json()["auth"] == "disabled"
        assert open_client.get("/spaces").status_code == 200


def test_every_route_but_the_public_ones_needs_a_valid_key(keyed: TestClient) -> None:
    spec = keyed.get("/openapi.json").json()
    checked = 0
    for path, methods in spec["paths"].items():
        if path in PUBLIC:
            continue
        concrete = path.replace("{document_id}", "00000000-0000-0000-0000-000000000000").replace("{space}", "a")
        for method in methods:
            for headers in ({}, bearer("wrong-key-0123456789")):
                resp = keyed.request(method.upper(), concrete, headers=headers)
                assert resp.status_code == 401, (method, path, resp.text)
                assert resp.headers["www-authenticate"].startswith("Bearer")
                assert "API key" in resp.json()["error"]["message"]
                checked += 1
    assert checked >= 2 * 11
    for path in PUBLIC:
        assert keyed.get(path).status_code == 200, path
    assert keyed.get("/ready").json()["auth"] == "api_keys"


def test_scopes_decide_who_reads_writes_and_deletes(keyed: TestClient) -> None:
    doc = {"pump.txt": b"The Glimmer pump has a maximum pressure of 9 bar."}
    assert upload_as(keyed, READ_A, "a", doc).status_code == 403  # read-only key
    written = upload_as(keyed, WRITE_A, "a", doc)
    assert written.status_code == 200, written.text
    assert upload_as(keyed, WRITE_A, "b", doc).status_code == 403  # no write on b
    assert upload_as(keyed, ADMIN, "b", {"reactor.txt": b"The Zorblat reactor runs at 42 kelvin."}).status_code == 200

    search = {"q": "pump pressure", "space_id": "a"}
    assert keyed.post("/search", json=search, headers=bearer(READ_A)).status_code == 200
    denied = keyed.post("/search", json={**search, "space_id": "b"}, headers=bearer(READ_A))
    assert denied.status_code == 403 and "may not read space 'b'" in denied.json()["error"]["message"]
    assert keyed.post("/ask", json={**search, "space_id": "b"}, headers=bearer(READ_A)).status_code == 403
    assert keyed.get("/documents", params={"space_id": "b"}, headers=bearer(READ_A)).status_code == 403
    summary = {"space_id": "b", "filters": {}}
    assert keyed.post("/summarize", json=summary, headers=bearer(READ_A)).status_code == 403
    assert keyed.get("/summaries", params={"space_id": "b"}, headers=bearer(READ_A)).status_code == 403
    assert keyed.get("/summaries", params={"space_id": "a"}, headers=bearer(READ_A)).json()["summaries"] == []

    listed = {s["name"] for s in keyed.get("/spaces", headers=bearer(READ_A)).json()["spaces"]}
    assert listed == {"a"}
    assert {s["name"] for s in keyed.get("/spaces", headers=bearer(READ_AB)).json()["spaces"]} == {"a", "b"}

    doc_id = keyed.get("/documents", params={"space_id": "a"}, headers=bearer(WRITE_A)).json()["documents"][0]["id"]
    for key in (READ_A, WRITE_A):  # deletes need admin
        assert keyed.delete(f"/documents/{doc_id}", params={"space_id": "a"}, headers=bearer(key)).status_code == 403
        assert keyed.delete("/spaces/a", headers=bearer(key)).status_code == 403
    assert keyed.delete(f"/documents/{doc_id}", params={"space_id": "a"}, headers=bearer(ADMIN)).status_code == 200
    assert keyed.delete("/spaces/b", headers=bearer(ADMIN)).status_code == 200


def upload_as(client: TestClient, key: str, space: str, files: dict[str, bytes]) -> object:
    client.headers.update(bearer(key))
    try:
        return upload(client, space, files)
    finally:
        del client.headers["Authorization"]


def test_each_key_has_its_own_rate_limit(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(auth_disabled=False, api_keys=KEYS, rate_limit_per_minute=6, rate_limit_burst=3)
    with TestClient(create_app(settings)) as client:
        codes = [client.get("/spaces", headers=bearer(READ_A)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = client.get("/spaces", headers=bearer(READ_A))
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "RATE_LIMIT_PER_MINUTE" in limited.json()["error"]["message"]
        assert client.get("/spaces", headers=bearer(READ_AB)).status_code == 200  # other keys unaffected
        assert client.get("/health").status_code == 200  # public routes are not charged


def test_cors_is_closed_by_default_and_open_to_configured_origins(make_settings: Callable[..., Settings]) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    closed = make_settings(auth_disabled=False, api_keys=KEYS)
    with TestClient(create_app(closed)) as client:
        resp = client.options("/search", headers=preflight)
        assert "access-control-allow-origin" not in resp.headers
    open_to_app = make_settings(
        auth_disabled=False, api_keys=KEYS, cors_origins="https://app.example/, https://b.example"
    )
    with TestClient(create_app(open_to_app)) as client:
        resp = client.options("/search", headers=preflight)
        assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in resp.headers["access-control-allow-headers"].lower()
        other = client.options("/search", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_keys_never_reach_the_logs(keyed: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    keyed.get("/spaces", headers=bearer(ADMIN))
    keyed.get("/spaces", headers=bearer("a-wrong-key-that-is-long"))
    keyed.post("/search", json={"q": "x", "space_id": "zz"}, headers=bearer(READ_A))
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert caplog.records and ADMIN not in logged and READ_A not in logged and "a-wrong-key-that-is-long" not in logged
    callers = {getattr(r, "fields", {}).get("caller") for r in caplog.records if r.name == "backend.access"}
    assert {"key4", "key1"} <= callers  # the access log names the key (its position), never shows it


# --- tenancy: 1000 randomised queries, nothing from a space the key may not read ------------------------

SPACES = ("a", "b", "c")
SHARED = b"All sites follow the Orion safety manual: helmets on the floor, pumps checked weekly."


def test_tenancy_over_1000_randomised_queries(make_settings: Callable[..., Settings]) -> None:
    """Three spaces share a document and each holds a secret of its own; keys read different subsets.
    Every answer may only contain chunks of a space the key may read, and a space it may not read is a
    403, whatever the question, mode or filter."""
    keys = {
        "only-a-0123456789abcd": {"a"},
        "a-and-b-0123456789abc": {"a", "b"},
        "only-c-0123456789abcd": {"c"},
        "everything-0123456789": set(SPACES),
    }
    scopes = " ".join(f"{k}={','.join(f'read:{s}' for s in sorted(v))}" for k, v in keys.items())
    admin = "tenancy-admin-0123456789"
    settings = make_settings(auth_disabled=False, api_keys=f"{scopes} {admin}=admin,write:*,read:*",
                             rate_limit_per_minute=0, retrieval_mode="dense")  # fmt: skip
    rng = random.Random(7)
    with TestClient(create_app(settings)) as client:
        for space in SPACES:
            secret = f"Secret of site {space}: the vault code is {space * 4}-{ord(space)}."
            files = {"shared/orion.txt": SHARED, f"secret-{space}.txt": secret.encode()}
            assert upload_as(client, admin, space, files).status_code == 200
        questions = ["What is the vault code?", "secret of site", "Orion safety manual", "pumps checked",
                     "helmets", "vault", "code of site b", "секретный код"]  # fmt: skip
        counts = {"allowed": 0, "denied": 0}
        for _ in range(1000):
            key = rng.choice(list(keys))
            space = rng.choice(SPACES)
            body = {"q": rng.choice(questions), "space_id": space, "top_k": rng.randint(1, 10),
                    "mode": rng.choice(["dense", "sparse", "hybrid"])}  # fmt: skip
            if rng.random() < 0.3:
                body["filters"] = {"folders": [rng.choice(["shared", "other"])]}
            resp = client.post("/search", json=body, headers=bearer(key))
            if space in keys[key]:
                assert resp.status_code == 200, resp.text
                for source in resp.json()["sources"]:
                    leaked = [s for s in SPACES if s != space and f"site {s}:" in source["text"]]
                    assert not leaked, (key, space, source["text"])
                counts["allowed"] += 1
            else:
                assert resp.status_code == 403, resp.text
                counts["denied"] += 1
        assert counts["allowed"] > 300 and counts["denied"] > 300
        # Summaries: the same selection and style in each space is written afresh for that space (a cache
        # shared across spaces would answer the second one stored), from that space's chunks alone.
        everything = "everything-0123456789"
        for space in SPACES:
            resp = client.post("/summarize", json={"space_id": space, "filters": {}}, headers=bearer(everything))
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["cached"] is False and body["coverage"]["chunks_selected"] == 2
            for source in body["sources"]:
                assert not [s for s in SPACES if s != space and f"site {s}:" in source["text"]], source
            stored = client.get("/summaries", params={"space_id": space}, headers=bearer(everything)).json()
            assert [s["selection"] for s in stored["summaries"]] == [{"filters": {}}]
        for key, readable in keys.items():
            for space in SPACES:
                listed = client.get("/summaries", params={"space_id": space}, headers=bearer(key))
                again = client.post("/summarize", json={"space_id": space, "filters": {}}, headers=bearer(key))
                assert (listed.status_code, again.status_code) == ((200, 200) if space in readable else (403, 403))
                if space in readable:
                    assert again.json()["cached"] is True
                    assert not [s for s in SPACES if s != space and f"site {s}:" in again.text]
        for key, readable in keys.items():
            listed = {s["name"] for s in client.get("/spaces", headers=bearer(key)).json()["spaces"]}
            assert listed == readable


def test_the_server_process_says_why_it_will_not_start(tmp_path: Path) -> None:
    env = {**os.environ, "QDRANT_PATH": str(tmp_path), "API_KEYS": "", "AUTH_DISABLED": "false", "LOG_FORMAT": "text"}
    done = subprocess.run([sys.executable, "-c", "from backend.main import app_from_env; app_from_env()"],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0
    assert "cannot start: no API keys: set API_KEYS or API_KEYS_FILE" in done.stderr
