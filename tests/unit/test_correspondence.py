"""Mail, Telegram, WhatsApp and chat-log parsing, and chunks made of whole messages."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from backend.services.correspondence import chunk_conversation, normalized_key, participant_keys
from backend.services.correspondence.chunking import chunk_conversations
from backend.services.correspondence.model import Conversation, Message
from backend.services.correspondence.quoting import own_text
from backend.services.parsing import ParsedDocument, ParseError, parse

MSK = timezone(timedelta(hours=3))


def words(text: str) -> list[tuple[int, int]]:
    """A whitespace tokenizer: one token per word (the chunker takes any span tokenizer)."""
    spans, start = [], None
    for i, ch in enumerate(text + " "):
        if ch.isspace():
            if start is not None:
                spans.append((start, i))
                start = None
        elif start is None:
            start = i
    return spans


def mail(headers: dict[str, str], body: bytes, *, charset: str = "utf-8", cte: str = "8bit") -> bytes:
    head = "".join(f"{k}: {v}\n" for k, v in headers.items())
    head += f"MIME-Version: 1.0\nContent-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {cte}\n"
    return head.encode("utf-8") + b"\n" + body + b"\n"  # raw UTF-8 in headers: as today's clients send it


def mbox(*messages: bytes) -> bytes:
    return b"".join(b"From sender@example Fri Mar 15 10:02:00 2024\n" + m + b"\n" for m in messages)


def threads_of(doc: ParsedDocument) -> list[Conversation]:
    """The conversations of a parsed export, read to the end (a mailbox is read lazily, thread by thread)."""
    assert doc.conversation is not None
    return [conv for conv, _ in doc.conversation.parts()]


def messages_of(data: bytes, name: str) -> list[Message]:
    return [m for conv in threads_of(parse(data, name)) for m in conv.messages]


# --- mail ------------------------------------------------------------------------------------------


def test_mbox_headers_charsets_and_threads() -> None:
    first = mail(
        {"From": "=?utf-8?b?0J/RkdGC0YAg0J/QtdGC0YDQvtCy?= <petrov@corp.ru>", "To": "Anna <anna@corp.ru>",
         "Subject": "=?koi8-r?b?8M/T1MHXy8E=?=", "Date": "Fri, 15 Mar 2024 10:02:00 +0300",
         "Message-ID": "<m1@corp.ru>"},
        "Предлагаю перенести срок на 1 апреля.".encode("koi8-r"), charset="koi8-r",
    )  # fmt: skip
    second = mail(
        {"From": "Anna Smirnova <anna@corp.ru>", "To": "petrov@corp.ru", "Subject": "Re: =?koi8-r?b?8M/T1MHXy8E=?=",
         "Date": "Fri, 15 Mar 2024 11:00:00 +0300", "Message-ID": "<m2@corp.ru>", "In-Reply-To": "<m1@corp.ru>"},
        b"=D0=A1=D0=BE=D0=B3=D0=BB=D0=B0=D1=81=D0=BD=D0=B0.", cte="quoted-printable",
    )  # fmt: skip
    other = mail(
        {"From": "ivan@corp.ru", "Subject": "Other topic", "Date": "Sat, 16 Mar 2024 09:00:00 +0300",
         "Message-ID": "<m3@corp.ru>"},
        "Отчёт готов.".encode("cp1251"), charset="windows-1251",
    )  # fmt: skip
    doc = parse(mbox(first, second, other), "inbox.mbox")
    threads = threads_of(doc)
    assert doc.warnings == []
    assert [(t.kind, t.title, [m.id for m in t.messages]) for t in threads] == [
        ("thread", "Поставка", ["m1@corp.ru", "m2@corp.ru"]),
        ("thread", "Other topic", ["m3@corp.ru"]),
    ]
    first_msg, reply = threads[0].messages
    assert (first_msg.sender, first_msg.sender_address, first_msg.recipients) == (
        "Пётр Петров",
        "petrov@corp.ru",
        ["Anna"],
    )
    assert first_msg.text == "Предлагаю перенести срок на 1 апреля."
    assert first_msg.sent_at == datetime(2024, 3, 15, 10, 2, tzinfo=MSK)
    assert (reply.text, reply.reply_to) == ("Согласна.", "m1@corp.ru")
    assert threads[1].messages[0].text == "Отчёт готов."


def test_a_wrong_or_missing_charset_is_detected_from_the_bytes() -> None:
    wrong = mail({"From": "a@x.ru", "Subject": "s", "Date": "Fri, 15 Mar 2024 10:00:00 +0000", "Message-ID": "<w@x>"},
                 "Счёт оплачен полностью".encode("cp1251"), charset="utf-8")  # fmt: skip
    unknown = mail({"From": "b@x.ru", "Subject": "s2", "Date": "Fri, 15 Mar 2024 11:00:00 +0000"},
                   "Договор подписан сегодня".encode("koi8-r"), charset="x-unknown-charset")  # fmt: skip
    doc = parse(mbox(wrong, unknown), "box.mbox")
    texts = [m.text for conv in threads_of(doc) for m in conv.messages]
    assert texts == ["Счёт оплачен полностью", "Договор подписан сегодня"]
    assert len(doc.warnings) == 2 and all("charset" in w for w in doc.warnings)


def test_html_body_multipart_and_an_attachment() -> None:
    report = base64.b64encode("Итоги квартала: выручка 12 млн".encode()).decode()
    raw = (
        "From: Olga <olga@corp.ru>\nSubject: Отчёт\nDate: Mon, 18 Mar 2024 12:00:00 +0300\nMessage-ID: <h1@corp.ru>\n"
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b1"\n\n'
        '--b1\nContent-Type: multipart/alternative; boundary="b2"\n\n'
        "--b2\nContent-Type: text/html; charset=utf-8\n\n<html><body><p>Отчёт <b>во вложении</b>.</p>"
        "<script>x()</script></body></html>\n--b2--\n"
        '--b1\nContent-Type: text/plain; name="report.txt"\nContent-Disposition: attachment; filename="report.txt"\n'
        f"Content-Transfer-Encoding: base64\n\n{report}\n"
        '--b1\nContent-Type: image/png\nContent-Disposition: attachment; filename="logo.png"\n'
        "Content-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--b1--\n"
    ).encode()
    doc = parse(raw, "report.eml")
    conv = doc.conversation
    assert conv is not None and conv.format == "eml"
    assert conv.conversations[0].messages[0].text == "Отчёт во вложении."
    assert [(a.name, a.message_id) for a in conv.attachments] == [("report.txt", "h1@corp.ru")]
    chunks = chunk_conversations(conv, words, max_tokens=64, overlap_tokens=0)
    attachment = [c for c in chunks if c.meta and c.meta.get("attachment")]
    assert len(attachment) == 1 and "выручка 12 млн" in attachment[0].text
    assert attachment[0].meta["messages"][0]["id"] == "h1@corp.ru"  # type: ignore[index]
    assert "Olga" in (attachment[0].heading or "")


@pytest.mark.parametrize(
    ("body", "own"),
    [
        ("Согласен.\n\n> Предлагаю перенести срок.\n> Петров", "Согласен."),
        ("Agreed.\n\nOn Fri, 15 Mar 2024 at 10:02, Peter Walker <p@x.com> wrote:\n> Move the deadline?", "Agreed."),
        ("Agreed.\n\nOn Fri, 15 Mar 2024 at 10:02, Peter Walker <p@x.com>\nwrote:\n> Move the deadline?", "Agreed."),
        ("Да, беру.\n\n15 марта 2024 г., в 10:02, Пётр Петров <p@x.ru> писал(а):\n> Кто возьмёт задачу?", "Да, беру."),
        ("Принято.\n\nПётр Петров написал:\nКто возьмёт задачу?\nЭто срочно.", "Принято."),
        (
            "See below.\n\nFrom: Peter Walker\nSent: Friday, March 15, 2024 10:02 AM\nTo: Anna\nSubject: Plan\n\nOld",
            "See below.",
        ),
        (
            "Смотрите ниже.\n\nОт: Пётр Петров\nОтправлено: 15 марта 2024 г. 10:02\nКому: Анна\nТема: План\n\nСтарое",
            "Смотрите ниже.",
        ),
        ("Пересылаю.\n\n-------- Исходное сообщение --------\nОт: кто-то\nТекст", "Пересылаю."),
        (
            "Ответ внизу.\n\n> вопрос один\nответ один\n\n> вопрос два\nответ два",
            "Ответ внизу.\n\nответ один\n\nответ два",
        ),
        ("Спасибо!\n-- \nИван Иванов\nтел. 123", "Спасибо!"),
    ],
)
def test_quoted_history_is_left_out(body: str, own: str) -> None:
    assert own_text(body) == own


def test_a_broken_message_or_date_costs_only_itself() -> None:
    good = mail({"From": "a@x.ru", "Subject": "s", "Date": "Fri, 15 Mar 2024 10:00:00 +0000", "Message-ID": "<g@x>"},
                "Первое".encode())  # fmt: skip
    broken = b"\x00\xff\xfe\x13 garbage \x00" * 20
    undated = mail(
        {"From": "c@x.ru", "Subject": "s3", "Date": "sometime in spring", "Message-ID": "<d@x>"}, "Третье".encode()
    )
    doc = parse(mbox(good, broken, undated), "box.mbox")
    texts = [(m.text, m.sent_at is None) for conv in threads_of(doc) for m in conv.messages]
    assert sorted(texts) == [("Первое", False), ("Третье", True)]
    assert any(w.startswith("message 2: skipped") for w in doc.warnings)
    nul_charset = mail({"From": "e@x.ru", "Subject": "s", "Date": "Fri, 15 Mar 2024 10:00:00 +0000"}, b"Text",
                       charset="utf\x008")  # fmt: skip
    assert [m.text for m in messages_of(nul_charset, "nul.eml")] == ["Text"]
    assert any("message 3 (d@x)" in w and "does not parse" in w for w in doc.warnings)


def test_raw_8bit_headers_in_a_russian_code_page() -> None:
    raw = "From: Иван Сидоров <ivan@x.ru>\nSubject: Счёт на оплату\nDate: Fri, 15 Mar 2024 10:00:00 +0000\n\nТекст\n"
    msgs = messages_of(raw.encode("cp1251"), "old.eml")
    assert (msgs[0].sender, msgs[0].subject, msgs[0].text) == ("Иван Сидоров", "Счёт на оплату", "Текст")


def test_mboxrd_escaped_from_lines_stay_in_the_body() -> None:
    body = b"Line one\n>From here on it is text\nLine three"
    msgs = messages_of(mbox(mail({"From": "a@x", "Subject": "q", "Date": "Fri, 15 Mar 2024 10:00:00 +0000"}, body)),
                       "q.mbox")  # fmt: skip
    assert msgs[0].text == "Line one\nFrom here on it is text\nLine three"


def test_threads_by_subject_when_reply_headers_are_missing() -> None:
    a = mail(
        {"From": "a@x", "Subject": "Бюджет", "Date": "Fri, 15 Mar 2024 10:00:00 +0000", "Message-ID": "<a@x>"}, b"A"
    )
    b = mail(
        {"From": "b@x", "Subject": "RE: Бюджет", "Date": "Fri, 15 Mar 2024 11:00:00 +0000", "Message-ID": "<b@x>"}, b"B"
    )
    c = mail({"From": "c@x", "Subject": "Отв: Бюджет", "Date": "Fri, 15 Mar 2024 12:00:00 +0000", "Message-ID": "<c@x>",
              "In-Reply-To": "<not-in-this-file@x>"}, b"C")  # fmt: skip
    d = mail(
        {"From": "d@x", "Subject": "Бюджет", "Date": "Sat, 16 Mar 2024 12:00:00 +0000", "Message-ID": "<d@x>"}, b"D"
    )
    threads = threads_of(parse(mbox(a, b, c, d), "t.mbox"))
    assert [[m.id for m in t.messages] for t in threads] == [["a@x", "b@x", "c@x"], ["d@x"]]


# --- Telegram -------------------------------------------------------------------------------------


def telegram_chat(name: str = "Проект Альфа") -> dict[str, object]:
    base = {"date": "2024-03-15T10:02:00", "date_unixtime": "1710486120"}
    return {"name": name, "type": "private_group", "id": 7, "messages": [
        {"id": 1, "type": "service", **base, "actor": "Пётр Петров", "action": "create_group", "text": ""},
        {"id": 2, "type": "message", **base, "from": "Пётр Петров", "from_id": "user1",
         "text": ["Бюджет: ", {"type": "bold", "text": "5 млн"}, " (", {"type": "text_link", "text": "смета",
                  "href": "https://x/smeta"}, ")"]},
        {"id": 3, "type": "message", **base, "from": "Анна", "from_id": "user2", "text": "", "photo": "photos/1.jpg"},
        {"id": 4, "type": "message", **base, "from": "Анна", "from_id": "user2", "text": "ок", "reply_to_message_id": 2,
         "edited": "2024-03-15T10:05:00", "edited_unixtime": "1710486300"},
        {"id": 5, "type": "message", **base, "from": None, "text": "Переслано", "forwarded_from": "Иван"},
        {"id": 6, "type": "message", **base, "from": "Анна", "text": "", "file": "files/plan.pdf",
         "file_name": "plan.pdf", "media_type": "document"},
    ]}  # fmt: skip


def test_telegram_one_chat() -> None:
    data = json.dumps(telegram_chat(), ensure_ascii=False).encode()
    doc = parse(data, "result.json")
    assert doc.title == "Проект Альфа" and doc.conversation is not None and doc.conversation.format == "telegram"
    msgs = threads_of(doc)[0].messages
    assert [m.id for m in msgs] == ["2", "4", "5", "6"]  # the service message and the bare photo are left out
    budget, ok, forwarded, document = msgs
    assert budget.text == "Бюджет: 5 млн (смета (https://x/smeta))"
    assert budget.sent_at == datetime(2024, 3, 15, 10, 2, tzinfo=MSK)  # the instant, at the exporter's offset
    assert (ok.reply_to, ok.edited) == ("2", True)
    assert (forwarded.sender, forwarded.forwarded_from) == ("Deleted Account", "Иван")
    assert document.text == "[document: plan.pdf]"


def test_telegram_all_chats_export() -> None:
    export = {"about": "Here is the data you requested.", "chats": {"about": "...", "list": [
        telegram_chat("Первый"), telegram_chat("Второй")]}}  # fmt: skip
    doc = parse(json.dumps(export, ensure_ascii=False).encode(), "result.json")
    assert [c.title for c in threads_of(doc)] == ["Первый", "Второй"]


def test_a_truncated_telegram_export_keeps_the_messages_before_the_cut() -> None:
    text = json.dumps(telegram_chat(), ensure_ascii=False, indent=1)
    cut = text.index('"id": 5')
    doc = parse(text[:cut].encode(), "result.json")
    assert [m.id for m in threads_of(doc)[0].messages] == ["2", "4"]
    assert len(doc.warnings) == 1 and "cut off" in doc.warnings[0] and "export the chat again" in doc.warnings[0]


def test_a_long_telegram_chat_is_read_in_parts_that_chunk_as_the_whole() -> None:
    from backend.services.correspondence import telegram

    start = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
    rows = [{"id": i, "type": "message", "date_unixtime": str(int((start + timedelta(hours=5 * i)).timestamp())),
             "date": (start + timedelta(hours=5 * i)).strftime("%Y-%m-%dT%H:%M:%S"), "from": f"u{i % 3}",
             "from_id": f"user{i % 3}", "text": f"Сообщение номер {i} про поставку {i * 7}"}
            for i in range(2500)]  # fmt: skip
    export = {"about": "Here is the data you requested.", "chats": {"list": [
        {"name": "Большой \"чат\"", "type": "private_group", "id": 1, "messages": rows},
        {"type": "saved_messages", "id": 2, "messages": rows[:3]}]}}  # fmt: skip
    doc = parse(json.dumps(export, ensure_ascii=False).encode(), "result.json")
    parts = threads_of(doc)
    assert [c.title for c in parts] == ['Большой "чат"'] * 2 + ["(unnamed chat)"]
    assert [len(c.messages) for c in parts[:2]] == [2000, 500] and len(parts[2].messages) == 3
    first = parts[0].messages
    assert len(first) >= telegram.PART_MESSAGES and first[-1].sent_at.date() != parts[1].messages[0].sent_at.date()  # type: ignore[union-attr]
    whole = Conversation("chat", parts[0].title, first + parts[1].messages)
    tokenize = str.split
    assert chunk_conversation(whole, tokenize, 64, 0) == (
        chunk_conversation(parts[0], tokenize, 64, 0)
        + chunk_conversation(parts[1], tokenize, 64, len(chunk_conversation(parts[0], tokenize, 64, 0)))
    )


def test_a_damaged_telegram_message_is_skipped_and_the_rest_read() -> None:
    text = json.dumps(telegram_chat(), ensure_ascii=False, indent=1)
    start = text.index('"id": 4')
    damaged = text[:start] + '"id": 4, "type": "message", "text": "ок\x00 \\q' + text[text.index("}", start) :]
    doc = parse(damaged.encode(), "result.json")
    assert [m.id for m in threads_of(doc)[0].messages] == ["2", "5", "6"]
    assert len(doc.warnings) == 1 and "is damaged" in doc.warnings[0] and "was skipped" in doc.warnings[0]


def test_a_telegram_export_without_messages_is_a_clear_error() -> None:
    with pytest.raises(ParseError, match="telegram export with no messages"):
        parse(json.dumps({"name": "x", "type": "personal_chat", "messages": []}).encode(), "result.json")


def test_ordinary_json_is_not_a_chat() -> None:
    doc = parse(b'{"messages": "hello", "text": "a plain config"}', "config.json")
    assert doc.conversation is None and "a plain config" in doc.sections[0].text
    llm_log = {"model": "x", "messages": [{"role": "user", "content": "Как настроить насос?"}]}
    doc = parse(json.dumps(llm_log, ensure_ascii=False).encode(), "chat-log.json")
    assert doc.conversation is None and "Как настроить насос?" in doc.sections[0].text


# --- WhatsApp and chat logs ------------------------------------------------------------------------


def chat_messages(text: str, name: str = "chat.txt") -> list[tuple[str, str, str]]:
    return [(m.sender, m.sent_at.isoformat() if m.sent_at else "", m.text) for m in messages_of(text.encode(), name)]


def test_whatsapp_android_russian() -> None:
    text = (
        "15.03.2024, 10:00 - Сообщения и звонки защищены сквозным шифрованием.\n"
        "15.03.2024, 10:02 - Пётр Петров: Предлагаю перенести срок\nна 1 апреля.\n"
        "15.03.2024, 10:05 - Анна: <Без медиафайлов>\n"
        "16.03.2024, 09:00 - Анна: Согласна <Сообщение изменено>\n"
        "16.03.2024, 09:01 - Пётр Петров добавил(а) Ивана\n"
    )
    assert chat_messages(text, "WhatsApp Chat with Проект.txt") == [
        ("Пётр Петров", "2024-03-15T10:02:00+00:00", "Предлагаю перенести срок\nна 1 апреля."),
        ("Анна", "2024-03-16T09:00:00+00:00", "Согласна"),
    ]
    assert parse(text.encode(), "WhatsApp Chat with Проект.txt").title == "Проект"


def test_whatsapp_english_12_hour_clock_is_month_first() -> None:
    text = (
        "3/4/24, 9:15\u202fPM - Peter: First\n"
        "3/4/24, 10:00\u202fPM - Anna: <Media omitted>\n"
        "3/14/24, 12:05\u202fAM - Anna: Second\n"
    )
    assert chat_messages(text) == [
        ("Peter", "2024-03-04T21:15:00+00:00", "First"),
        ("Anna", "2024-03-14T00:05:00+00:00", "Second"),
    ]


def test_whatsapp_ios_bracketed_with_seconds_and_invisible_marks() -> None:
    text = (
        "[15.03.24, 10:02:33] Проект: \u200eСообщения и звонки защищены сквозным шифрованием.\n"
        "[15.03.24, 10:02:40] Пётр: Привет\n"
        "[15.03.24, 10:03:00] Анна: \u200eизображение отсутствует\n"
        "[15.03.24, 10:04:00] Анна: Вторая строка\nи третья\n"
    )
    got = chat_messages(text, "_chat.txt")
    assert got[-2:] == [("Пётр", "2024-03-15T10:02:40+00:00", "Привет"),
                        ("Анна", "2024-03-15T10:04:00+00:00", "Вторая строка\nи третья")]  # fmt: skip


def test_plain_chat_log_with_the_name_above_the_text() -> None:
    text = "[15.03.2024 10:02] Пётр Петров\nПредлагаю\nперенести\n[15.03.2024 10:05] Анна: да\n"
    doc = parse(text.encode(), "log.txt")
    assert doc.conversation is not None and doc.conversation.format == "chatlog"
    assert chat_messages(text, "log.txt") == [
        ("Пётр Петров", "2024-03-15T10:02:00+00:00", "Предлагаю\nперенести"),
        ("Анна", "2024-03-15T10:05:00+00:00", "да"),
    ]


def test_times_without_a_zone_take_the_configured_one() -> None:
    doc = parse("15.03.2024, 10:02 - Пётр: привет\n15.03.2024, 10:03 - Анна: да\n".encode(), "c.txt",
                default_tz=MSK)  # fmt: skip
    assert doc.conversation.conversations[0].messages[0].sent_at == datetime(2024, 3, 15, 7, 2, tzinfo=UTC)  # type: ignore[union-attr]


def test_prose_with_a_date_is_not_a_chat() -> None:
    doc = parse("Протокол совещания\n15.03.2024, 10:02 - начало.\nОбсудили бюджет.\nРешили всё.\n".encode(), "p.txt")
    assert doc.conversation is None


def test_a_mail_saved_as_txt_is_recognised_by_content() -> None:
    raw = mail({"From": "a@x.ru", "Subject": "Тема", "Date": "Fri, 15 Mar 2024 10:00:00 +0000"}, "Текст".encode())
    doc = parse(raw, "saved.txt")
    assert doc.conversation is not None and doc.conversation.format == "eml"


# --- chunks of whole messages ----------------------------------------------------------------------


def conversation(n: int, *, day_every: int = 1000, words_each: int = 5) -> Conversation:
    start = datetime(2024, 3, 15, 9, 0, tzinfo=UTC)
    msgs = [
        Message(str(i), ["Пётр Петров", "Анна Смирнова"][i % 2],
                start + timedelta(days=i // day_every, minutes=i), " ".join(["слово"] * (words_each - 1) + [f"м{i}"]),
                sender_address="petrov@corp.ru" if i % 2 == 0 else None)
        for i in range(n)
    ]  # fmt: skip
    return Conversation("chat", "Проект", msgs)


def test_chunks_hold_whole_messages_with_sender_and_time() -> None:
    chunks = chunk_conversation(conversation(10), words, max_tokens=40, first_index=0)
    held = [m["id"] for c in chunks for m in c.meta["messages"]]  # type: ignore[index]
    assert held == [str(i) for i in range(10)]  # every message once, in order
    assert all(c.tokens <= 40 for c in chunks) and len(chunks) > 1
    first = chunks[0]
    assert first.text.startswith("Чат «Проект»\n[15 марта 2024, 09:00] Пётр Петров: слово")
    assert first.meta is not None and first.meta["chat"] == "Проект" and first.meta["thread"] is None
    assert "петров" in first.meta["participant_keys"] and "petrov@corp.ru" in first.meta["participant_keys"]
    assert first.meta["sent_first"] == datetime(2024, 3, 15, 9, 0, tzinfo=UTC).timestamp()


def test_a_new_day_starts_a_new_chunk() -> None:
    chunks = chunk_conversation(conversation(6, day_every=3), words, max_tokens=500, first_index=0)
    assert [[m["id"] for m in c.meta["messages"]] for c in chunks] == [["0", "1", "2"], ["3", "4", "5"]]  # type: ignore[index]


def test_a_long_message_is_split_under_its_own_header() -> None:
    conv = conversation(3, words_each=100)
    chunks = chunk_conversation(conv, words, max_tokens=40, first_index=0)
    parts = [c for c in chunks if c.meta and c.meta["messages"][0]["id"] == "1"]
    assert len(parts) >= 3 and all(c.tokens <= 40 for c in chunks)
    assert all(f"часть {i}/{len(parts)}" in c.text.split("\n")[1] for i, c in enumerate(parts, start=1))
    assert "м1" in parts[-1].text


def test_a_grown_export_keeps_every_chunk_but_the_last_days() -> None:
    before = chunk_conversation(conversation(40, day_every=8), words, max_tokens=40, first_index=0)
    after = chunk_conversation(conversation(43, day_every=8), words, max_tokens=40, first_index=0)
    old, new = {c.text for c in before}, {c.text for c in after}
    assert len(old - new) <= 1  # only the last day's last chunk changed
    assert len(new - old) <= 2


def test_english_chats_get_english_dates_and_participant_keys() -> None:
    conv = Conversation("thread", "Budget", [Message("a", "Peter Walker", datetime(2024, 3, 15, 10, 2, tzinfo=UTC),
                                                     "Let us move it.", recipients=["Anna Hughes"])])  # fmt: skip
    (chunk,) = chunk_conversation(conv, words, max_tokens=100, first_index=0)
    assert chunk.text == 'Mail thread "Budget"\n[15 March 2024, 10:02] Peter Walker (to: Anna Hughes): Let us move it.'
    assert chunk.meta is not None and chunk.meta["participants"] == ["Peter Walker", "Anna Hughes"]
    keys = participant_keys("Пётр  Петров", "P.Petrov@Corp.ru")
    assert keys == ["p.petrov", "p.petrov@corp.ru", "петр", "петр петров", "петров"]
    assert normalized_key(" Пётр   ПЕТРОВ ") == "петр петров"
