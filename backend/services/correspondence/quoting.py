"""A mail body without the history it quotes, so that each message's own text is indexed once.

Recognised: `>` lines; attribution lines ("On ... wrote:", "... писал(а):", "... написал:"), also when a
client wrapped them over two lines; forwarded/original-message separators; Outlook's header blocks
("From: / Sent: / To: / Subject:" and the Russian "От: / Отправлено: / Кому: / Тема:"); the signature
after "-- ". A top-posted reply keeps what is above the quoted history; an inline reply keeps the
reader's own lines between the quotes.
"""

from __future__ import annotations

import re

_ATTRIBUTION = re.compile(
    r"(\bwrote|\bнаписал[аи]?|\bписал(\(а\)|а)?|\bschrieb|\ba écrit)\s*:\s*$",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(
    r"^\s*(-{2,}\s*(original message|forwarded message|исходное сообщение|пересылаемое сообщение|"
    r"пересланное сообщение)\s*-{2,}|_{10,})\s*$",
    re.IGNORECASE,
)
_OUTLOOK_FROM = re.compile(r"^\s*\*?(from|от|отправитель)\s*:\*?\s+\S", re.IGNORECASE)
_OUTLOOK_NEXT = re.compile(r"^\s*\*?(sent|date|to|subject|cc|отправлено|дата|кому|тема|копия)\s*:\*?", re.IGNORECASE)
_SIGNATURE = re.compile(r"^-- ?$")


def own_text(body: str) -> str:
    lines = body.split("\n")
    kept: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _SIGNATURE.match(line) or _SEPARATOR.match(line) or _outlook_block(lines, i):
            break  # everything below is a signature or forwarded/quoted history
        if line.lstrip().startswith(">"):
            i += 1
            continue
        attribution = _attribution_at(lines, i)
        if attribution:
            following = _next_text(lines, i + attribution)
            if following is None or lines[following].lstrip().startswith(">"):
                i += attribution  # an inline or bottom quote follows: drop only the attribution
                continue
            break  # history pasted without `>` marks follows: nothing below is this message's
        kept.append(line)
        i += 1
    return "\n".join(kept).strip()


def _attribution_at(lines: list[str], i: int) -> int:
    """Lines (1 or 2) of an attribution starting at `i`, 0 when there is none."""
    line = lines[i].strip()
    if not line or line.startswith(">"):
        return 0
    if _ATTRIBUTION.search(line) and len(line) < 300:
        return 1
    if i + 1 < len(lines):
        joined = f"{line} {lines[i + 1].strip()}"
        if _ATTRIBUTION.search(joined) and len(joined) < 300:
            # "On Mon, 15 Mar 2024 at 10:02, Peter Petrov <p@x.ru>\nwrote:" as mail clients wrap it
            return 2 if _looks_like_attribution_start(line) else 0
    return 0


def _looks_like_attribution_start(line: str) -> bool:
    return bool(re.match(r"^(on|le|am|\d{1,2}[./ ]|[а-яё]+,? \d|\d{4}-)", line, re.IGNORECASE)) or "@" in line


def _next_text(lines: list[str], i: int) -> int | None:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i if i < len(lines) else None


def _outlook_block(lines: list[str], i: int) -> bool:
    """'From: ...' followed within three lines by 'Sent:' / 'To:' / 'Subject:' (or their Russian names)."""
    if not _OUTLOOK_FROM.match(lines[i]):
        return False
    following = [line for line in lines[i + 1 : i + 5] if line.strip()]
    return sum(1 for line in following if _OUTLOOK_NEXT.match(line)) >= 2
