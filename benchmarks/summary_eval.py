"""Faithfulness and coverage of `decisions` summaries on generated minutes with planted decisions.

    LLM_BASE_URL=http://127.0.0.1:8093/v1 .venv/bin/python -m benchmarks.summary_eval \
        --out bench-out/summary-eval.json [--docs 3] [--batch-tokens 900] [--max-tokens 256]

Writes Russian and English meeting minutes (a project, days of discussion, and five decisions each with
a key fact: a supplier, a date, a person, an amount, a place; each phrased the way minutes state decisions,
with a different one of the set words: «Решили», «Постановили», «Согласовали», «Утвердили»,
«Договорились»; "Decided", "Resolved", "Agreed", "Approved", "The decision is"), indexes them into a throwaway embedded
store, and summarises each with style `decisions` through the service's own SummaryService against the
LLM at LLM_BASE_URL (start one: docs/evaluation.md). Reported per language:
- decisions mentioned: planted decisions whose key fact is in the summary (target >= 80%);
- citations holding the fact: of the [n] citations on a sentence that states a planted key fact, those
  whose chunk holds that fact (target >= 90%);
- lines of the summary that state none of the planted decisions (discussion the model kept: noise);
- what the check did: decision sentences restored word for word, citations moved or added;
- LLM calls (map, reduce, final) and seconds per summary.
The documents are the same for the same --seed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FILLER = {
    "ru": ["обсудили ход работ", "доложили о состоянии склада", "обсудили график отпусков",
           "рассмотрели замечания заказчика", "обсудили отчёт по качеству", "сверили сроки поставок",
           "обсудили загрузку команды", "разобрали вопросы по документации"],
    "en": ["discussed the progress of the work", "reported on the warehouse", "went over the holiday schedule",
           "reviewed the customer's remarks", "discussed the quality report", "checked the delivery dates",
           "discussed the team's workload", "went through questions on the documentation"],
}  # fmt: skip
_WORDS = {
    "ru": ("сроки задачи бюджет отчёт поставка договор качество график проверка склад команда документация "  # noqa: SIM905
           "замечания оборудование монтаж испытания приёмка").split(),
    "en": ("deadlines tasks budget report delivery contract quality schedule inspection warehouse team "  # noqa: SIM905
           "documentation remarks equipment installation testing acceptance").split(),
}  # fmt: skip
_COMPANIES = ["Вектор", "Орион", "Гелиос", "Меркурий", "Атлант", "Заря", "Полюс", "Рубин", "Сокол", "Кристалл"]
_COMPANIES_EN = ["Vector", "Orion", "Helios", "Mercury", "Atlant", "Dawn", "Polus", "Ruby", "Falcon", "Crystal"]
_PEOPLE = {"ru": ["Петров", "Смирнова", "Кузнецов", "Васильева", "Соколов", "Новикова", "Морозов", "Волкова"],
           "en": ["Walker", "Hughes", "Fletcher", "Bennett", "Harper", "Lawson", "Mitchell", "Porter"]}  # fmt: skip
_CITIES = {"ru": ["Казани", "Самаре", "Перми", "Твери", "Туле", "Омске"],
           "en": ["Leeds", "Bristol", "Derby", "Oxford", "York", "Bath"]}  # fmt: skip
_KEYS = {"ru": ["Казан", "Самар", "Перм", "Твер", "Тул", "Омск"], "en": _CITIES["en"]}  # stems: Russian inflects
_MONTHS = {"ru": ["марта", "апреля", "мая", "июня"], "en": ["March", "April", "May", "June"]}


@dataclass
class Decision:
    text: str
    key: str  # what must appear in the summary (a stem for Russian words, which inflect)


def _decisions(lang: str, rng: random.Random) -> list[Decision]:
    company = rng.choice(_COMPANIES if lang == "ru" else _COMPANIES_EN)
    person = rng.choice(_PEOPLE[lang])
    day, month = rng.randint(2, 28), rng.choice(_MONTHS[lang])
    amount = f"{rng.randint(2, 9)} {rng.randint(100, 999)} 000"
    city = rng.randrange(len(_CITIES[lang]))
    if lang == "ru":
        return [
            Decision(f"Решили: серверы закупаем у компании «{company}».", company[:5]),
            Decision(f"Постановили перенести приёмку системы на {day} {month}.", f"{day} {month}"),
            Decision(f"Согласовали: ответственным за монтаж назначен {person}.", person[:6]),
            Decision(f"Утвердили бюджет на испытания: {amount} рублей.", amount),
            Decision(f"Договорились провести обучение персонала в {_CITIES[lang][city]}.", _KEYS[lang][city]),
        ]
    return [
        Decision(f"Decided: the servers will be bought from {company} Ltd.", company),
        Decision(f"Resolved to move the system acceptance to {month} {day}.", f"{month} {day}"),
        Decision(f"Agreed: {person} is in charge of the installation.", person),
        Decision(f"Approved a testing budget of {amount} dollars.", amount),
        Decision(f"The decision is to hold the staff training in {_CITIES[lang][city]}.", _KEYS[lang][city]),
    ]


def write_minutes(lang: str, n: int, seed: int) -> tuple[str, str, list[Decision]]:
    """(file name, text, planted decisions): days of discussion, a decision now and then."""
    rng = random.Random(f"{seed}-{lang}-{n}")
    decisions = _decisions(lang, rng)
    project = rng.choice(["Альфа", "Дельта", "Омега", "Сириус"] if lang == "ru" else ["Alpha", "Delta", "Omega"])
    title = f"Протокол совещаний по проекту «{project}»" if lang == "ru" else f"Minutes of the {project} project"
    sections = []
    slots = sorted(rng.sample(range(10), len(decisions)))
    for day in range(10):
        head = f"## День {day + 1}" if lang == "ru" else f"## Day {day + 1}"
        lines = []
        for _ in range(rng.randint(3, 5)):
            words = " ".join(rng.choice(_WORDS[lang]) for _ in range(rng.randint(6, 12)))
            lines.append(f"{rng.choice(_FILLER[lang]).capitalize()}: {words}.")
        if day in slots:
            lines.insert(rng.randint(0, len(lines)), decisions[slots.index(day)].text)
        sections.append(head + "\n\n" + " ".join(lines))
    return f"{lang}/minutes-{n}.md", f"# {title}\n\n" + "\n\n".join(sections), decisions


def _has(text: str, key: str) -> bool:
    """Case and spacing do not matter ("3 456 000", "3456000")."""
    return "".join(key.casefold().split()) in "".join(text.casefold().split())


def score(summary: str, chunks: dict[int, str], decisions: list[Decision]) -> dict[str, Any]:
    mentioned = [d.key for d in decisions if _has(summary, d.key)]
    checked = held = 0
    # a sentence ends before a capital letter or a line end; its citations, written before or after its
    # full stop, belong to it
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-ZА-ЯЁ«])|\n+", summary):
        keys = [d.key for d in decisions if _has(sentence, d.key)]
        for n in map(int, re.findall(r"\[(\d+)\]", sentence)):
            if keys and n in chunks:
                checked += 1
                held += any(_has(chunks[n], k) for k in keys)
    items = [line for line in summary.splitlines() if line.strip()]
    other = [line for line in items if not any(_has(line, d.key) for d in decisions)]
    return {"planted": len(decisions), "mentioned": len(mentioned), "citations_checked": checked,
            "citations_holding_fact": held, "lines": len(items), "lines_without_decision": len(other)}  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from backend.config import load_settings
    from backend.container import throwaway_container
    from backend.services.ingest import SourceFile
    from backend.services.summarizing import SummaryResult

    settings = load_settings()
    rows = []
    async with throwaway_container(settings, llm_max_tokens=args.max_tokens,
                                   summary_batch_tokens=args.batch_tokens) as container:  # fmt: skip
        docs = [write_minutes(lang, n, args.seed) for lang in ("ru", "en") for n in range(args.docs)]
        await container.ingest.ingest("eval", [SourceFile(p, t.encode()) for p, t, _ in docs])
        service = container.summaries
        for path, _, decisions in docs:
            doc_id = next(d.id for d in await container.ingest.documents("eval") if d.path == path)
            chunks = await service.select("eval", doc_id, None)
            started = time.perf_counter()
            result = None
            async for event in service.summarize("eval", {"document_id": doc_id}, chunks, "decisions"):
                if isinstance(event, SummaryResult):
                    result = event
            assert result is not None
            by_n = {i + 1: str(c.payload.get("text", "")) for i, c in enumerate(chunks)}
            row = {"path": path, "lang": path[:2], "chunks": len(chunks), "map_calls": result.map_calls,
                   "reduce_calls": result.reduce_calls, "llm_calls": result.to_dict()["llm_calls"],
                   "seconds": round(time.perf_counter() - started, 1), "model": result.model,
                   "summary": result.summary, "checks": result.checks,
                   **score(result.summary, by_n, decisions)}  # fmt: skip
            rows.append(row)
            sys.stderr.write(f"{path}: {row['mentioned']}/{row['planted']} decisions, citations "
                             f"{row['citations_holding_fact']}/{row['citations_checked']}, "
                             f"{row['seconds']} s\n")  # fmt: skip
    by_lang = {}
    for lang in ("ru", "en"):
        mine = [r for r in rows if r["lang"] == lang]
        planted, mentioned = sum(r["planted"] for r in mine), sum(r["mentioned"] for r in mine)
        checked, held = sum(r["citations_checked"] for r in mine), sum(r["citations_holding_fact"] for r in mine)
        by_lang[lang] = {"summaries": len(mine), "decisions_mentioned": f"{mentioned}/{planted}",
                         "mentioned_rate": round(mentioned / planted, 3) if planted else None,
                         "citations_holding_fact": f"{held}/{checked}",
                         "citation_rate": round(held / checked, 3) if checked else None,
                         "lines_without_decision": f"{sum(r['lines_without_decision'] for r in mine)}/"
                                                   f"{sum(r['lines'] for r in mine)}",
                         "restored": sum(r["checks"]["restored"] for r in mine),
                         "citations_moved_or_added": sum(r["checks"]["moved"] + r["checks"]["added"] for r in mine),
                         "llm_calls_per_summary": _mean([r["llm_calls"] for r in mine]),
                         "seconds_per_summary": _mean([r["seconds"] for r in mine])}  # fmt: skip
    return {"by_language": by_lang, "batch_tokens": args.batch_tokens, "max_tokens": args.max_tokens,
            "seed": args.seed, "rows": rows}  # fmt: skip


def _mean(values: list[float]) -> float:
    return round(sum(values) / max(1, len(values)), 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=3, help="documents per language")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--batch-tokens", type=int, default=900, help="SUMMARY_BATCH_TOKENS for the run")
    p.add_argument("--max-tokens", type=int, default=256, help="LLM_MAX_TOKENS for the run")
    p.add_argument("--out", type=Path, default=Path("bench-out/summary-eval.json"))
    args = p.parse_args()
    report = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2))
    sys.stdout.write(json.dumps(report["by_language"], ensure_ascii=False, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
