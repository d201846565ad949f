"""Conversations as documents: mail (.eml, mbox), Telegram's JSON export, WhatsApp and plain chat logs.

`detect_and_parse` recognises an export by its content (the extension only narrows the guess) and returns
its chats or threads of messages; `chunk_conversation` turns one into chunks of whole messages that
carry sender, time, participants and message ids. (Not to be confused with services/conversation.py,
which turns a chat with the service into a standalone question.)
"""

from __future__ import annotations

from datetime import tzinfo

from backend.services.correspondence.chat_text import looks_like_chat_text, parse_chat_text
from backend.services.correspondence.chunking import chunk_conversation, format_time, normalized_key, participant_keys
from backend.services.correspondence.mail import parse_eml, parse_mbox
from backend.services.correspondence.model import Attachment, Conversation, ConversationDocument, Message
from backend.services.correspondence.telegram import looks_like_telegram, parse_telegram

__all__ = ["Attachment", "Conversation", "ConversationDocument", "Message",
           "chunk_conversation", "detect_and_parse", "format_time", "looks_like_chat_text", "looks_like_telegram",
           "normalized_key", "parse_chat_text", "parse_eml", "parse_mbox", "parse_telegram",
           "participant_keys"]  # fmt: skip

_HEADER_NAMES = (b"from:", b"date:", b"subject:", b"message-id:", b"to:", b"received:", b"return-path:",
                 b"mime-version:", b"delivered-to:", b"x-")  # fmt: skip


def detect_and_parse(
    data: bytes, suffix: str, name: str, text: str | None, default_tz: tzinfo
) -> ConversationDocument | None:
    """The conversation in `data`, or None when it is not one (then the file is parsed as plain text).

    `text`: the file decoded, for the text-based formats (the caller decodes once)."""
    head = data[:4096].lstrip()
    if suffix in (".mbox", ".mbx", ".txt", "") and head.startswith(b"From ") and _has_headers(head.split(b"\n", 1)[-1]):
        return parse_mbox(data, name, default_tz)
    if suffix in (".eml", ".txt", "") and _has_headers(head):
        return parse_eml(data, name, default_tz)
    if suffix in (".eml", ".mbox", ".mbx"):
        return parse_eml(data, name, default_tz) if suffix == ".eml" else parse_mbox(data, name, default_tz)
    if text is None:
        return None
    if suffix == ".json" and looks_like_telegram(text[:65536]):
        return parse_telegram(text, name, default_tz)
    if suffix == ".txt" and looks_like_chat_text(text):
        return parse_chat_text(text, name, default_tz)
    return None


def _has_headers(head: bytes) -> bool:
    """RFC 822 headers: the first lines are `Name: value` (or folded), among them From and one more."""
    lines = head.split(b"\n\n", 1)[0].replace(b"\r", b"").split(b"\n")[:40]
    names = [line.split(b":", 1)[0].lower() + b":" for line in lines if line and not line[:1].isspace()]
    if not names or any(b" " in n for n in names[:3]):
        return False
    known = sum(1 for n in names if n.startswith(_HEADER_NAMES))
    return b"from:" in names and known >= 2
