"""POST /search and /ask with retrieval modes and metadata filters, through the real app."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

DAY = 86400.0
T0 = datetime(2024, 3, 1, tzinfo=UTC).timestamp()
FILES = {
    "mail/2024/pump.txt": ("Насосная станция остановлена: давление упало.", T0),
    "mail/2023/boiler.txt": ("Котельная переведена на газ, насос заменён.", T0 - 400 * DAY),
    "specs/pump.md": ("# Pump spec\n\nThe pump delivers 9 bar; насос испытан.", T0 + 10 * DAY),
}

MAIL = {"mail/2024/pump.txt", "mail/2023/boiler.txt"}


@pytest.fixture
def loaded(client: TestClient) -> TestClient:
    files = [("files", (p.rsplit("/", 1)[-1], text.encode())) for p, (text, _) in FILES.items()]
    data = {"space_id": "f", "paths": list(FILES), "modified": [str(t) for _, t in FILES.values()]}
    resp = client.post("/documents", data=data, files=files)
    assert resp.status_code == 200, resp.text
    return client


def search(client: TestClient, **body: Any) -> Any:
    return client.post("/search", json={"q": "насос давление", "space_id": "f", "top_k": 5, **body})


def found_paths(resp: Any) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {s["path"] for s in resp.json()["sources"]}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, set(FILES)),
        ({"folders": ["mail"]}, {"mail/2024/pump.txt", "mail/2023/boiler.txt"}),
        ({"folders": ["/mail/2024/"]}, {"mail/2024/pump.txt"}),  # slashes around a folder are fine
        ({"file_types": [".MD"]}, {"specs/pump.md"}),
        ({"title": "Pump spec"}, {"specs/pump.md"}),
        ({"modified_after": "2024-01-01T00:00:00Z"}, {"mail/2024/pump.txt", "specs/pump.md"}),
        ({"modified_before": "2024-03-05T00:00:00+03:00", "folders": ["mail"]}, MAIL),
        ({"indexed_after": "2000-01-01T00:00:00Z", "file_types": ["txt"]}, MAIL),
        ({"indexed_before": "2000-01-01T00:00:00Z"}, set()),
    ],
)  # fmt: skip
def test_filters(loaded: TestClient, filters: dict[str, Any], expected: set[str]) -> None:
    resp = search(loaded, filters=filters)
    assert found_paths(resp) == expected
    assert resp.json()["retrieval"] == {"mode": "hybrid", "fusion": "weighted", "notices": []}


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_the_mode_can_be_chosen_per_request(loaded: TestClient, mode: str) -> None:
    resp = search(loaded, mode=mode, filters={"folders": ["specs"]})
    assert found_paths(resp) == {"specs/pump.md"} and resp.json()["retrieval"]["mode"] == mode


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"mode": "bm42"}, "mode: Input should be 'hybrid', 'dense' or 'sparse'"),
        ({"fusion": "max"}, "fusion: Input should be 'weighted', 'rrf' or 'dbsf'"),
        ({"filters": {"file_types": ["p/df"]}}, "'p/df' is not a file extension"),
        ({"filters": {"folders": ["../etc"]}}, "'../etc' is not a folder path"),
        ({"filters": {"modified_after": "2024-01-01"}}, "timezone"),
        ({"filters": {"modified_after": "2024-02-01T00:00:00Z", "modified_before": "2024-01-01T00:00:00Z"}},
         "modified_after must be earlier than modified_before"),
        ({"filters": {"path": "x"}}, "Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_bad_retrieval_options_are_422_with_what_to_fix(loaded: TestClient, body: dict[str, Any], message: str) -> None:
    resp = search(loaded, **body)
    assert resp.status_code == 422 and message in resp.json()["error"]["message"], resp.text


def test_ask_reports_its_retrieval_and_honours_filters(loaded: TestClient) -> None:
    resp = loaded.post("/ask", json={"q": "What pressure does the pump deliver?", "space_id": "f",
                                     "filters": {"file_types": ["md"]}, "mode": "hybrid"})  # fmt: skip
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["retrieval"]["mode"] == "hybrid" and {s["path"] for s in body["sources"]} == {"specs/pump.md"}


def test_upload_with_a_wrong_number_of_modification_times_is_400(client: TestClient) -> None:
    resp = client.post("/documents", data={"space_id": "f", "modified": ["1", "2"]}, files=[("files", ("a.txt", b"x"))])
    assert resp.status_code == 400 and "2 modification times for 1 files" in resp.json()["error"]["message"]
