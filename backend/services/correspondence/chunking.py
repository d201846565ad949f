"""Chunks made of whole messages: consecutive messages of one chat or thread, packed up to the token
budget, a new chunk at each new calendar day; a message is split only when it alone exceeds the budget.

Each message is one line, "[15 March 2024, 10:02] Sender: text" (in Russian for a Russian chat), so the
embedder, the lexical side and the answering model all see who wrote what and when. On the same line,
a small model attributes a statement to its sender more often than with the sender on a line above
(docs/conversations.md: "who" answers 13 of 16 against 9 of 16). Packing starts afresh every day, so a
grown export changes only its last day's chunks: the rest keep their text, and ingestion reuses their
vectors instead of embedding them again.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from backend.services.chunking import Chunk, Tokenize, chunk_sections
from backend.services.correspondence.model import Attachment, Conversation, ConversationDocument, Message
from backend.services.parsing import ParseError, Section, parse
from backend.services.text_analysis import is_cyrillic

_MONTHS_RU = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября",
              "ноября", "декабря")  # fmt: skip
_MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December")  # fmt: skip


def normalized_key(value: str) -> str:
    """How names, chats and threads are compared in filters: case, ё/е and spacing do not matter."""
    text = unicodedata.normalize("NFKC", value).casefold().replace("ё", "е")
    return " ".join(text.replace("<", " ").replace(">", " ").replace('"', " ").split())


def participant_keys(name: str, address: str | None = None) -> list[str]:
    """What a participant filter may name: the whole name, each word of it, the address and its local part."""
    keys = {normalized_key(name)}
    keys.update(w for w in normalized_key(name).replace(",", " ").split() if len(w) > 1)
    if address:
        addr = normalized_key(address)
        keys.update({addr, addr.split("@")[0]})
    return sorted(k for k in keys if k)


def format_time(when: datetime | None, russian: bool) -> str:
    if when is None:
        return "дата неизвестна" if russian else "date unknown"
    months = _MONTHS_RU if russian else _MONTHS_EN
    return f"{when.day} {months[when.month - 1]} {when.year}, {when:%H:%M}"


def conversation_chunks(
    doc: ConversationDocument, tokenize: Tokenize, *, max_tokens: int, overlap_tokens: int
) -> Iterator[list[Chunk]]:
    """The chunks of each chat or thread of `doc` in turn, then those of its messages' attachments (under
    the message's sender and time), numbered on across groups. An attachment's chunks name it in their
    meta (`attachment`: its name, unique within its message; `attachment_message`, `_size`, `_sha256`):
    ingestion makes each a document of its own. An attachment that cannot be read is reported in
    doc.warnings and left out. Lazy: a mailbox is read one thread at a time."""
    index = 0
    for conv, attachments in doc.parts():
        chunks = chunk_conversation(conv, tokenize, max_tokens, index)
        by_id = {m.id: m for m in conv.messages}
        names: dict[tuple[str, str], int] = {}
        for attachment in attachments:
            key = (attachment.message_id, attachment.name)
            names[key] = names.get(key, 0) + 1
            name = attachment.name if names[key] == 1 else _numbered(attachment.name, names[key])
            chunks.extend(_attachment_chunks(attachment, name, conv, by_id.get(attachment.message_id), doc, tokenize,
                                             max_tokens, overlap_tokens, index + len(chunks)))  # fmt: skip
        index += len(chunks)
        if chunks:
            yield chunks


def chunk_conversations(
    doc: ConversationDocument, tokenize: Tokenize, *, max_tokens: int, overlap_tokens: int
) -> list[Chunk]:
    """All chunks of `doc` at once (tests, small exports)."""
    groups = conversation_chunks(doc, tokenize, max_tokens=max_tokens, overlap_tokens=overlap_tokens)
    return [chunk for group in groups for chunk in group]


def _numbered(name: str, n: int) -> str:
    """report.pdf, report (2).pdf: two attachments of one message with the same name stay two documents."""
    stem, dot, ext = name.rpartition(".")
    return f"{stem} ({n}).{ext}" if dot and stem else f"{name} ({n})"


def _attachment_chunks(
    attachment: Attachment,
    name: str,
    conv: Conversation,
    message: Message | None,
    doc: ConversationDocument,
    tokenize: Tokenize,
    max_tokens: int,
    overlap_tokens: int,
    first_index: int,
) -> list[Chunk]:
    try:
        parsed = parse(attachment.data, attachment.name)
    except ParseError as exc:
        doc.warnings.append(f"attachment {attachment.name!r} of message {attachment.message_id}: skipped, {exc}")
        return []
    except Exception as exc:  # a parser library choking on a hostile attachment
        doc.warnings.append(f"attachment {attachment.name!r} of message {attachment.message_id}: skipped, "
                            f"cannot parse ({type(exc).__name__})")  # fmt: skip
        return []
    russian = is_cyrillic(" ".join(s.text[:200] for s in parsed.sections[:5]))
    if message is not None:
        what = "вложение" if russian else "attachment"
        heading = f"{what} {attachment.name}, {_message_header(message, russian)[:-1]}"
    else:
        heading = attachment.name
    chunks = chunk_sections([Section(s.text, heading, s.page) for s in parsed.sections if s.text.strip()], tokenize,
                            max_tokens=max_tokens, overlap_tokens=overlap_tokens)  # fmt: skip
    meta = _meta(conv, [message]) if message else {}
    meta.update(attachment=name, attachment_message=attachment.message_id, attachment_size=len(attachment.data),
                attachment_sha256=hashlib.sha256(attachment.data).hexdigest())  # fmt: skip
    for i, chunk in enumerate(chunks):
        chunk.index = first_index + i
        chunk.meta = dict(meta)
    return chunks


def chunk_conversation(conv: Conversation, tokenize: Tokenize, max_tokens: int, first_index: int) -> list[Chunk]:
    russian = conv.russian
    if russian is None:
        russian = is_cyrillic(" ".join(m.text[:200] for m in conv.messages[:50]))
    title_line = _title_line(conv, russian)
    budget = max(16, max_tokens - len(tokenize(title_line)))
    chunks: list[Chunk] = []
    group: list[tuple[Message, str]] = []
    size = 0
    day = None

    def emit(pieces: list[tuple[Message, str]]) -> None:
        text = title_line + "\n" + "\n\n".join(block for _, block in pieces)
        chunks.append(Chunk(first_index + len(chunks), text, conv.title, None, len(tokenize(text)),
                            meta=_meta(conv, [m for m, _ in pieces])))  # fmt: skip

    for message in conv.messages:
        header = _message_header(message, russian)
        block = f"{header} {message.text}"
        tokens = len(tokenize(block))
        message_day = message.sent_at.date() if message.sent_at else None
        if group and (size + tokens > budget or message_day != day):
            emit(group)
            group, size = [], 0
        day = message_day
        if tokens <= budget:
            group.append((message, block))
            size += tokens
            continue
        # One message longer than a chunk: its own chunks, each after the message's header.
        parts = list(_split(message.text, tokenize, budget - len(tokenize(header)) - 8))
        for i, part in enumerate(parts, start=1):
            emit([(message, f"{_message_header(message, russian, (i, len(parts)))} {part}")])
    if group:
        emit(group)
    return chunks


def _split(text: str, tokenize: Tokenize, budget: int) -> Iterator[str]:
    for chunk in chunk_sections([Section(text)], tokenize, max_tokens=max(budget, 16), overlap_tokens=0):
        yield chunk.text


def _title_line(conv: Conversation, russian: bool) -> str:
    if conv.kind == "thread":
        return f"Переписка «{conv.title}»" if russian else f'Mail thread "{conv.title}"'
    return f"Чат «{conv.title}»" if russian else f'Chat "{conv.title}"'


def _message_header(m: Message, russian: bool, part: tuple[int, int] | None = None) -> str:
    header = f"[{format_time(m.sent_at, russian)}] {m.sender}"
    notes = []
    if m.recipients:
        notes.append(("кому: " if russian else "to: ") + ", ".join(m.recipients[:5]))
    if m.forwarded_from:
        notes.append(("переслано от " if russian else "forwarded from ") + m.forwarded_from)
    if part:
        notes.append(f"{'часть' if russian else 'part'} {part[0]}/{part[1]}")
    return f"{header} ({'; '.join(notes)}):" if notes else f"{header}:"


def _meta(conv: Conversation, messages: list[Message]) -> dict[str, Any]:
    people: dict[str, str | None] = {}
    for m in messages:
        people.setdefault(m.sender, m.sender_address)
        for r in m.recipients:
            people.setdefault(r, None)
    keys = sorted({k for name, addr in people.items() for k in participant_keys(name, addr)})
    times = [m.timestamp for m in messages if m.timestamp is not None]
    return {
        "conversation": conv.kind,
        "chat": conv.title if conv.kind == "chat" else None,
        "thread": conv.title if conv.kind == "thread" else None,
        "conversation_key": normalized_key(conv.title),
        "participants": list(people),
        "participant_keys": keys,
        "sent_first": min(times) if times else None,
        "sent_last": max(times) if times else None,
        "messages": [{"id": m.id, "sender": m.sender, "sent_at": m.timestamp} for m in messages],
    }
