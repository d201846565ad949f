"""Conversations through the real app: mail, Telegram and WhatsApp exports indexed as messages, found
and filtered by who wrote them and when, cited with sender and time; a grown export re-embeds only what
changed. Embedded store and the Qdrant server path (the stand-in on Qdrant Edge) alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.config import Settings
from backend.main import create_app

T = datetime(2024, 3, 15, 10, 2, tzinfo=UTC)


def unix(local: str) -> str:
    return str(int(datetime.fromisoformat(local + "+00:00").timestamp()))


def telegram() -> bytes:
    rows = [
        (1, "2024-03-14T09:00:00", "Анна Смирнова", "Коллеги, напоминаю про планёрку в 11:00."),
        (2, "2024-03-15T10:02:00", "Пётр Петров", "Предлагаю перенести сдачу проекта «Дельта» на 12 апреля."),
        (3, "2024-03-15T10:05:00", "Анна Смирнова", "Согласна, так будет спокойнее."),
        (4, "2024-03-18T12:00:00", "Игорь Кузнецов", "Решили: серверы для «Дельты» закупаем у компании «Вектор»."),
    ]
    messages = [{"id": i, "type": "message", "date": d, "date_unixtime": unix(d),
                 "from": who, "from_id": f"user{i}", "text": text} for i, d, who, text in rows]  # fmt: skip
    return json.dumps({"name": "Проект Дельта", "type": "private_group", "id": 1, "messages": messages},
                      ensure_ascii=False).encode()  # fmt: skip


WHATSAPP = [
    "14.03.2024, 18:00 - Ольга Васильева: Отчёт по закупкам выложила в папку.",
    "15.03.2024, 09:30 - Дмитрий Соколов: Бюджет проекта «Сириус» согласовали: 430 000 рублей.",
    "15.03.2024, 09:31 - Ольга Васильева: Отлично, спасибо!",
]


def whatsapp(extra: list[str] | None = None) -> bytes:
    return ("\n".join(WHATSAPP + (extra or [])) + "\n").encode()


def mbox() -> bytes:
    return (
        b"From petrov@corp.ru Fri Mar 15 10:02:00 2024\n"
        b"From: =?utf-8?b?0J/RkdGC0YAg0J/QtdGC0YDQvtCy?= <petrov@corp.ru>\nTo: Anna <anna@corp.ru>\n"
        b"Subject: Budget review\nDate: Fri, 15 Mar 2024 10:02:00 +0000\nMessage-ID: <m1@corp.ru>\n"
        b"Content-Type: text/plain; charset=utf-8\n\nI propose to cut the travel budget by 20 percent.\n\n"
        b"From anna@corp.ru Sat Mar 16 11:00:00 2024\n"
        b"From: Anna Hughes <anna@corp.ru>\nTo: petrov@corp.ru\nSubject: Re: Budget review\n"
        b"Date: Sat, 16 Mar 2024 11:00:00 +0000\nMessage-ID: <m2@corp.ru>\nIn-Reply-To: <m1@corp.ru>\n"
        b"Content-Type: text/plain; charset=utf-8\n\nAgreed, twenty percent it is.\n\n"
        b"On Fri, 15 Mar 2024 at 10:02, Petrov <petrov@corp.ru> wrote:\n"
        b"> I propose to cut the travel budget by 20 percent.\n"
    )


EXPORTS = {"chats/telegram/result.json": telegram(), "chats/whatsapp.txt": whatsapp(), "mail/inbox.mbox": mbox()}


def upload(client: TestClient, files: dict[str, bytes], space: str = "conv") -> dict[str, Any]:
    resp = client.post("/documents", data={"space_id": space, "paths": list(files)},
                       files=[("files", (p.rsplit("/", 1)[-1], d)) for p, d in files.items()])  # fmt: skip
    assert resp.status_code == 200, resp.text
    return {f["path"]: f for f in resp.json()["files"]}


@pytest.fixture(scope="module")
def conv(tmp_path_factory: pytest.TempPathFactory, llm_server: Any) -> Iterator[TestClient]:
    settings = Settings(_env_file=None, qdrant_path=tmp_path_factory.mktemp("conv") / "q",  # type: ignore[call-arg]
                        llm_base_url=llm_server.base_url, llm_max_tokens=16, log_format="text", auth_disabled=True,
                        rate_limit_per_minute=0)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        results = upload(client, EXPORTS)
        assert {p: r["status"] for p, r in results.items()} == dict.fromkeys(EXPORTS, "new")
        yield client


def search(client: TestClient, q: str, space: str = "conv", **filters: Any) -> list[dict[str, Any]]:
    resp = client.post("/search", json={"q": q, "space_id": space, "top_k": 3, "filters": filters})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["sources"])


def test_sources_say_who_wrote_what_and_when(conv: TestClient) -> None:
    top = search(conv, "Кто предложил перенести сдачу проекта «Дельта»?")[0]
    assert top["path"] == "chats/telegram/result.json"
    assert "[15 марта 2024, 10:02] Пётр Петров: Предлагаю перенести сдачу проекта «Дельта»" in top["text"]
    c = top["conversation"]
    assert c["kind"] == "chat" and c["title"] == "Проект Дельта" and "Пётр Петров" in c["participants"]
    assert {"id": "2", "sender": "Пётр Петров", "sent_at": T.timestamp()} in c["messages"]
    mail = search(conv, "who proposed cutting the travel budget")[0]
    assert mail["path"] == "mail/inbox.mbox" and mail["conversation"]["title"] == "Budget review"
    assert mail["text"].count("I propose to cut the travel budget") == 1  # the reply's quote is not indexed again


@pytest.mark.parametrize(
    ("filters", "allowed"),
    [
        ({"participants": ["Петров"]}, lambda c: any("Петров" in p for p in c["participants"])),
        ({"participants": "пётр петров"}, lambda c: "Пётр Петров" in c["participants"]),
        ({"participants": ["anna@corp.ru"]}, lambda c: c["title"] == "Budget review"),
        ({"chat": ["проект дельта"]}, lambda c: c["title"] == "Проект Дельта"),
        ({"thread": ["Budget review"]}, lambda c: c["kind"] == "thread"),
        ({"sent_after": "2024-03-15T00:00:00Z", "sent_before": "2024-03-16T00:00:00Z"},
         lambda c: c["sent_last"] >= T.replace(hour=0, minute=0).timestamp()
         and c["sent_first"] < T.replace(day=16, hour=0, minute=0).timestamp()),
    ],
)  # fmt: skip
def test_conversation_filters(conv: TestClient, filters: dict[str, Any], allowed: Any) -> None:
    sources = search(conv, "проект бюджет сроки budget", **filters)
    assert sources, filters
    assert all(s["conversation"] and allowed(s["conversation"]) for s in sources), sources


def test_a_day_filter_finds_the_days_decision(conv: TestClient) -> None:
    sources = search(conv, "Что решили по серверам?", sent_after="2024-03-18T00:00:00+03:00",
                     sent_before="2024-03-19T00:00:00+03:00")  # fmt: skip
    assert len(sources) == 1 and "«Вектор»" in sources[0]["text"]
    assert search(conv, "Что решили по серверам?", participants=["Никто Неизвестный"]) == []


def test_ask_and_chat_completions_take_the_filters(conv: TestClient) -> None:
    body = {"q": "Что предложил Петров?", "space_id": "conv", "filters": {"participants": ["Петров"]}}
    answer = conv.post("/ask", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["sources"] and all(
        "Пётр Петров" in s["conversation"]["participants"] for s in answer.json()["sources"]
    )
    chat = conv.post("/v1/chat/completions", json={"model": "rag-conv", "messages": [
        {"role": "user", "content": "Какой бюджет согласовали?"}], "filters": {"chat": ["whatsapp"]}})  # fmt: skip
    assert chat.status_code == 200, chat.text
    assert {s["path"] for s in chat.json()["sources"]} == {"chats/whatsapp.txt"}


def test_a_grown_export_reembeds_only_its_new_messages(conv: TestClient) -> None:
    space = "grow"
    first = upload(conv, {"chats/whatsapp.txt": whatsapp()}, space)["chats/whatsapp.txt"]
    budget = search(conv, "Какой бюджет проекта «Сириус» согласовали?", space)[0]
    assert "430 000" in budget["text"] and budget["id"]
    extra = ["16.03.2024, 10:00 - Дмитрий Соколов: Счёт от подрядчика пришёл, оплачу в понедельник.",
             "16.03.2024, 10:05 - Ольга Васильева: Хорошо."]  # fmt: skip
    grown = upload(conv, {"chats/whatsapp.txt": whatsapp(extra)}, space)["chats/whatsapp.txt"]
    assert grown["status"] == "changed" and grown["chunks"] == first["chunks"] + 1
    assert grown["reused"] == first["chunks"]  # every earlier day kept its vectors
    metrics = conv.get("/metrics").text
    assert f'rag_ingest_reused_chunks_total{{space="{space}"}} {float(first["chunks"])}' in metrics
    found = search(conv, "Когда оплатят счёт подрядчика?", space)
    assert "оплачу в понедельник" in found[0]["text"]
    spaces = {s["name"]: s for s in conv.get("/spaces").json()["spaces"]}
    assert spaces[space]["chunks"] == grown["chunks"]  # the old version's chunks are gone, none twice
    again = search(conv, "Какой бюджет проекта «Сириус» согласовали?", space)[0]
    assert (again["id"], again["text"]) == (budget["id"], budget["text"])  # an unchanged day keeps its chunk id


def mail_with_attachments(extra_message: bool = False) -> bytes:
    def message(n: int, sender: str, subject: str, body: str, files: list[tuple[str, str]]) -> str:
        parts = "".join(
            f'--b\nContent-Type: text/plain; charset=utf-8; name="{name}"\n'
            f'Content-Disposition: attachment; filename="{name}"\n\n{text}\n'
            for name, text in files
        )
        return (f"From x@corp.ru Fri Mar 15 10:0{n}:00 2024\nFrom: {sender}\nTo: team@corp.ru\nSubject: {subject}\n"
                f"Date: Fri, 15 Mar 2024 10:0{n}:00 +0000\nMessage-ID: <a{n}@corp.ru>\nMIME-Version: 1.0\n"
                f'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain; charset=utf-8\n\n'
                f"{body}\n{parts}--b--\n\n")  # fmt: skip

    box = message(1, "Олег Морозов <morozov@corp.ru>", "Смета", "Смета во вложении.", [
        ("смета.csv", "статья;сумма\nсерверы;1 250 000\nлицензии;310 000"),
        ("notes.txt", "Поставщик серверов: компания «Вектор», срок поставки 20 апреля."),
        ("notes.txt", "Второй файл с тем же именем: резервный поставщик «Орион»."),
    ])  # fmt: skip
    if extra_message:
        box += message(2, "Анна Смирнова <anna@corp.ru>", "Re: Смета", "Принято.", [])
    return box.encode()


def test_mail_attachments_are_documents_of_their_own(conv: TestClient) -> None:
    space = "attach"
    result = upload(conv, {"mail/smeta.mbox": mail_with_attachments()}, space)["mail/smeta.mbox"]
    assert result["status"] == "new", result
    docs = {d["path"]: d for d in conv.get("/documents", params={"space_id": space}).json()["documents"]}
    mailbox = docs.pop("mail/smeta.mbox")
    assert sorted(docs) == ["mail/smeta.mbox#a1@corp.ru/notes (2).txt", "mail/smeta.mbox#a1@corp.ru/notes.txt",
                            "mail/smeta.mbox#a1@corp.ru/смета.csv"]  # fmt: skip
    assert (
        mailbox["attachments"] == 3 and mailbox["chunks"] + sum(d["chunks"] for d in docs.values()) == result["chunks"]
    )
    assert all(d["parent"] == mailbox["id"] and d["message"] == "a1@corp.ru" and d["chunks"] for d in docs.values())
    # Found and cited as themselves, with the mail they came in; their own type is a filter.
    top = search(conv, "Какую сумму заложили на серверы?", space, file_types=["csv"])
    assert [s["path"] for s in top] == ["mail/smeta.mbox#a1@corp.ru/смета.csv"]
    assert top[0]["title"] == "смета.csv" and top[0]["document"] == docs[top[0]["path"]]["id"]
    assert top[0]["conversation"]["participants"][0] == "Олег Морозов" and "1 250 000" in top[0]["text"]
    assert search(conv, "Кто поставит серверы?", space, participants=["Морозов"])[0]["path"].endswith("/notes.txt")
    # Deleted with their mail file, never alone.
    refused = conv.delete(
        f"/documents/{docs['mail/smeta.mbox#a1@corp.ru/notes.txt']['id']}", params={"space_id": space}
    )
    assert refused.status_code == 409 and "mail/smeta.mbox" in refused.json()["error"]["message"], refused.text
    # The thread gets a reply (its day's chunk is rewritten): the attachments keep their ids and vectors.
    grown = upload(conv, {"mail/smeta.mbox": mail_with_attachments(extra_message=True)}, space)["mail/smeta.mbox"]
    assert grown["status"] == "changed" and grown["reused"] == sum(d["chunks"] for d in docs.values()), grown
    again = {d["path"]: d["id"] for d in conv.get("/documents", params={"space_id": space}).json()["documents"]}
    assert {p: again[p] for p in docs} == {p: d["id"] for p, d in docs.items()}
    gone = conv.delete(f"/documents/{mailbox['id']}", params={"space_id": space})
    assert gone.status_code == 200, gone.text
    assert conv.get("/documents", params={"space_id": space}).json()["documents"] == []
    assert search(conv, "серверы", space) == []


def test_broken_parts_are_reported_and_the_rest_indexed(conv: TestClient) -> None:
    truncated = telegram()[:-200]
    bad_date = whatsapp(["31.02.2024, 10:00 - Пётр Петров: Это сообщение с невозможной датой."])
    empty = b'{"name": "x", "type": "personal_chat", "messages": []}'
    files = {"cut/result.json": truncated, "bad-date.txt": bad_date, "empty/result.json": empty}
    results = upload(conv, files, "broken")
    assert results["cut/result.json"]["status"] == "new" and "cut off" in results["cut/result.json"]["warnings"][0]
    assert results["bad-date.txt"]["status"] == "new"
    assert any("31.02.2024 10:00 does not parse" in w for w in results["bad-date.txt"]["warnings"])
    assert results["empty/result.json"]["status"] == "failed"
    assert "no messages" in results["empty/result.json"]["reason"]
    assert "невозможной датой" in search(conv, "невозможная дата", "broken")[0]["text"]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"participants": [""]}, "is not a name"),
        ({"chat": ["x" * 300]}, "is not a name"),
        ({"participants": ["a\x00b"]}, "is not a name"),
        ({"sent_after": "2024-03-16T00:00:00Z", "sent_before": "2024-03-15T00:00:00Z"}, "sent_after must be earlier"),
        ({"sent_after": "2024-03-16"}, "timezone"),
        ({"participants": ["x"] * 21}, "at most 20"),
    ],
)
def test_bad_conversation_filters_are_422(conv: TestClient, filters: dict[str, Any], message: str) -> None:
    resp = conv.post("/search", json={"q": "x", "space_id": "conv", "filters": filters})
    assert resp.status_code == 422 and message in resp.text, resp.text


def test_the_server_store_filters_alike(store_settings: Settings) -> None:
    with TestClient(create_app(store_settings)) as client:
        upload(client, EXPORTS, "both")
        sources = search(client, "бюджет", "both", participants=["Соколов"], sent_before="2024-03-15T12:00:00Z")
        assert [s["path"] for s in sources] == ["chats/whatsapp.txt"]
        assert search(client, "бюджет", "both", thread=["budget review"])[0]["conversation"]["kind"] == "thread"
