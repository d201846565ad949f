"""Evaluate retrieval (and, with --answers, whole answers) on SQuAD-format files.

    python -m cli.eval ../shared/eval/xquad.ru.dev.json ../shared/eval/xquad.en.dev.json
    python -m cli.eval data.json --answers --limit 50 --out bench-out/eval.json
    python -m cli.eval ../shared/eval/xquad.ru.dev.json --answers --stride 4 --compare hybrid   # 153 questions
    python -m cli.eval ../shared/eval/xquad.ru.dev.json --unanswerable --stride 4 --compare hybrid
    python -m cli.eval ../shared/eval/xquad.en.dev.json --questions-from ../shared/eval/xquad.ru.dev.json
    python -m cli.eval ../shared/eval/xquad.ru.dev.json --mixed-with ../shared/eval/xquad.en.dev.json --compare hybrid

--unanswerable indexes only the even-numbered articles and asks the questions of the others, which the
documents cannot answer: the figures are how often the answer says so, and how often it invents one.
--questions-from asks the questions of a translation of the file (the same question ids, as XQuAD's
languages have): Russian questions about English paragraphs, or the other way round.
--mixed-with indexes the even-numbered articles of the file and the odd-numbered ones of its translation
into one space, and asks every question in the file's language: half find their answer in their own
language, half only in the other, among chunks in their own about other things (a Russian archive with
English specifications). The figures are split by which half a question is in.

Each file's paragraphs are indexed into a throwaway embedded store (never the service's), with the
configured embedder and chunking; every question is asked, and its paragraph is the relevant document.
Prints a markdown table; writes every figure and per-question result as JSON (--out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from backend.config import ConfigError, Settings, load_settings
from backend.container import throwaway_container
from backend.observability import configure_logging
from backend.services.evaluation import (
    EVAL_MODES,
    EvalQuestion,
    Evaluator,
    arranged,
    load_dataset,
    split_unanswerable,
)
from cli import ui


def parse_args(argv: list[str] | None, prog: str = "python -m cli.eval") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("datasets", nargs="+", type=Path, help="SQuAD-format JSON files")
    p.add_argument(
        "--compare",
        default="dense,sparse,hybrid",
        help=f"comma-separated retrieval modes, side by side ({', '.join(EVAL_MODES)}); default dense,sparse,hybrid",
    )
    p.add_argument("--k", type=int, default=10, help="cut-off for nDCG, Recall and MRR (default 10)")
    p.add_argument("--answers", action="store_true", help="also score answers from the configured LLM")
    p.add_argument("--limit", type=int, help="score answers for the first N questions only")
    p.add_argument(
        "--stride",
        type=int,
        default=1,
        help="score answers for every Nth question (spread over all articles; before --limit)",
    )
    p.add_argument(
        "--unanswerable",
        action="store_true",
        help="index half of the articles; ask the other half's questions (answers the documents lack)",
    )
    p.add_argument(
        "--questions-from",
        type=Path,
        metavar="TRANSLATION",
        help="ask the questions of a translation of the file (same question ids) instead of its own",
    )
    p.add_argument(
        "--mixed-with",
        type=Path,
        metavar="TRANSLATION",
        help="one space of both languages: the file's even-numbered articles and the translation's odd-numbered ones",
    )
    p.add_argument("--top-k", type=int, default=5, help="chunks given to the LLM with --answers")
    p.add_argument("--out", type=Path, default=Path("bench-out/eval.json"), help="JSON report")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout instead of tables")
    return p.parse_args(argv)


async def run(args: argparse.Namespace, settings: Settings, modes: list[str]) -> list[dict[str, Any]]:
    reports: list[dict[str, Any]] = []
    async with throwaway_container(settings) as container:
        evaluator = Evaluator(container.ingest, container.retrieval, container.answers)
        translation = load_dataset(args.questions_from) if args.questions_from else None
        other_half = load_dataset(args.mixed_with) if args.mixed_with else None
        for i, path in enumerate(args.datasets):
            evalset = arranged(load_dataset(path), translation, other_half)
            unanswerable: list[EvalQuestion] = []
            if args.unanswerable:
                evalset, unanswerable = split_unanswerable(evalset)
            space = f"eval-{i}"
            chunks = await evaluator.index(space, evalset)
            report: dict[str, Any] = {
                "dataset": str(path), "documents": len(evalset.documents), "questions": len(evalset.questions),
                "chunks": chunks, "embedding_model": container.embedder.model_name, "retrieval": [],
                "questions_from": str(args.questions_from) if args.questions_from else None,
                "mixed_with": str(args.mixed_with) if args.mixed_with else None,
            }  # fmt: skip
            conversational = any(q.gold_message for q in evalset.questions)
            for mode in modes:
                for filtered in (False, True) if conversational else (False,):
                    found = await evaluator.retrieval_metrics(space, evalset, mode=mode, k=args.k, filtered=filtered)
                    report["retrieval"].append(asdict(found))
            if args.answers:
                asked = evalset.questions[:: max(1, args.stride)]
                asked = asked[: args.limit] if args.limit else asked
                report["answers"] = asdict(await evaluator.answer_metrics(space, asked, top_k=args.top_k))
                report["answers"]["retrieval_mode"] = f"{settings.retrieval_mode} (RETRIEVAL_MODE)"
                report["answers"]["llm_model"] = next((r.get("model") for r in report["answers"]["rows"]), None)
            if unanswerable:
                asked = unanswerable[:: max(1, args.stride)]
                asked = asked[: args.limit] if args.limit else asked
                report["unanswerable"] = asdict(await evaluator.answer_metrics(space, asked, top_k=args.top_k))
            reports.append(report)
    return reports


def _name(report: dict[str, Any]) -> str:
    """The dataset's file name, and the file its questions came from when they were not its own."""
    name = Path(report["dataset"]).name
    asked, mixed = report.get("questions_from"), report.get("mixed_with")
    if mixed:
        return f"{name}, odd articles from {Path(mixed).name}"
    return f"{name}, questions of {Path(asked).name}" if asked else name


def render(reports: list[dict[str, Any]], k: int) -> str:
    lines = [
        f"| dataset | mode | nDCG@{k} | R@1 | R@5 | R@{k} | MRR@{k} | questions | chunks |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rep in reports:
        for r in rep["retrieval"]:
            mode = f"{r['mode']}, each question's filter" if r.get("filtered") else r["mode"]
            lines.append(
                f"| {_name(rep)} | {mode} | {r['ndcg']:.3f} | {r['recall_1']:.3f} "
                f"| {r['recall_5']:.3f} | {r['recall_k']:.3f} | {r['mrr']:.3f} | {rep['questions']} | {rep['chunks']} |"
            )
    lines += _by_kind_tables(reports)
    answered = [rep for rep in reports if "answers" in rep]
    if answered:
        lines += [
            "",
            "| dataset | asked | EM | F1 | gold in answer | gold in a cited source | abstained | LLM errors |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for rep in answered:
            a = rep["answers"]
            lines.append(
                f"| {_name(rep)} | {a['n']} | {a['exact_match']:.3f} | {a['f1']:.3f} "
                f"| {a['gold_in_answer']:.3f} | {a['gold_in_cited_source']:.3f} | {a['abstention_rate']:.3f} "
                f"| {a['llm_errors']} |"
            )
        lines += [
            "",
            "| dataset | gold in answer, any word form | cite | cited source holds gold: all / right answers "
            "| model's own: cite / holds gold: all / right | unsupported | same language "
            "| first token p50 / p90 s | answer p50 s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for rep in answered:
            a = rep["answers"]
            lines.append(
                f"| {_name(rep)} | {a['gold_in_answer_any_form']:.3f} | {a['cite_rate']:.3f} "
                f"| {a['cited_holds_gold']:.3f} / {a['right_cited_holds_gold']:.3f} "
                f"| {a['model_cite_rate']:.3f} / {a['model_cited_holds_gold']:.3f} / "
                f"{a['right_model_cited_holds_gold']:.3f} | {a['unsupported_rate']:.3f} "
                f"| {a['same_language']:.3f} | {a['ttft_p50_s']:.1f} / {a['ttft_p90_s']:.1f} | {a['total_p50_s']:.1f} |"
            )
    lines += _unanswerable_table(reports)
    return "\n".join(lines) + "\n"


def _by_kind_tables(reports: list[dict[str, Any]]) -> list[str]:
    """Per question kind (conversational sets: language and who / when / amount; --mixed-with: which language
    holds the answer): nDCG@10 and R@5, and with --answers gold in the answer, in a cited source, declined."""
    rows = []
    for rep in reports:
        for r in rep["retrieval"]:
            mode = f"{r['mode']}, filtered" if r.get("filtered") else r["mode"]
            for figure, key in (("nDCG@10", "ndcg_by_kind"), ("R@5", "recall_5_by_kind")):
                if r.get(key):
                    kinds = ", ".join(f"{kind} {v:.3f}" for kind, v in r[key].items())
                    rows.append(f"| {_name(rep)} | {mode} | {figure} | {kinds} |")
        answered = [a for a in rep.get("answers", {}).get("rows", []) if a.get("kind") and "error" not in a]
        figures = (("gold in answer (any form)", "gold_in_answer_any_form"),
                   ("a cited source holds gold", "gold_in_cited_source"), ("declined", "abstained"))  # fmt: skip
        for figure, key in figures:
            by: dict[str, list[float]] = {}
            for a in answered:
                by.setdefault(a["kind"], []).append(float(a[key]))
            for kind, values in sorted(by.items()):
                rows.append(f"| {_name(rep)} | answers | {figure} | {kind}: "
                            f"{sum(values) / len(values):.3f} of {len(values)} |")  # fmt: skip
    if not rows:
        return []
    return ["", "| dataset | mode | figure | by question kind |", "|---|---|---|---|", *rows]


def _unanswerable_table(reports: list[dict[str, Any]]) -> list[str]:
    asked = [rep for rep in reports if "unanswerable" in rep]
    if not asked:
        return []
    lines = [
        "",
        "| dataset | questions the documents cannot answer | said so | flagged unsupported | neither (invented "
        "unflagged) | cite |",
        "|---|---|---|---|---|---|",
    ]
    for rep in asked:
        rows = [r for r in rep["unanswerable"]["rows"] if "error" not in r]
        said = sum(1 for r in rows if r["abstained"])
        flagged = sum(1 for r in rows if not r["abstained"] and r["unsupported"])
        n = max(1, len(rows))
        lines.append(
            f"| {_name(rep)} | {len(rows)} | {said / n:.3f} | {flagged / n:.3f} "
            f"| {(len(rows) - said - flagged) / n:.3f} | {rep['unanswerable']['cite_rate']:.3f} |"
        )
    return lines


def main(argv: list[str] | None = None, prog: str = "python -m cli.eval") -> int:
    args = parse_args(argv, prog)
    modes = [m.strip() for m in args.compare.split(",") if m.strip()]
    unknown = [m for m in modes if m not in EVAL_MODES]
    if unknown or not modes:
        sys.stderr.write(f"error: unknown retrieval mode(s) {unknown or modes}; available: {', '.join(EVAL_MODES)}\n")
        return 2
    if args.mixed_with and (args.questions_from or args.unanswerable):
        sys.stderr.write("error: --mixed-with asks each file's own questions: leave out --questions-from and "
                         "--unanswerable\n")  # fmt: skip
        return 2
    paths = [*args.datasets, args.questions_from, args.mixed_with]
    missing = [str(p) for p in paths if p is not None and not p.is_file()]
    if missing:
        sys.stderr.write(f"error: no such file: {', '.join(missing)}\n")
        return 2
    try:
        settings = load_settings()
        configure_logging("WARNING", "text")
        reports = asyncio.run(run(args, settings, modes))
    except (ConfigError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(reports, ensure_ascii=False, indent=2))
    if args.json:
        sys.stdout.write(json.dumps(reports, ensure_ascii=False, indent=2) + "\n")
    else:
        ui.markdown(render(reports, args.k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
