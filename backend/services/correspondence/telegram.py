"""Telegram Desktop's JSON export (`result.json`): one chat, or all chats of an account.

Text arrives as a string or as a list of plain strings and entity objects (bold, links, mentions);
replies, forwards and edits are kept as message fields; service messages (joins, pins, calls) carry no
one's words and are left out; a media message keeps its caption and says what the media was. A file cut
off mid-write (an interrupted export or copy) still yields every message before the cut.
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import PurePosixPath
from typing import Any

from backend.services.correspondence.model import Conversation, ConversationDocument, Message

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
    doc = ConversationDocument("telegram", PurePosixPath(name).stem, [])
    try:
        data = json.loads(text)
        chats = _chats(data)
    except json.JSONDecodeError as exc:
        chats = _salvage(text)
        read = sum(len(c.get("messages", [])) for c in chats)
        doc.warnings.append(
            f"the file is cut off or damaged at line {exc.lineno}, column {exc.colno} ({exc.msg}); "
            f"the {read} messages before that point were read, the rest is missing: export the chat again"
        )
    for chat in chats:
        title = str(chat.get("name") or "(unnamed chat)")
        messages = []
        for raw in chat.get("messages") or []:
            message = _message(raw, title, doc, default_tz) if isinstance(raw, dict) else None
            if message is not None:
                messages.append(message)
        if messages:
            doc.conversations.append(Conversation("chat", title, messages))
    if len(doc.conversations) == 1:
        doc.title = doc.conversations[0].title
    return doc


def _chats(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, dict):
        return []
    if isinstance(data.get("messages"), list):
        return [data]
    chats: list[dict[str, Any]] = []
    for key in ("chats", "left_chats"):
        section = data.get(key)
        if isinstance(section, dict) and isinstance(section.get("list"), list):
            chats.extend(c for c in section["list"] if isinstance(c, dict))
    return chats


def _salvage(text: str) -> list[dict[str, Any]]:
    """Every complete message object of every chat, up to where the file breaks off."""
    decoder = json.JSONDecoder()
    chats = []
    for found in re.finditer(r'"messages"\s*:\s*\[', text):
        names = re.findall(r'"name"\s*:\s*("(?:[^"\\]|\\.)*"|null)', text[max(0, found.start() - 4000) : found.start()])
        name = json.loads(names[-1]) if names else None
        messages = []
        pos = found.end()
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(text) or text[pos] != "{":
                break
            try:
                obj, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                break
            messages.append(obj)
        chats.append({"name": name, "messages": messages})
    return chats


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
