"""Mail: one .eml message or an mbox of many, read message by message, assembled into threads.

Headers are decoded from RFC 2047 (and from raw 8-bit cp1251/koi8-r, which old clients send); bodies
from quoted-printable/base64 in their declared charset, or the one the bytes really are when the
declaration is missing or wrong; HTML bodies become text. Threads follow Message-ID, In-Reply-To and
References; a message whose parent is not in the file joins the thread of the same subject.
"""

from __future__ import annotations

import base64
import email
import email.parser
import email.policy
import re
from collections.abc import Iterator
from datetime import datetime, tzinfo
from email.message import EmailMessage, MIMEPart
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import PurePosixPath

from backend.services.correspondence.model import (
    Attachment,
    Conversation,
    ConversationDocument,
    ConversationPart,
    Message,
)
from backend.services.correspondence.quoting import own_text
from backend.services.parsing import PARSERS, ParseError, decode_text, parse_html

# Mail clients prefix replies and forwards in many languages.
_SUBJECT_PREFIX = re.compile(r"^\s*((re|fwd?|aw|wg|sv|отв|ответ|пересл|пересылка|на)\s*(\[\d+\])?\s*:\s*)+", re.I)
_MBOX_FROM = re.compile(rb"^From \S*.*$")
# A separator exactly as mbox writers put it ("From sender Fri Mar 15 10:02:00 2024"): trusted even without
# the blank line before it, which some writers (and cut-and-pasted mailboxes) leave out.
_MBOX_FROM_STRICT = re.compile(
    rb"^From \S+ +(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2} "
    rb"\d{1,2}:\d{2}(:\d{2})? (\S+ )?\d{4}"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_eml(data: bytes, name: str, default_tz: tzinfo) -> ConversationDocument:
    doc = ConversationDocument("eml", PurePosixPath(name).stem, [])
    head = _read_message(data, 1, doc, default_tz, headers_only=True)
    message = _read_message(data, 1, doc, default_tz, doc.attachments) if head else None
    if message is not None:
        doc.conversations = _threads([message])
        doc.title = doc.conversations[0].title or doc.title
    return doc


def parse_mbox(data: bytes, name: str, default_tz: tzinfo) -> ConversationDocument:
    """Two passes, so that a mailbox of hundreds of megabytes never has all its text in memory: the
    headers of every message (threads need them all), then each thread's messages in full, one thread at
    a time, when the document is chunked."""
    doc = ConversationDocument("mbox", PurePosixPath(name).stem, [])
    heads: list[Message] = []
    where: dict[int, tuple[int, int, int]] = {}  # id(head) -> (message number, start, end)
    seen: set[str] = set()
    for n, (start, end) in enumerate(mbox_spans(data), start=1):
        head = _read_message(_unescape(data[start:end]), n, doc, default_tz, headers_only=True)
        if head is None:
            continue
        if head.id in seen:  # the same Message-ID twice (a copy, a broken client): keep both, apart
            head.id = f"{head.id}#{n}"
        seen.add(head.id)
        heads.append(head)
        where[id(head)] = (n, start, end)
    threads = _threads(heads)

    def read_threads() -> Iterator[ConversationPart]:
        for thread in threads:
            messages: list[Message] = []
            attachments: list[Attachment] = []
            for head in thread.messages:
                n, start, end = where[id(head)]
                full = _read_message(_unescape(data[start:end]), n, doc, default_tz, attachments)
                if full is not None:
                    full.id, full.reply_to = head.id, head.reply_to
                    messages.append(full)
            if messages:
                yield Conversation("thread", thread.title, messages), attachments

    doc.stream = read_threads
    doc.streamed_messages = len(heads)
    return doc


_MBOX_LINE = re.compile(rb"^From [^\n]*", re.MULTILINE)


def mbox_spans(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each message of an mbox, after its 'From ' separator line."""
    start: int | None = None
    for found in _MBOX_LINE.finditer(data):
        at = found.start()
        line = found.group(0).rstrip(b"\r")
        blank_before = at == 0 or data[max(0, at - 2) : at] == b"\n\n" or data[max(0, at - 4) : at] == b"\r\n\r\n"
        if not ((blank_before and _MBOX_FROM.match(line)) or _MBOX_FROM_STRICT.match(line)):
            continue
        if start is not None:
            yield start, at
        start = min(found.end() + 1, len(data))
    if start is not None:
        yield start, len(data)


def _unescape(raw: bytes) -> bytes:
    return re.sub(rb"(?m)^>(>*From )", rb"\1", raw)


def _read_message(
    raw: bytes,
    n: int,
    doc: ConversationDocument,
    default_tz: tzinfo,
    attachments: list[Attachment] | None = None,
    *,
    headers_only: bool = False,
) -> Message | None:
    """Message `n` of the file: its headers only (text empty; problems with them reported), or in full
    (its attachments added to `attachments`)."""
    try:
        if headers_only:
            msg = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(_encoded_headers(raw))
        else:
            msg = email.message_from_bytes(_encoded_headers(raw), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return _message(msg, n, doc, default_tz, attachments, headers_only=headers_only)
    except Exception as exc:  # one broken message must not cost the mailbox
        doc.warnings.append(f"message {n}: skipped, cannot be read ({type(exc).__name__}: {exc})")
        return None


_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+(?:[ \t]+[^\x00-\x7f]+)*")


def _encoded_headers(raw: bytes) -> bytes:
    """Raw 8-bit headers (old clients write them in cp1251 or koi8-r, new ones in UTF-8) rewritten as RFC 2047
    encoded words, which the parser decodes; it would otherwise turn every such letter into U+FFFD."""
    end = raw.find(b"\n\n")
    crlf = raw.find(b"\r\n\r\n")
    if crlf >= 0 and (end < 0 or crlf < end):
        end = crlf
    head = raw[: end if end >= 0 else len(raw)]
    if head.isascii():
        return raw
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = decode_text(head)
        except ParseError:
            return raw
    encoded = _NON_ASCII_RUN.sub(lambda m: f"=?utf-8?b?{base64.b64encode(m.group(0).encode()).decode()}?=", text)
    return encoded.encode("ascii", "replace") + raw[len(head) :]


def _header(msg: EmailMessage, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # a header the parser chokes on: its raw text is still better than nothing
        value = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), "")
    return " ".join(str(value or "").split())


def _addresses(msg: EmailMessage, *names: str) -> list[tuple[str, str]]:
    values = [_header(msg, n) for n in names]
    return [(real or addr, addr) for real, addr in getaddresses([v for v in values if v]) if real or addr]


def _message(
    msg: EmailMessage,
    n: int,
    doc: ConversationDocument,
    default_tz: tzinfo,
    attachments: list[Attachment] | None,
    *,
    headers_only: bool,
) -> Message | None:
    senders = _addresses(msg, "From")
    sender, address = senders[0] if senders else ("(unknown sender)", None)
    date = _header(msg, "Date")
    subject = _header(msg, "Subject")
    if not senders and not date and not subject:
        doc.warnings.append(f"message {n}: skipped, it has no From, Date or Subject header (damaged?)")
        return None
    sent_at = _date(date, default_tz)
    message_id = _CONTROL.sub("", _header(msg, "Message-ID")).strip("<> ") or f"message-{n}"
    text = ""
    if headers_only:  # the first pass reports header problems; the second reads the text
        if sent_at is None:
            problem = f"its Date header {date!r} does not parse" if date else "it has no Date header"
            doc.warnings.append(f"message {n} ({message_id}): {problem}; indexed without a time")
    else:
        text, found = _body(msg, message_id, n, doc)
        if attachments is not None:
            attachments.extend(found)
        if not text and not found and not subject:
            doc.warnings.append(f"message {n} ({message_id}): no text")
            return None
    references = re.findall(r"<([^<>\s]+)>", _header(msg, "References"))
    in_reply_to = re.findall(r"<([^<>\s]+)>", _header(msg, "In-Reply-To"))
    parent = (in_reply_to or references[-1:] or [None])[0]
    recipients = [name for name, _ in _addresses(msg, "To", "Cc")]
    return Message(
        id=message_id,
        sender=sender,
        sender_address=address or None,
        sent_at=sent_at,
        text=text,
        recipients=recipients,
        reply_to=parent,
        subject=subject,
    )


def _date(value: str, default_tz: tzinfo) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=default_tz)


def _body(msg: EmailMessage, message_id: str, n: int, doc: ConversationDocument) -> tuple[str, list[Attachment]]:
    if msg.get_content_type() == "message/rfc822":  # a message that only wraps another (forwarded whole)
        inner = msg.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], EmailMessage):
            return _body(inner[0], message_id, n, doc)
    body = msg.get_body(preferencelist=("plain", "html"))
    text = ""
    if body is not None:
        text = _part_text(body, n, doc)
        if body.get_content_subtype() == "html":
            text = "\n\n".join(s.text for s in parse_html(text.encode("utf-8"), "body.html").sections)
    attachments = []
    for part in msg.iter_attachments():
        filename = part.get_filename()
        if not filename or PurePosixPath(filename).suffix.lower() not in PARSERS:
            continue
        data = part.get_payload(decode=True)
        if isinstance(data, bytes) and data.strip():
            attachments.append(Attachment(filename, message_id, data))
    return own_text(text), attachments


def _part_text(part: MIMEPart, n: int, doc: ConversationDocument) -> str:
    """The part decoded by its declared charset, or by what its bytes are when that fails."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload())
    charset = (part.get_content_charset() or "").lower()
    if charset:
        try:
            return payload.decode(charset).replace("\r\n", "\n")
        except (LookupError, ValueError):  # unknown codec, bytes not in it, a NUL in the name
            doc.warnings.append(f"message {n}: declared charset {charset!r} is wrong or unknown; detected instead")
    try:
        return decode_text(payload)
    except ParseError:
        return payload.decode("utf-8", errors="replace")


def normalized_subject(subject: str | None) -> str:
    return " ".join(_SUBJECT_PREFIX.sub("", subject or "").split()).casefold()


def _threads(messages: list[Message]) -> list[Conversation]:
    """Group by reply headers (parent chains); a chain whose start is itself a reply (its parent is not in
    the file, or its subject says "Re:") joins the thread of the same subject."""
    by_id = {m.id: m for m in messages}

    def root(m: Message) -> Message:
        seen = {m.id}
        while m.reply_to and m.reply_to in by_id and m.reply_to not in seen:
            m = by_id[m.reply_to]
            seen.add(m.id)
        return m

    chains: dict[str, list[Message]] = {}
    for m in messages:
        chains.setdefault(root(m).id, []).append(m)
    groups: dict[str, list[Message]] = {}
    by_subject: dict[str, str] = {}
    for key in sorted(chains, key=lambda k: _when(by_id[k])):
        start = by_id[key]
        subject = normalized_subject(start.subject)
        is_reply = bool(start.reply_to) or bool(_SUBJECT_PREFIX.match(start.subject or ""))
        if subject and is_reply and subject in by_subject:
            key = by_subject[subject]
        elif subject:
            by_subject.setdefault(subject, key)
        groups.setdefault(key, []).extend(chains[start.id])
    threads = []
    for members in groups.values():
        members.sort(key=_when)
        title = _SUBJECT_PREFIX.sub("", members[0].subject or "").strip() or "(no subject)"
        threads.append(Conversation("thread", title, members))
    threads.sort(key=lambda c: _when(c.messages[0]))
    return threads


def _when(m: Message) -> tuple[bool, float]:
    return (m.timestamp is None, m.timestamp or 0.0)
