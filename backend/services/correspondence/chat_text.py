"""Chats exported as text: WhatsApp (Android and iOS, Russian and English locales, 12/24-hour clocks)
and plain logs of the `[dd.mm.yyyy hh:mm] Name: text` kind.

A line that starts with a date and time begins a message; the lines after it, up to the next such line,
continue it. A line with a date but no "Name:" is a system line (encryption notice, someone joined) and
is left out, except in a plain log, where `[date time] Name` may stand alone above the message text.
Whether 03/04 is the 3rd of April or the 4th of March is decided once per file, from the dates in it.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from pathlib import PurePosixPath
from typing import Literal

from backend.services.correspondence.model import Conversation, ConversationDocument, Message

_DATE = r"(?P<date>\d{1,4}[./-]\d{1,2}[./-]\d{2,4})"
_TIME = r"(?P<time>\d{1,2}:\d{2}(?::\d{2})?)(?:[\s\u202f\u00a0]*(?P<ampm>[AaPp]\.?\s?[Mm]\.?))?"
_ANDROID = re.compile(rf"^{_DATE},?\s{_TIME}\s[-–]\s(?P<rest>.*)$")
_BRACKETED = re.compile(rf"^\[{_DATE},?\s{_TIME}\]\s?(?P<rest>.*)$")
_INVISIBLE = str.maketrans("", "", "\u200e\u200f\u202a\u202c\ufeff")

# What WhatsApp writes instead of media, deleted and edited messages, in English and Russian.
_PLACEHOLDER = re.compile(
    r"^(<?(media omitted|без медиафайлов|медиафайл отсутствует|медиа пропущено)>?|"
    r"(image|video|audio|sticker|gif|document|contact card) omitted|"
    r"(изображение|видео|аудио|стикер|gif|документ|карточка контакта) (отсутствует|пропущено)|"
    r"<attached: [^>]*>|null|this message was deleted|you deleted this message|"
    r"(данное|это) сообщение (было )?удалено|вы удалили (данное|это) сообщение)$",
    re.IGNORECASE,
)
_EDITED = re.compile(r"\s*<(this message was edited|сообщение изменено|изменено)>\s*$", re.IGNORECASE)


def looks_like_chat_text(text: str) -> bool:
    lines = [line.translate(_INVISIBLE) for line in text[:20000].split("\n") if line.strip()][:30]
    hits = sum(1 for line in lines if _ANDROID.match(line) or _BRACKETED.match(line))
    return hits >= 2 and hits >= len(lines) // 3


def parse_chat_text(text: str, name: str, default_tz: tzinfo) -> ConversationDocument:
    rows: list[tuple[re.Match[str], list[str], int]] = []  # header match, continuation lines, line number
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.translate(_INVISIBLE)
        match = _ANDROID.match(line) or _BRACKETED.match(line)
        if match:
            rows.append((match, [], lineno))
        elif rows:
            rows[-1][1].append(line)
    bracketed = sum(1 for m, _, _ in rows if m.re is _BRACKETED) > len(rows) // 2
    kind: Literal["whatsapp", "chatlog"] = "chatlog"
    if any("," in m.group(0)[:25] for m, _, _ in rows[:50]) or not bracketed:
        kind = "whatsapp"
    day_first = _day_first([m.group("date") for m, _, _ in rows], any(m.group("ampm") for m, _, _ in rows))
    doc = ConversationDocument(kind, _title(name), [])
    messages: list[Message] = []
    for match, more, lineno in rows:
        rest = match.group("rest")
        sender, sep, first = rest.partition(": ")
        if not sep and rest.endswith(":"):
            sender, sep, first = rest[:-1], ":", ""
        if not sep:
            if kind == "chatlog" and more and rest.strip():
                sender, first = rest, ""  # "[date time] Name" above the text
            else:
                continue  # a system line
        body = "\n".join([first, *more]).strip()
        edited = bool(_EDITED.search(body))
        body = _EDITED.sub("", body).strip()
        if not body or _PLACEHOLDER.match(body):
            continue
        sent_at = _datetime(match, day_first, default_tz)
        if sent_at is None:
            doc.warnings.append(f"line {lineno}: the date {match.group('date')} {match.group('time')} does not parse")
        messages.append(Message(str(lineno), sender.strip(), sent_at, body, edited=edited))
    if messages:
        doc.conversations.append(Conversation("chat", doc.title, messages))
    return doc


def _title(name: str) -> str:
    stem = PurePosixPath(name).stem
    for prefix in ("WhatsApp Chat with ", "WhatsApp Chat - ", "Чат WhatsApp с ", "Чат WhatsApp - "):
        if stem.startswith(prefix):
            return stem[len(prefix) :]
    return stem


def _day_first(dates: list[str], twelve_hour: bool) -> bool:
    """Whether a/b/y dates are day-first: a first field over 12 says yes, a second one over 12 says no;
    otherwise a dotted date is day-first and a slashed one with AM/PM (US English) is not."""
    for date in dates:
        a, b, _ = re.split(r"[./-]", date)
        if len(a) == 4:
            continue
        if int(a) > 12:
            return True
        if int(b) > 12:
            return False
    return not (twelve_hour and any("/" in d for d in dates))


def _datetime(match: re.Match[str], day_first: bool, default_tz: tzinfo) -> datetime | None:
    a, b, c = (int(x) for x in re.split(r"[./-]", match.group("date")))
    if a > 999:
        year, month, day = a, b, c
    else:
        day, month = (a, b) if day_first else (b, a)
        year = c + 2000 if c < 100 else c
    parts = [int(x) for x in match.group("time").split(":")]
    hour, minute, second = parts[0], parts[1], parts[2] if len(parts) > 2 else 0
    ampm = (match.group("ampm") or "").lower().replace(".", "").replace(" ", "")
    if ampm == "pm" and hour < 12:
        hour += 12
    elif ampm == "am" and hour == 12:
        hour = 0
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=default_tz)
    except ValueError:
        return None
