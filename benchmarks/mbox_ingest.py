"""A large mailbox through ingestion: peak memory and throughput.

    .venv/bin/python -m benchmarks.mbox_ingest --mb 200 --text-mb 5 --out bench-out/mbox-200.json        # ~15 min
    .venv/bin/python -m benchmarks.mbox_ingest --mb 200 --stage parse --out bench-out/mbox-200-parse.json  # ~6 min
    .venv/bin/python -m benchmarks.mbox_ingest --format telegram --mb 100 --stage parse \
        --out bench-out/telegram-100-parse.json                                                         # ~3 min

Writes a generated mbox of `--mb` megabytes: threads of Russian and English business mail whose replies
quote the message before (as mail clients do), signatures, and, making up the size beyond `--text-mb` of
message text, image attachments (which are not indexed) plus a small text attachment now and then (which
is). `--stage full` indexes it the way users do, `python -m cli.index_cli --dir ... --space mail` with a
throwaway embedded store, and reports the child process's peak RSS and the time. `--stage parse` runs
only what the file's size drives (reading, mail parsing, threading, chunking with the embedder's
tokenizer, lexical vectors) in this process over a mailbox that is all text, consuming the chunks as the
writer does, without embedding them: the peak RSS of that stage and its throughput.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_RU = (
    "проект бюджет срок поставка договор счёт оплата встреча отчёт задача сервер клиент подрядчик решение "
    "вопрос план неделя команда документ согласование закупка склад график акт претензия"
)
_EN = (
    "project budget deadline delivery contract invoice payment meeting report task server client vendor "
    "decision question plan week team document approval purchase warehouse schedule claim"
)
WORDS = {"ru": _RU.split(), "en": _EN.split()}


def _sentence(rng: random.Random, lang: str) -> str:
    return " ".join(rng.choice(WORDS[lang]) for _ in range(rng.randint(6, 18))).capitalize() + "."


def write_mbox(path: Path, total_mb: float, text_mb: float, seed: int = 1) -> dict[str, int]:
    """Returns counts of messages, threads and attachment bytes."""
    rng = random.Random(seed)
    target, text_target = int(total_mb * 2**20), int(text_mb * 2**20)
    attach_every = 3
    t = datetime(2023, 1, 2, 9, 0, tzinfo=UTC)
    written = text = attach_bytes = messages = threads = 0
    previous = ""
    with path.open("wb") as out:
        while written < target:
            messages += 1
            lang = "ru" if messages % 3 else "en"
            reply = messages % 6 != 1
            threads += not reply
            t += timedelta(minutes=rng.randint(2, 240))
            sender = rng.randint(1, 40)
            body = " ".join(_sentence(rng, lang) for _ in range(rng.randint(2, 12)))
            quoted = "\n".join("> " + line for line in previous.split("\n") if line)[:3000] if reply else ""
            attribution = (f"{t:%d.%m.%Y} в {t:%H:%M}, Сотрудник {sender} писал(а):" if lang == "ru"
                           else f"On {t:%a, %d %b %Y} at {t:%H:%M}, Employee {sender} wrote:")  # fmt: skip
            full_body = body + (f"\n\n{attribution}\n{quoted}" if quoted else "") + f"\n\n-- \nEmployee {sender}\n"
            previous = body
            text += len(body.encode())
            subject = f"{'Re: ' if reply else ''}Topic {threads}"
            name = Header(f"Сотрудник {sender}" if lang == "ru" else f"Employee {sender}").encode()
            parent = f"In-Reply-To: <m{messages - 1}@corp.example>\n" if reply else ""
            headers = (f"From user{sender}@corp.example {t:%a %b %d %H:%M:%S %Y}\n"
                       f"From: {name} <user{sender}@corp.example>\nTo: team@corp.example\nSubject: {subject}\n"
                       f"Date: {format_datetime(t)}\nMessage-ID: <m{messages}@corp.example>\n{parent}"
                       "MIME-Version: 1.0\n")  # fmt: skip
            # attachments fill what the text leaves of the size, spread over the messages
            room = max(0, target - written) - max(0, text_target - text)
            parts = []
            if messages % attach_every == 0 and room > 0:
                size = min(room, rng.randint(150_000, 600_000))
                blob = base64.encodebytes(rng.randbytes(size * 3 // 4)).decode()
                parts.append(f"Content-Type: image/png\nContent-Transfer-Encoding: base64\n"
                             f'Content-Disposition: attachment; filename="scan{messages}.png"\n\n{blob}')  # fmt: skip
                attach_bytes += len(blob)
            if messages % 25 == 0:
                note = "\n".join(_sentence(rng, lang) for _ in range(10))
                text += len(note.encode())
                parts.append(f"Content-Type: text/plain; charset=utf-8\n"
                             f'Content-Disposition: attachment; filename="notes{messages}.txt"\n\n{note}')  # fmt: skip
            if parts:
                mime = "".join(
                    f"--b{messages}\n{p}\n" for p in [f"Content-Type: text/plain; charset=utf-8\n\n{full_body}", *parts]
                )
                raw = f'{headers}Content-Type: multipart/mixed; boundary="b{messages}"\n\n{mime}--b{messages}--\n\n'
            else:
                raw = f"{headers}Content-Type: text/plain; charset=utf-8\n\n{full_body}\n"
            data = raw.encode()
            out.write(data)
            written += len(data)
    return {"bytes": written, "messages": messages, "threads": threads, "attachment_bytes": attach_bytes,
            "text_bytes": text}  # fmt: skip


def write_telegram(path: Path, total_mb: float, seed: int = 1) -> dict[str, int]:
    """A Telegram Desktop "all chats" export: one big work group holding most of it, a few small chats."""
    rng = random.Random(seed)
    target = int(total_mb * 2**20)
    people = ["Пётр Петров", "Анна Смирнова", "Игорь Кузнецов", "Ольга Васильева", "John Smith"]
    written = messages = 0
    t = datetime(2021, 1, 4, 9, 0, tzinfo=UTC)
    with path.open("w", encoding="utf-8") as out:
        out.write('{\n "about": "Here is the data you requested.",\n "chats": {\n  "about": "",\n  "list": [\n')
        for chat in range(6):
            share = 0.9 if chat == 0 else 0.02
            out.write(("" if chat == 0 else ",\n") + f'   {{"name": "Чат {chat}", "type": "private_group", '
                      f'"id": {1000 + chat}, "messages": [\n')  # fmt: skip
            chat_bytes, first = 0, True
            while chat_bytes < target * share:
                messages += 1
                t += timedelta(minutes=rng.randint(1, 240))
                who = rng.randrange(len(people))
                lang = "en" if who == 4 else "ru"
                text = " ".join(_sentence(rng, lang) for _ in range(rng.randint(1, 4)))
                row = {"id": messages, "type": "message", "date": t.strftime("%Y-%m-%dT%H:%M:%S"),
                       "date_unixtime": str(int(t.timestamp())), "from": people[who], "from_id": f"user{who}",
                       "text": text, "text_entities": [{"type": "plain", "text": text}]}  # fmt: skip
                line = ("" if first else ",\n") + "    " + json.dumps(row, ensure_ascii=False)
                out.write(line)
                chat_bytes += len(line.encode())
                first = False
            out.write("\n   ]}")
            written += chat_bytes
        out.write("\n  ]\n }\n}\n")
    return {"bytes": path.stat().st_size, "messages": messages, "chats": 6, "text_bytes": written}


def stage_parse(path: Path) -> dict[str, Any]:
    from backend.config import Settings
    from backend.container import build_ingest, load_embedder
    from backend.observability import Metrics
    from backend.services.ingest import SourceFile

    settings = Settings(_env_file=None)
    ingest = build_ingest(settings, None, load_embedder(settings), Metrics())  # type: ignore[arg-type]
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    source = SourceFile(path.name, path.read_bytes())
    parsed, groups, _ = ingest._parse_and_chunk(source)  # what the writer pulls, group by group
    chunks = sum(len(g) for g in groups)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert parsed.conversation is not None
    return {"stage": "parse", "seconds": round(seconds, 1), "chunks": chunks,
            "messages": parsed.conversation.message_count, "warnings": len(parsed.warnings),
            "peak_rss_mb": round(peak_mb), "rss_before_mb": round(base_mb),
            "mb_per_minute": round(source.data.__len__() / 2**20 / seconds * 60, 1)}  # fmt: skip


def stage_full(path: Path, folder: Path) -> dict[str, Any]:
    env = {**os.environ, "QDRANT_PATH": str(folder / "qdrant"), "HF_HUB_OFFLINE": "1", "LOG_FORMAT": "text",
           "SERVICE_URL": "http://127.0.0.1:9", "LOG_LEVEL": "WARNING"}  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cli.index_cli", "--dir", str(path.parent), "--space", "mail",
                           "--json"], env=env, cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"index_cli failed: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    size = path.stat().st_size
    return {"stage": "full", "seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb),
            "mb_per_minute": round(size / 2**20 / seconds * 60, 2), "index_cli": summary}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=200, help="size of the mailbox")
    p.add_argument("--text-mb", type=float, default=5, help="message text in it (the rest: attachments); --stage full")
    p.add_argument("--stage", choices=["full", "parse"], default="full")
    p.add_argument("--format", choices=["mbox", "telegram"], default="mbox",
                   help="telegram: a result.json of --mb megabytes, all text (one chat holds 90%%)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("bench-out/mbox-ingest.json"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="rag-mbox-") as tmp:
        folder = Path(tmp)
        (folder / "mail").mkdir()
        path = folder / "mail" / ("result.json" if args.format == "telegram" else "archive.mbox")
        text_mb = args.mb if args.stage == "parse" else args.text_mb
        started = time.perf_counter()
        made: dict[str, Any] = {**(write_telegram(path, args.mb) if args.format == "telegram"
                                   else write_mbox(path, args.mb, text_mb))}  # fmt: skip
        made["generated_in_s"] = round(time.perf_counter() - started, 1)
        result = stage_parse(path) if args.stage == "parse" else stage_full(path, folder)
    report = {"mailbox": made, **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2))
    sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
