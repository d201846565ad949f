"""Test documents generated on the fly: every supported format, Windows encodings, broken files."""

from __future__ import annotations

import io
import json
from pathlib import Path

# Fictional facts, so a correct answer can only come from the documents.
FACTS = {
    "zorblat": "The Zorblat reactor runs at 42 kelvin and was designed by Mira Quell.",
    "frogland": "Столица Фрогландии — город Квакбург, в нём живут триста лягушек.",
}


def make_pdf(lines: list[str]) -> bytes:
    """A minimal valid one-page PDF with Helvetica text (ASCII only), built by hand."""
    ops = ["BT", "/F1 12 Tf", "72 720 Td", "14 TL"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(f"({escaped}) Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{i} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def make_docx(title: str, sections: dict[str, str]) -> bytes:
    import docx

    document = docx.Document()
    document.add_heading(title, level=1)
    for heading, text in sections.items():
        document.add_heading(heading, level=2)
        document.add_paragraph(text)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Part", "Supplier"
    table.cell(1, 0).text, table.cell(1, 1).text = "Flux valve", "Quell Industries"
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def write_corpus(root: Path) -> dict[str, Path]:
    """One file per supported format plus Windows encodings; returns {label: path}."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "md": (
            "guide.md",
            f"# Reactor guide\n\n{FACTS['zorblat']}\n\n## Maintenance\n\nClean the flux valve "
            "every Tuesday.\n".encode(),
        ),
        "txt": ("notes/plain.txt", b"Plain notes: the blue cupboard holds seventeen spoons.\n"),
        "cp1251": ("ru/frogland_cp1251.txt", FACTS["frogland"].encode("cp1251")),
        "utf16": ("ru/letter_utf16.txt", "Письмо: совещание перенесено на пятницу.".encode("utf-16")),
        "pdf": ("spec.pdf", make_pdf(["Specification of the Glimmer pump.", "Maximum pressure is 9 bar."])),
        "docx": ("minutes.docx", make_docx("Board minutes", {"Decisions": "The board approved the Orion budget."})),
        "html": (
            "page.html",
            b"<html><head><title>Wiki page</title><script>var x=1;</script></head><body>"
            b"<h1>Teleporter</h1><p>The teleporter needs 3 crystals.</p></body></html>",
        ),
        "csv": ("inventory.csv", "item;count\nsprocket;12\nгайка;40\n".encode("cp1251")),
        "json": ("config.json", json.dumps({"title": "Launch", "body": "Launch window opens at dawn."}).encode()),
        "jsonl": (
            "chat.jsonl",
            b'{"user": "ann", "text": "The password rotates monthly."}\n{"user": "bob", "text": "Noted."}\n',
        ),
    }
    out = {}
    for label, (rel, data) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out[label] = path
    return out


def docx_bomb(expanded_bytes: int = 100_000_000) -> bytes:
    """A valid DOCX whose document.xml carries `expanded_bytes` of spaces: ~130 KB on disk, a zip bomb."""
    import zipfile

    import docx

    page = docx.Document()
    page.add_paragraph("hello")
    raw = io.BytesIO()
    page.save(raw)
    original = zipfile.ZipFile(io.BytesIO(raw.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in original.infolist():
            data = original.read(info.filename)
            if info.filename == "word/document.xml":
                data = data.replace(b"hello", b"hello" + b" " * expanded_bytes)
            z.writestr(info.filename, data)
    return out.getvalue()
