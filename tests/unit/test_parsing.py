"""Each format, encoding detection, and clear errors for files that cannot be indexed."""

from __future__ import annotations

import io
import json
import re

import pytest

from backend.services.parsing import ParseError, decode_text, parse
from tests.files import FACTS, docx_bomb, make_docx, make_pdf

RU = "Протокол совещания: бюджет утверждён, срок - пятница. Ёлка в холле, подарки для всех сотрудников."


@pytest.mark.parametrize("encoding", ["cp1251", "koi8-r", "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"])
def test_russian_text_decodes_in_common_encodings(encoding: str) -> None:
    data = RU.encode(encoding)  # utf-16-le/-be carry no BOM: detected from the NUL pattern
    assert decode_text(data) == RU


def test_cp1251_file_is_not_garbled() -> None:
    doc = parse(FACTS["frogland"].encode("cp1251"), "ru/frogland.txt")
    assert doc.sections[0].text == FACTS["frogland"]
    assert doc.title == "frogland"


def test_markdown_sections_follow_headings() -> None:
    doc = parse(b"# Guide\n\nIntro text.\n\n## Setup\n\nInstall it.\n\n```\n# not a heading\n```\n", "g.md")
    assert doc.title == "Guide"
    assert [(s.heading, s.text.strip().split("\n")[0]) for s in doc.sections] == [
        ("Guide", "Intro text."),
        ("Setup", "Install it."),
    ]
    assert "# not a heading" in doc.sections[1].text


def test_pdf_pages_are_numbered() -> None:
    doc = parse(make_pdf(["Glimmer pump.", "Maximum pressure is 9 bar."]), "spec.pdf")
    assert doc.sections[0].page == 1
    assert "Maximum pressure is 9 bar." in doc.sections[0].text


def test_docx_headings_and_tables() -> None:
    doc = parse(make_docx("Board minutes", {"Decisions": "The board approved the Orion budget."}), "m.docx")
    assert doc.title == "Board minutes"
    decisions = next(s for s in doc.sections if s.heading == "Decisions")
    assert "Orion budget" in decisions.text
    assert "Flux valve | Quell Industries" in decisions.text


def test_html_skips_scripts_and_keeps_headings() -> None:
    html = (
        b"<html><head><title>T</title><style>p{}</style></head><body><h1>Top</h1><p>Hello <b>world</b></p>"
        b"<script>alert(1)</script><h2>Next</h2><p>More &amp; more</p></body></html>"
    )
    doc = parse(html, "p.html")
    assert doc.title == "T"
    assert [(s.heading, s.text) for s in doc.sections] == [("Top", "Hello world"), ("Next", "More & more")]


def test_csv_rows_become_labelled_lines() -> None:
    doc = parse("item;count\nsprocket;12\nгайка;40\n".encode("cp1251"), "inv.csv")
    assert doc.sections[0].text == "item: sprocket; count: 12\n\nitem: гайка; count: 40"


def test_json_and_jsonl_text_fields() -> None:
    doc = parse(json.dumps({"a": {"text": "deep value"}, "n": 3, "tags": ["x"]}).encode(), "d.json")
    assert doc.sections[0].text == "text: deep value\n\ntags: x"
    doc = parse(b'{"t": "one"}\n\n{"t": "two"}\n', "d.jsonl")
    assert doc.sections[0].text == "t: one\n\nt: two"


@pytest.mark.parametrize(
    ("data", "name", "reason"),
    [
        (b"", "empty.txt", "empty file"),
        (b"   \n\t ", "blank.md", "empty file"),
        (b"\x00\x01\x02\x03binary\x00junk" * 10, "junk.txt", "binary content"),
        (b"%PDF-1.4 garbage that is not a pdf", "broken.pdf", "PDF"),
        (b"PK\x03\x04 not really a zip", "broken.docx", "broken DOCX"),
        (b"{not json", "bad.json", "invalid JSON"),
        (b'{"ok": 1}\n{broken\n', "bad.jsonl", "line 2"),
        (b"hello", "image.png", "unsupported file type '.png'"),
        (b"<html><body><script>x</script></body></html>", "empty.html", "no text"),
    ],
)
def test_broken_or_empty_files_raise_a_clear_reason(data: bytes, name: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(data, name)


def test_pdf_without_text_is_reported_as_such() -> None:
    with pytest.raises(ParseError, match="no extractable text"):
        parse(make_pdf([]), "scan.pdf")


def test_docx_roundtrip_through_bytesio_is_independent_of_name_case() -> None:
    data = make_docx("T", {"H": "body text"})
    assert parse(data, "UPPER.DOCX").sections
    assert io.BytesIO(data).read(2) == b"PK"


def test_a_docx_zip_bomb_is_refused_before_it_expands() -> None:
    bomb = docx_bomb()
    assert len(bomb) < 200_000
    with pytest.raises(ParseError, match=r"expand to 9\d MB .*zip bomb"):
        parse(bomb, "bomb.docx")


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("report.txt", b"%PDF-1.7\n%binary", "named .txt but its content is a PDF"),
        ("notes.md", b"\x89PNG\r\n\x1a\n....", "named .md but its content is a PNG image"),
        ("scan.pdf", b"GIF89a......", "named .pdf but its content is a GIF image"),
        ("memo.docx", b"%PDF-1.4 ...", "named .docx but its content is a PDF"),
        ("old.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1 ...", "old Office file (DOC/XLS): save it as DOCX or PDF"),
        ("tool.exe", b"\x7fELF\x02\x01", "unsupported file type '.exe' (its content is an ELF executable)"),
        ("deep.json", b"[" * 50_000 + b"]" * 50_000, "JSON nested too deeply"),
        ("deep.jsonl", b'{"a": 1}\n' + b"[" * 50_000 + b"]" * 50_000, "line 2: JSON nested too deeply"),
    ],
)
def test_content_decides_over_the_name(name: str, data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=re.escape(message)):
        parse(data, name)


def test_a_csv_cell_longer_than_pythons_default_limit_is_read() -> None:
    doc = parse(b"title,body\nlong," + b"x" * 300_000 + b"\n", "big.csv")
    assert "x" * 300_000 in doc.sections[0].text
