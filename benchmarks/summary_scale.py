"""How a summary's LLM calls and time grow with the selection: a chat thread summarised in growing parts.

    LLM_BASE_URL=http://127.0.0.1:8093/v1 .venv/bin/python -m benchmarks.summary_scale \
        --plan-kb 8,16,32,64,128,256,512,1024 --run-kb 8,16,32 --out bench-out/summary-scale.json

Writes a Telegram export of one Russian work chat of `max(--plan-kb)` KB of message text (messages of a
few sentences, several a day: questions, payments, dates moved, deliveries, now and then a decision),
indexes it into a throwaway embedded store, and selects its first N KB with a `sent_before` filter, as a
user narrowing a thread by date would. For every --plan-kb size it
reports the chunks selected and the map calls the service's own batching needs (SummaryService.plan:
the server's token count and context window, no text generated). For every --run-kb size it writes the
whole summary (style `brief`) through the service against the LLM at LLM_BASE_URL and reports the calls
made, the time to the first progress event, the seconds per call and in all. A size too slow to run on
the machine at hand is planned, and its time estimated from the measured seconds per call (stated as an
estimate in the report).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PEOPLE = ["Пётр Петров", "Анна Смирнова", "Игорь Кузнецов", "Ольга Васильева"]
COMPANIES = ["Вектор", "Орион", "Гелиос", "Меркурий", "Атлант", "Полюс"]
ITEMS = ["насосов", "кабеля", "серверов", "щитов управления", "датчиков давления", "трубной арматуры"]
DOCS = ["акт сверки", "график работ", "смета на монтаж", "протокол испытаний", "договор поставки"]
MONTHS = ["марта", "апреля", "мая", "июня"]
# What a work chat says: questions, payments, dates moved, deliveries, documents, now and then a decision.
TEMPLATES = [
    "{who}, когда будет готов {doc}?",
    "Счёт от «{company}» на {amount} руб. оплачен, платёжка в почте.",
    "Перенесли встречу с «{company}» на {day} {month}, в 11:00 у нас.",
    "Поставка {item} задерживается на {n} дня, склад в курсе.",
    "Отправил {doc} по договору №{n}{day}, посмотрите до вечера.",
    "Прошу согласовать {doc} на следующую неделю, без него не начнём.",
    "«{company}» просит предоплату 30%, остальное после приёмки.",
    "Созвонился с «{company}»: цена на {item} выросла на {n}%.",
    "Решили: {item} закупаем у «{company}», {who} готовит заявку.",
    "Ок, беру на себя. Вернусь с ответом завтра.",
    "На объекте всё по графику, монтаж {item} закончим к {day} {month}.",
]


def _message(rng: random.Random) -> str:
    return rng.choice(TEMPLATES).format(
        who=rng.choice(PEOPLE).split()[0], doc=rng.choice(DOCS), company=rng.choice(COMPANIES),
        amount=f"{rng.randint(10, 990)} {rng.randint(100, 999)}", day=rng.randint(1, 28), month=rng.choice(MONTHS),
        item=rng.choice(ITEMS), n=rng.randint(2, 9),
    )  # fmt: skip


def write_chat(path: Path, kb: int, seed: int = 5) -> list[tuple[float, int]]:
    """A one-chat Telegram export; returns (message time, message text bytes so far) for every message."""
    rng = random.Random(seed)
    t = datetime(2024, 2, 5, 9, 0, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    marks: list[tuple[float, int]] = []
    total = 0
    while total < kb * 1024:
        t += timedelta(minutes=rng.randint(5, 150))
        who = rng.randrange(len(PEOPLE))
        text = " ".join(_message(rng) for _ in range(rng.randint(1, 3)))
        rows.append({"id": len(rows) + 1, "type": "message", "date": t.strftime("%Y-%m-%dT%H:%M:%S"),
                     "date_unixtime": str(int(t.timestamp())), "from": PEOPLE[who], "from_id": f"user{who}",
                     "text": text, "text_entities": [{"type": "plain", "text": text}]})  # fmt: skip
        total += len(text.encode())
        marks.append((t.timestamp(), total))
    export = {"name": "Проект Дельта", "type": "private_group", "id": 77, "messages": rows}
    path.write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    return marks


def cutoff(marks: list[tuple[float, int]], kb: int) -> float:
    """The first message time at which the chat holds `kb` KB of text (filter: sent before the next second)."""
    return next((ts for ts, total in marks if total >= kb * 1024), marks[-1][0]) + 1


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from backend.adapters.store import ChunkFilter
    from backend.config import load_settings
    from backend.container import throwaway_container
    from backend.services.ingest import SourceFile
    from backend.services.summarizing import Progress, SummaryResult

    plan_kb = sorted({*args.plan_kb, *args.run_kb})
    settings = load_settings()
    planned, measured = [], []
    with tempfile.TemporaryDirectory(prefix="rag-summary-scale-") as tmp:
        chat = Path(tmp) / "result.json"
        marks = write_chat(chat, max(plan_kb))
        async with throwaway_container(
            settings, llm_max_tokens=args.max_tokens, summary_batch_tokens=args.batch_tokens,
            max_summary_chunks=100_000,
            # a whole window prefills in ~50 s on 2 cores, more on a cold server: past the 60 s default
            llm_first_token_timeout_s=max(settings.llm_first_token_timeout_s, 240.0),
            llm_total_timeout_s=max(settings.llm_total_timeout_s, 600.0),
        ) as container:  # fmt: skip
            started = time.perf_counter()
            await container.ingest.ingest("scale", [SourceFile("chat/result.json", chat.read_bytes())])
            sys.stderr.write(f"indexed {max(plan_kb)} KB in {time.perf_counter() - started:.0f} s\n")
            service = container.summaries
            for kb in plan_kb:
                chunks = await service.select("scale", None, ChunkFilter(sent_before=cutoff(marks, kb)))
                plan = await service.plan(chunks, "brief")
                map_calls = len(plan.batches) if len(plan.batches) > 1 else 0
                planned.append({"kb": kb, "chunks": len(chunks), "map_calls": map_calls, "budget": plan.budget})
                sys.stderr.write(f"{kb} KB: {len(chunks)} chunks, {map_calls} map calls\n")
            for kb in sorted(args.run_kb):
                chunks = await service.select("scale", None, ChunkFilter(sent_before=cutoff(marks, kb)))
                started = time.perf_counter()
                first_progress = None
                progress: list[float] = []
                result = None
                async for event in service.summarize("scale", {"kb": kb}, chunks, "brief"):
                    if isinstance(event, Progress):
                        progress.append(round(time.perf_counter() - started, 1))
                        sys.stderr.write(f"{kb} KB: {event.done}/{event.total} calls at {progress[-1]} s\n")
                        first_progress = first_progress if first_progress is not None else progress[-1]
                    elif isinstance(event, SummaryResult):
                        result = event
                assert result is not None
                calls = result.map_calls + result.reduce_calls + result.final_calls
                seconds = time.perf_counter() - started
                measured.append({"kb": kb, "chunks": len(chunks), "map_calls": result.map_calls,
                                 "reduce_calls": result.reduce_calls, "final_calls": result.final_calls,
                                 "llm_calls": calls, "seconds": round(seconds, 1),
                                 "seconds_per_call": round(seconds / calls, 1), "first_progress_s": first_progress,
                                 "progress_events": len(progress), "model": result.model,
                                 "summary_chars": len(result.summary)})  # fmt: skip
                sys.stderr.write(f"{kb} KB summarised: {calls} calls, {seconds:.0f} s\n")
    per_call = sum(m["seconds"] for m in measured) / max(1, sum(m["llm_calls"] for m in measured))
    add_estimates(planned, measured, per_call)
    return {"style": "brief", "max_tokens": args.max_tokens, "batch_tokens": args.batch_tokens,
            "planned": planned, "measured": measured, "seconds_per_call_measured": round(per_call, 1)}  # fmt: skip


def add_estimates(planned: list[dict[str, Any]], measured: list[dict[str, Any]], per_call: float) -> None:
    """Calls and seconds of the sizes not run: their planned batches times the calls per planned batch of
    the largest run (batches read again in halves, merges and the final call included), at the measured
    seconds per call."""
    largest = max(measured, key=lambda m: m["kb"], default=None)
    base = next((p for p in planned if largest and p["kb"] == largest["kb"]), None)
    if largest is None or base is None or not base["map_calls"]:
        return
    ratio = largest["llm_calls"] / base["map_calls"]
    for p in planned:
        if p["kb"] > largest["kb"]:
            p["estimated_calls"] = round(p["map_calls"] * ratio)
            p["estimated_seconds"] = round(p["estimated_calls"] * per_call)


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plan-kb", type=_sizes, default=[8, 16, 32, 64, 128, 256, 512, 1024])
    p.add_argument("--run-kb", type=_sizes, default=[8, 16, 32])
    p.add_argument("--max-tokens", type=int, default=256, help="LLM_MAX_TOKENS for the run")
    p.add_argument("--batch-tokens", type=int, default=0, help="SUMMARY_BATCH_TOKENS for the run")
    p.add_argument("--out", type=Path, default=Path("bench-out/summary-scale.json"))
    args = p.parse_args()
    report = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2))
    sys.stdout.write(json.dumps({k: v for k, v in report.items() if k != "measured"}, ensure_ascii=False) + "\n")
    sys.stdout.write(json.dumps(report["measured"], ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
