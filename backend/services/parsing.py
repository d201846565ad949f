"""Turn a file's bytes into text sections (with headings and pages where known), one function per format."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from backend.services.correspondence import ConversationDocument


class ParseError(Exception):
    """The file cannot be turned into text; the message says why, for the ingestion report."""


@dataclass
class Section:
    text: str
    heading: str | None = None
    page: int | None = None


@dataclass
class ParsedDocument:
    title: str
    sections: list[Section]
    conversation: ConversationDocument | None = None  # mail, chat exports: messages instead of sections
    warnings: list[str] = field(default_factory=list)  # problems that cost part of the file, not all of it


# --- text decoding -----------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def decode_text(data: bytes) -> str:
    """Decode text of unknown encoding: BOMs, UTF-16 by byte pattern, UTF-8, Cyrillic code pages, detection."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _checked(data[len(bom) :].decode(encoding, errors="replace"))
    utf16 = _utf16_without_bom(data)
    if utf16:
        return _checked(data.decode(utf16, errors="replace"))
    nuls = data[:65536].count(b"\x00")
    if nuls > max(8, len(data[:65536]) // 100):
        raise ParseError("binary content (NUL bytes), not a text file")
    if nuls or b"\x00" in data:
        data = data.replace(b"\x00", b"")  # stray NULs (mail exports, broken editors) carry no text
    try:
        return _checked(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    cyrillic = _cyrillic_single_byte(data)
    if cyrillic is not None:
        return _checked(cyrillic)
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise ParseError("binary content or unknown text encoding")
    return _checked(str(best))


def _utf16_without_bom(data: bytes) -> str | None:
    """ASCII and Cyrillic in UTF-16 have a high byte of 0x00 or 0x04 in every other position."""
    sample = data[: 4096 - 4096 % 2] if len(data) >= 4096 else data[: len(data) - len(data) % 2]
    if len(sample) < 8:
        return None
    for encoding, high in (("utf-16-le", sample[1::2]), ("utf-16-be", sample[0::2])):
        if sum(b in (0x00, 0x04) for b in high) > 0.95 * len(high):
            return encoding
    return None


_CYR_LOWER = frozenset("абвгдеёжзийклмнопрстуфхцчшщъыьэюя")
_CYR = re.compile(r"[\u0400-\u04ff]")
_LATIN_NEXT_TO_CYRILLIC = re.compile(r"[A-Za-z][\u0400-\u04ff]|[\u0400-\u04ff][A-Za-z]")


def _cyrillic_single_byte(data: bytes) -> str | None:
    """Windows-1251, KOI8-R or DOS-866 Russian text: detectors often misread short samples as CJK.

    The right code page turns most non-ASCII bytes into lower-case Cyrillic letters (Russian prose
    is mostly lower-case) and never glues Cyrillic onto Latin letters inside a word.
    """
    best, best_score = None, 0.0
    for encoding in ("cp1251", "koi8_r", "cp866"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        non_ascii = [c for c in text if ord(c) > 127]
        if not non_ascii:
            return None
        cyrillic = len(_CYR.findall(text))
        if cyrillic and len(_LATIN_NEXT_TO_CYRILLIC.findall(text)) > 0.1 * cyrillic:
            continue  # e.g. French "café" read as cp1251: isolated Cyrillic inside Latin words
        score = sum(c in _CYR_LOWER for c in non_ascii) / len(non_ascii)
        if score > best_score:
            best, best_score = text, score
    return best if best_score >= 0.6 else None


def _checked(text: str) -> str:
    if len(_CONTROL.findall(text[:20000])) > max(8, len(text[:20000]) // 50):
        raise ParseError("binary content (control characters), not a text file")
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- formats -------------------------------------------------------------------------------------

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def parse_markdown(data: bytes, name: str) -> ParsedDocument:
    text = decode_text(data)
    sections: list[Section] = []
    heading: str | None = None
    title: str | None = None
    buf: list[str] = []
    in_code = False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        m = None if in_code else _MD_HEADING.match(line)
        if m:
            if buf:
                sections.append(Section("\n".join(buf), heading))
                buf = []
            heading = m.group(2)
            if title is None and len(m.group(1)) == 1:
                title = heading
            continue
        buf.append(line)
    if buf:
        sections.append(Section("\n".join(buf), heading))
    return ParsedDocument(title or _stem(name), sections)


def parse_text(data: bytes, name: str) -> ParsedDocument:
    return ParsedDocument(_stem(name), [Section(decode_text(data))])


def parse_pdf(data: bytes, name: str) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ParseError("the PDF is encrypted; decrypt it first")
        sections = [Section(page.extract_text() or "", page=i + 1) for i, page in enumerate(reader.pages)]
        meta_title = reader.metadata.title if reader.metadata else None
    except ParseError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
        raise ParseError(f"broken PDF: {exc}") from exc
    if not any(s.text.strip() for s in sections):
        raise ParseError("the PDF has no extractable text (a scan? OCR is not supported)")
    return ParsedDocument(str(meta_title) if meta_title else _stem(name), sections)


# A DOCX is a ZIP: its XML parts are what the parser expands in memory. A few hundred kilobytes can
# expand to gigabytes (a zip bomb); real documents' text parts stay far below this.
DOCX_MAX_EXPANDED_BYTES = 64 * 1024 * 1024


def parse_docx(data: bytes, name: str) -> ParsedDocument:
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            expanded = sum(i.file_size for i in archive.infolist() if not i.filename.startswith("word/media/"))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise ParseError(f"broken DOCX: {exc or type(exc).__name__}") from exc
    if expanded > DOCX_MAX_EXPANDED_BYTES:
        raise ParseError(
            f"the DOCX's text parts expand to {expanded // 2**20} MB from {len(data) // 1024} KB (a zip bomb?); "
            f"the limit is {DOCX_MAX_EXPANDED_BYTES // 2**20} MB: split the document"
        )
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ParseError(f"broken DOCX: {exc or type(exc).__name__}") from exc
    sections: list[Section] = []
    heading: str | None = None
    title = document.core_properties.title or None
    buf: list[str] = []
    for para in document.paragraphs:
        style = (para.style.name if para.style is not None else "") or ""
        text = para.text.strip()
        if style.startswith("Heading") or style == "Title":
            if buf:
                sections.append(Section("\n\n".join(buf), heading))
                buf = []
            heading = text or heading
            title = title or (text if style in ("Title", "Heading 1") else None)
        elif text:
            buf.append(text)
    for table in document.tables:
        rows = [" | ".join(cell.text.strip() for cell in row.cells) for row in table.rows]
        buf.append("\n".join(r for r in rows if r.strip(" |")))
    if buf:
        sections.append(Section("\n\n".join(buf), heading))
    return ParsedDocument(title or _stem(name), sections)


class _HTMLText(HTMLParser):
    _SKIP: ClassVar[frozenset[str]] = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    _BLOCK: ClassVar[frozenset[str]] = frozenset(
        {
            "p",
            "div",
            "br",
            "li",
            "tr",
            "table",
            "section",
            "article",
            "header",
            "footer",
            "ul",
            "ol",
            "blockquote",
            "pre",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "hr",
            "dd",
            "dt",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self.title: str | None = None
        self._buf: list[str] = []
        self._heading: str | None = None
        self._skip_depth = 0
        self._in_title = False
        self._heading_tag: str | None = None
        self._heading_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip_depth += 1
        elif tag in {"h1", "h2", "h3", "h4", "h5", "h6"}:
            self._flush()
            self._heading_tag, self._heading_text = tag, []
        elif tag in self._BLOCK:
            self._buf.append("\n\n" if tag == "p" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == self._heading_tag:
            self._heading = " ".join("".join(self._heading_text).split()) or self._heading
            if tag == "h1" and not self.title:
                self.title = self._heading
            self._heading_tag = None
        elif tag in self._BLOCK:
            self._buf.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = (self.title or "") + data.strip()
        elif self._skip_depth:
            return
        elif self._heading_tag:
            self._heading_text.append(data)
        else:
            self._buf.append(data)

    def _flush(self) -> None:
        text = "".join(self._buf)
        if text.strip():
            self.sections.append(Section(text, self._heading))
        self._buf = []

    def close(self) -> None:
        super().close()
        self._flush()


def parse_html(data: bytes, name: str) -> ParsedDocument:
    parser = _HTMLText()
    parser.feed(decode_text(data))
    parser.close()
    # Collapse the whitespace that markup leaves behind, keeping paragraph breaks.
    for s in parser.sections:
        s.text = re.sub(r"\n\s*\n\s*", "\n\n", re.sub(r"[ \t\xa0]+", " ", s.text)).strip()
    return ParsedDocument(parser.title or _stem(name), parser.sections)


# Python's csv refuses fields over 128 KB; a long text cell is legitimate (the chunker bounds it).
csv.field_size_limit(64 * 1024 * 1024)


def parse_csv(data: bytes, name: str) -> ParsedDocument:
    text = decode_text(data)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], ",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        return ParsedDocument(_stem(name), [])
    header, body = rows[0], rows[1:]
    if not body:
        lines = [", ".join(header)]
    else:
        lines = [
            "; ".join(f"{h.strip()}: {v.strip()}" for h, v in zip(header, row, strict=False) if v.strip())
            for row in body
        ]
    # One row per paragraph, so the chunker packs whole rows together.
    return ParsedDocument(_stem(name), [Section("\n\n".join(line for line in lines if line))])


def _json_strings(value: Any, key: str = "") -> Iterator[str]:
    if isinstance(value, str):
        if value.strip():
            yield f"{key}: {value}" if key else value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _json_strings(v, str(k))
    elif isinstance(value, list):
        for item in value:
            yield from _json_strings(item, key)


_TOO_DEEP = "JSON nested too deeply to read (over about 900 levels)"


def parse_json(data: bytes, name: str) -> ParsedDocument:
    return _json_document(decode_text(data), name)


def _json_document(text: str, name: str) -> ParsedDocument:
    try:
        value = json.loads(text)
        return ParsedDocument(_stem(name), [Section("\n\n".join(_json_strings(value)))])
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc}") from exc
    except RecursionError:
        raise ParseError(_TOO_DEEP) from None


def parse_jsonl(data: bytes, name: str) -> ParsedDocument:
    records: list[str] = []
    for lineno, line in enumerate(decode_text(data).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append("\n".join(_json_strings(json.loads(line))))
        except json.JSONDecodeError as exc:
            raise ParseError(f"line {lineno} is not valid JSON: {exc.msg}") from exc
        except RecursionError:
            raise ParseError(f"line {lineno}: {_TOO_DEEP}") from None
    return ParsedDocument(_stem(name), [Section("\n\n".join(r for r in records if r))])


PARSERS: dict[str, Callable[[bytes, str], ParsedDocument]] = {
    ".txt": parse_text,
    ".text": parse_text,
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".pdf": parse_pdf,
    ".docx": parse_docx,
    ".html": parse_html,
    ".htm": parse_html,
    ".csv": parse_csv,
    ".json": parse_json,
    ".jsonl": parse_jsonl,
}
# Formats recognised by content as well (services/correspondence): these extensions are mail only.
MAIL_EXTENSIONS = (".eml", ".mbox", ".mbx")
SUPPORTED_EXTENSIONS = tuple(sorted([*PARSERS, *MAIL_EXTENSIONS]))
# Text formats whose content may turn out to be a conversation export.
_MAYBE_CONVERSATION = (".txt", ".text", ".json", *MAIL_EXTENSIONS)


def is_supported(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in SUPPORTED_EXTENSIONS


# What a file is by its first bytes, whatever its name says.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF"),
    (b"PK\x03\x04", "a ZIP archive (DOCX, XLSX, ODT, ...)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office file (DOC/XLS): save it as DOCX or PDF"),
    (b"\x7fELF", "an ELF executable"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
)


def sniff(data: bytes) -> str | None:
    head = data[:16]
    return next((what for magic, what in _MAGIC if head.startswith(magic)), None)


def _check_content(data: bytes, suffix: str) -> None:
    """The name promises a format; the first bytes must not say otherwise."""
    found = sniff(data)
    if suffix == ".pdf":
        if b"%PDF-" not in data[:1024]:  # the PDF header may follow a little junk, never more
            raise ParseError(f"named .pdf but its content is {found or 'not a PDF'}")
    elif suffix == ".docx":
        if not data.startswith(b"PK\x03\x04"):
            raise ParseError(f"named .docx but its content is {found or 'not a DOCX (ZIP) file'}")
    elif found is not None:
        raise ParseError(f"named {suffix} but its content is {found}; give it its real extension")


def parse(data: bytes, name: str, *, default_tz: tzinfo = UTC) -> ParsedDocument:
    """Parse by extension, after checking the content agrees; mail and chat exports are recognised by
    content. Raises ParseError for unsupported, empty, mislabelled or broken files.

    `default_tz`: the zone of message times an export writes without one (WhatsApp, chat logs)."""
    suffix = PurePosixPath(name).suffix.lower()
    parser = PARSERS.get(suffix)
    if parser is None and suffix not in MAIL_EXTENSIONS:
        found = sniff(data)
        what = f" (its content is {found})" if found else ""
        raise ParseError(
            f"unsupported file type {suffix or '(none)'!r}{what}; supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not data.strip():
        raise ParseError("empty file")
    _check_content(data, suffix)
    # Plain text and JSON are decoded once: for the conversation check and, failing it, for their parser.
    text = decode_text(data) if suffix in (".txt", ".text", ".json") else None
    if suffix in _MAYBE_CONVERSATION:
        conversation = _conversation(data, suffix, name, text, default_tz)
        if conversation is not None:
            return conversation
    if text is not None:
        doc = _json_document(text, name) if suffix == ".json" else ParsedDocument(_stem(name), [Section(text)])
    else:
        assert parser is not None
        doc = parser(data, name)
    doc.sections = [s for s in doc.sections if s.text.strip()]
    if not doc.sections:
        raise ParseError("no text found in the file")
    return doc


def _conversation(data: bytes, suffix: str, name: str, text: str | None, default_tz: tzinfo) -> ParsedDocument | None:
    from backend.services.correspondence import detect_and_parse

    found = detect_and_parse(data, ".txt" if suffix == ".text" else suffix, name, text, default_tz)
    if found is None:
        return None
    if not found.message_count and not found.attachments:
        problems = f" ({'; '.join(found.warnings[:3])})" if found.warnings else ""
        raise ParseError(f"a {found.format} export with no messages in it{problems}")
    return ParsedDocument(found.title, [], conversation=found, warnings=found.warnings)


def _stem(name: str) -> str:
    return PurePosixPath(name).stem
