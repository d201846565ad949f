"""The citation check of today run again on the answers of a stored `cli.eval --answers` run, no LLM needed.

    .venv/bin/python -m benchmarks.citation_recheck bench-out/eval-answers-mixed-ru.json     # 1 min per run

Each report of the file is rebuilt as `cli.eval` built it (the dataset, `--questions-from`, `--mixed-with`
it records) in a throwaway embedded store; every answered question is retrieved again and the service
selects its passages as it does for the prompt (`AnswerService.select_passages`: the cut of weak passages,
the passage that carried the relevance floor); the model's raw answer, stored in the run, is checked
against them. Greedy answers need not be asked again to see what a change of the check does: the run's
own figures (the check of its day) and today's are printed side by side, per question kind.
A question counts as "reproduced" when today's check gives the cited set and the flag the run stored:
with the check unchanged, every one (the passages are the same, so the context budget, not re-applied
here, dropped none: five 128-token chunks fit the 4k window).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from backend.config import load_settings
from backend.container import throwaway_container
from backend.services import eval_metrics as m
from backend.services.citations import check_citations
from backend.services.evaluation import EvalSet, Evaluator, arranged, load_dataset


def rebuilt(report: dict[str, Any]) -> EvalSet:
    """The evaluation set `cli.eval` built for this report."""
    translation, other_half = (load_dataset(Path(report[k])) if report.get(k) else None
                               for k in ("questions_from", "mixed_with"))  # fmt: skip
    return arranged(load_dataset(Path(report["dataset"])), translation, other_half)


def figures(rows: list[dict[str, Any]], side: str) -> dict[str, Any]:
    citing = [r for r in rows if r[f"{side}_cited"]]
    return {
        "questions": len(rows),
        "citing": len(citing),
        "cited_holds_gold": sum(r[f"{side}_holds_gold"] for r in citing),
        "flagged": sum(r[f"{side}_unsupported"] > 0 for r in rows),
    }


async def recheck(path: Path, reports: list[dict[str, Any]], top_k: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with throwaway_container(load_settings()) as container:
        for i, report in enumerate(reports):
            stored = {r["id"]: r for r in report.get("answers", {}).get("rows", []) if "error" not in r}
            if not stored:
                continue
            evalset, space = rebuilt(report), f"recheck-{i}"
            await Evaluator(container.ingest, container.retrieval, container.answers).index(space, evalset)
            rows: list[dict[str, Any]] = []
            for q in evalset.questions:
                run = stored.get(q.id)
                if run is None:
                    continue
                _, decision, passages = await container.answers.select_passages(space, q.question, top_k)
                if decision.nearest is not None:  # declined by the floor: no answer to check
                    continue
                texts = [str(c.payload.get("text", "")) for c in passages]
                now = check_citations(run["raw_answer"], texts)
                holds = m.contains_gold(" ".join(texts[n - 1] for n in now.cited), q.answers) if now.cited else 0.0
                same_flag = (now.unsupported > 0) == (run["unsupported"] > 0)
                rows.append({
                    "id": q.id, "kind": q.kind or "all",
                    "stored_cited": run["cited"], "stored_holds_gold": run["gold_in_cited_source"],
                    "stored_unsupported": run["unsupported"],
                    "now_cited": sorted(now.cited), "now_holds_gold": holds, "now_unsupported": now.unsupported,
                    "reproduced": sorted(now.cited) == run["cited"] and same_flag,
                })  # fmt: skip
            for kind in sorted({r["kind"] for r in rows}):
                of_kind = [r for r in rows if r["kind"] == kind]
                line = {"file": str(path), "dataset": report["dataset"], "kind": kind,
                        "reproduced": sum(r["reproduced"] for r in of_kind),
                        "stored": figures(of_kind, "stored"), "now": figures(of_kind, "now")}  # fmt: skip
                sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
                out.append({**line, "rows": of_kind})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="JSON files written by cli.eval --answers --out")
    p.add_argument("--top-k", type=int, default=5, help="the run's top_k (cli.eval's default: 5)")
    p.add_argument("--out", type=Path, default=Path("bench-out/citation-recheck.json"))
    args = p.parse_args()
    results = [
        line
        for path in args.runs
        for line in asyncio.run(recheck(path, json.loads(path.read_text(encoding="utf-8")), args.top_k))
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
