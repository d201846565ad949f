"""Telegram Desktop's JSON export (`result.json`): one chat, or all chats of an account.

Text arrives as a string or as a list of plain strings and entity objects (bold, links, mentions);
replies, forwards and edits are kept as message fields; service messages (joins, pins, calls) carry no
one's words and are left out; a media message keeps its caption and says what the media was. A file cut
off mid-write (an interrupted export or copy) still yields every message before the cut. Message
objects are decoded one at a time as they are chunked: a 100 MB export never becomes a tree of
Python objects (docs/conversations.md has the memory it takes).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import PurePosixPath
from typing import Any

from backend.services.correspondence.model import Conversation, ConversationDocument, ConversationPart, Message
from backend.services.text_analysis import is_cyrillic

_HEAD = re.compile(r'"messages"\s*:\s*\[\s*[{\]]|"chats"\s*:\s*\{|Here is the data you requested')
# What only Telegram writes: other JSON with a "messages" list (an LLM chat log, an API dump) is not a chat.
_TELEGRAM = re.compile(
    r'"date_unixtime"\s*:|"from_id"\s*:|Here is the data you requested|'
    r'"type"\s*:\s*"(personal_chat|private_group|private_supergroup|public_supergroup|public_channel|'
    r'private_channel|saved_messages|bot_chat)"'
)
_MEDIA = {
    "photo": "photo",
    "voice_message": "voice message",
    "video_message": "video message",
    "video_file": "video",
    "audio_file": "audio",
    "sticker": "sticker",
    "animation": "GIF",
}


def looks_like_telegram(head: str) -> bool:
    return head.lstrip().startswith("{") and bool(_HEAD.search(head)) and bool(_TELEGRAM.search(head))


def parse_telegram(text: str, name: str, default_tz: tzinfo = UTC) -> ConversationDocument:
    """The export's chats, read one message object at a time while they are chunked (`stream`): the
    file's text is held, its objects never all at once. A long chat is handed on in parts of about
    PART_MESSAGES messages, each ending with a calendar day (chunks start afresh each day, so the parts
    chunk exactly as the whole chat would)."""
    doc = ConversationDocument("telegram", PurePosixPath(name).stem, [])
    chats = _chat_starts(text)
    doc.streamed_messages = len(_MESSAGE.findall(text))
    if len(chats) == 1 and chats[0][0]:
        doc.title = str(chats[0][0])
    doc.stream = lambda: _stream(text, chats, doc, default_tz)
    return doc


PART_MESSAGES = 2000
# A quote inside a JSON string is escaped, so none of these can match inside a message's text.
_MESSAGE = re.compile(r'"type"\s*:\s*"message"')
_MESSAGES = re.compile(r'"messages"\s*:\s*\[')
_NAME = re.compile(r'"name"\s*:\s*("(?:[^"\\]|\\.)*"|null)')
_NEXT_MESSAGE = re.compile(r'\{\s*"id"\s*:\s*-?\d+\s*,\s*"type"\s*:')  # how Telegram begins a message object


def _chat_starts(text: str) -> list[tuple[str | None, int]]:
    """(chat name, offset of its first message) of every chat: its "messages" array, and the last "name"
    written between the previous chat's array and this one."""
    starts = []
    previous = 0
    for found in _MESSAGES.finditer(text):
        names = _NAME.findall(text, max(previous, found.start() - 4000), found.start())
        name = None
        with contextlib.suppress(ValueError):
            name = json.loads(names[-1]) if names else None
        starts.append((name, found.end()))
        previous = found.end()
    return starts


def _stream(text: str, chats: list[tuple[str | None, int]], doc: ConversationDocument, default_tz: tzinfo
            ) -> Iterator[ConversationPart]:  # fmt: skip
    decoder = json.JSONDecoder()
    for i, (name, start) in enumerate(chats):
        end = chats[i + 1][1] if i + 1 < len(chats) else len(text)
        title = str(name or "(unnamed chat)")
        messages: list[Message] = []
        russian: bool | None = None
        pos = start
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos < len(text) and text[pos] == "]":
                break
            try:
                if pos >= len(text) or text[pos] != "{":
                    raise json.JSONDecodeError("a message object expected", text, pos)
                raw, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                resume = _NEXT_MESSAGE.search(text, pos + 1, end)
                if resume is None:
                    doc.warnings.append(
                        f"the file is cut off or damaged at line {exc.lineno}, column {exc.colno} ({exc.msg}); "
                        f"the messages of chat {title!r} before that point were read, the rest of it is missing: "
                        "export the chat again"
                    )
                    break
                doc.warnings.append(
                    f"chat {title!r}: the message at line {exc.lineno}, column {exc.colno} is damaged ({exc.msg}) "
                    f"and was skipped; reading went on at line {text.count(chr(10), 0, resume.start()) + 1}"
                )
                pos = resume.start()
                continue
            message = _message(raw, title, doc, default_tz) if isinstance(raw, dict) else None
            if message is None:
                continue
            last = messages[-1].sent_at if messages else None
            if len(messages) >= PART_MESSAGES and last and message.sent_at and last.date() != message.sent_at.date():
                russian = _language(messages, russian)
                yield Conversation("chat", title, messages, russian=russian), []
                messages = []
            messages.append(message)
        if messages:
            yield Conversation("chat", title, messages, russian=_language(messages, russian)), []


def _language(messages: list[Message], russian: bool | None) -> bool:
    """Whether a chat is Russian, judged from its first part: every part writes dates alike."""
    return russian if russian is not None else is_cyrillic(" ".join(m.text[:200] for m in messages[:50]))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for item in value:
            if isinstance(item, str):
                parts.append(item)
            elif isinstance(item, dict):
                piece = str(item.get("text", ""))
                href = item.get("href")
                parts.append(f"{piece} ({href})" if href and href != piece else piece)
        return "".join(parts)
    return ""


def _message(raw: dict[str, Any], chat: str, doc: ConversationDocument, default_tz: tzinfo) -> Message | None:
    if raw.get("type", "message") != "message":
        return None  # service message: a join, a pin, a call, a title change
    number = str(raw.get("id", ""))
    text = _text(raw.get("text")).strip()
    media = _media(raw)
    if not text and (media is None or ":" not in media):
        return None  # a bare photo, sticker or voice message: nothing to read or ask about
    if media:
        text = f"[{media}] {text}".strip()
    sent_at = _date(raw, default_tz)
    if sent_at is None:
        doc.warnings.append(f"chat {chat!r}, message {number}: its date {raw.get('date')!r} does not parse")
    forwarded = raw.get("forwarded_from")
    reply = raw.get("reply_to_message_id")
    return Message(
        id=number or f"{chat}-{len(text)}",
        sender=str(raw.get("from") or raw.get("actor") or "Deleted Account"),
        sender_address=str(raw["from_id"]) if raw.get("from_id") else None,
        sent_at=sent_at,
        text=text,
        reply_to=str(reply) if reply else None,
        forwarded_from=str(forwarded) if forwarded else None,
        edited=bool(raw.get("edited") or raw.get("edited_unixtime")),
    )


def _media(raw: dict[str, Any]) -> str | None:
    if raw.get("photo"):
        return "photo"
    kind = raw.get("media_type")
    if kind:
        label = _MEDIA.get(str(kind), str(kind).replace("_", " "))
        name = raw.get("file_name")
        return f"{label}: {name}" if name else label
    if raw.get("file"):
        name = raw.get("file_name") or PurePosixPath(str(raw["file"])).name
        return f"file: {name}"
    if isinstance(raw.get("poll"), dict):
        answers = ", ".join(str(a.get("text", "")) for a in raw["poll"].get("answers", []) if isinstance(a, dict))
        return f"poll: {raw['poll'].get('question', '')} ({answers})"
    return None


def _date(raw: dict[str, Any], default_tz: tzinfo) -> datetime | None:
    """The instant from date_unixtime, shown at the exporting computer's own offset (from `date`)."""
    local: datetime | None = None
    with contextlib.suppress(ValueError):
        local = datetime.fromisoformat(str(raw.get("date")))
    try:
        instant = datetime.fromtimestamp(int(raw["date_unixtime"]), tz=UTC)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return local.replace(tzinfo=default_tz) if local and local.tzinfo is None else local
    if local is None or local.tzinfo is not None:
        return instant
    offset = round((local - instant.replace(tzinfo=None)).total_seconds() / 900) * 900
    if abs(offset) > 14 * 3600:
        return instant
    return instant.astimezone(timezone(timedelta(seconds=offset)))
