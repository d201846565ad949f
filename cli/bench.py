"""Benchmark LLM backends and the service on your own hardware: latency, throughput and answer quality.

    python -m cli.bench --target ollama=service:http://127.0.0.1:8000 --target vllm=service:http://127.0.0.1:9000 \\
        --questions ../shared/eval/xquad.ru.dev.json --concurrency 1,4,16,64
    python -m cli.bench --target vllm=vllm:http://127.0.0.1:8001/v1 --target ollama=ollama:http://127.0.0.1:11434 \\
        --questions questions.txt --rate 0.5,1,2

A target is NAME=KIND:URL. KIND is `service` (our /ask, streamed; --space chooses the space), `vllm` (a
vLLM server's OpenAI-compatible base URL, ending in /v1), `openai` (any other OpenAI-compatible server:
llama.cpp, ...) or `ollama` (its root URL). Raw servers decode greedily with --repeat-penalty (the
service's default, 1.0), sent in each server's own field.
Questions: a SQuAD-format JSON (gold answers give quality figures; raw servers get the question's own
paragraph as context, the service retrieves its own) or a text file, one question per line.
Each load level (closed loop at each --concurrency, open loop at each --rate) sends --requests
requests or runs --max-seconds, whichever ends first, after --warmup requests that are not counted.
Writes a markdown table (stdout and bench.md), bench.json and PNG plots into --out-dir.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, get_args

import httpx

from backend.adapters.llm import LLMError
from backend.services.evaluation import load_squad
from cli import ui
from cli.benchkit.clients import Client, Kind, Prompt, Sample, Target
from cli.benchkit.load import closed_loop, open_loop
from cli.benchkit.report import markdown, plots
from cli.benchkit.stats import summarise


class UsageError(Exception):
    """A command-line value the user must fix."""


def parse_target(raw: str, space: str) -> Target:
    """NAME=KIND[/MODEL]:URL; MODEL: the service's named model (LLM_MODELS), or a raw server's model."""
    name, sep, rest = raw.partition("=")
    kind_model, sep2, url = rest.partition(":")
    kind, _, model = kind_model.partition("/")
    if not sep or not sep2 or not name or kind not in get_args(Kind) or not url.startswith(("http://", "https://")):
        raise UsageError(
            f"--target {raw!r}: expected NAME=KIND[/MODEL]:URL with KIND one of service, vllm, openai, ollama, "
            "e.g. vllm=vllm:http://127.0.0.1:8001/v1 or large=service/large:http://127.0.0.1:9000"
        )
    return Target(name, kind, url.rstrip("/"), model=model or None, space=space)  # type: ignore[arg-type]


def parse_numbers(raw: str | None, option: str, *, integer: bool) -> list[float]:
    if not raw:
        return []
    try:
        values = [int(x) if integer else float(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{option} {raw!r}: expected comma-separated {'integers' if integer else 'numbers'}") from None
    if any(v <= 0 for v in values):
        raise UsageError(f"{option} {raw!r}: every value must be above 0")
    return [float(v) for v in values]


def load_prompts(path: Path, limit: int | None) -> list[Prompt]:
    if not path.is_file():
        raise UsageError(f"--questions {path}: no such file")
    if path.suffix == ".json":
        try:
            evalset = load_squad(path)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        contexts = {d.path: d.data.decode() for d in evalset.documents}
        prompts = [Prompt(q.question, contexts[q.gold_path], q.answers) for q in evalset.questions]
    else:
        prompts = [Prompt(line.strip()) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise UsageError(f"--questions {path}: no questions in it")
    return prompts[:limit] if limit else prompts


class Progress:
    """One status line on stderr, rewritten in place on a terminal, else a line per 25%."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.errors = label, total, 0, 0
        self.tty = sys.stderr.isatty()
        self.started = time.perf_counter()
        self._shown = -1

    def __call__(self, sample: Sample) -> None:
        self.done += 1
        self.errors += not sample.ok
        quarter = 4 * self.done // max(self.total, 1)
        if self.tty or quarter != self._shown or self.done == self.total:
            self._shown = quarter
            line = (f"{self.label}: {self.done}/{self.total} done, {self.errors} errors, "
                    f"{time.perf_counter() - self.started:.0f} s")  # fmt: skip
            sys.stderr.write(("\r" + line) if self.tty else line + "\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


async def bench(args: argparse.Namespace, targets: list[Target], prompts: list[Prompt],
                concurrency: list[float], rates: list[float]) -> list[dict[str, Any]]:  # fmt: skip
    results: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=httpx.Timeout(args.timeout, connect=10), limits=limits) as http:
        for target in targets:
            client = Client(http, target, args.max_tokens, args.repeat_penalty)
            try:
                await client.resolve_model()
            except (httpx.HTTPError, LLMError) as exc:
                raise UsageError(
                    f"target {target.name} ({target.url}) does not answer as {target.kind}: {exc}"
                ) from None
            for prompt in prompts[: args.warmup]:
                await client.run(prompt)
            levels = [("closed", c) for c in concurrency] + [("open", r) for r in rates]
            for kind, value in levels:
                load = f"concurrency {value:g}" if kind == "closed" else f"{value:g} req/s"
                progress = Progress(f"{target.name}, {load}", args.requests)
                if kind == "closed":
                    run = await closed_loop(client, prompts, int(value), args.requests, args.max_seconds, progress)
                else:
                    run = await open_loop(client, prompts, value, args.requests, args.max_seconds, progress)
                progress.close()
                results.append(
                    {
                        "target": target.name,
                        "kind": target.kind,
                        "url": target.url,
                        "model": target.model,
                        "load": load,
                        "load_kind": kind,
                        "load_value": value,
                        "stats": summarise(run),
                    }
                )
    return results


def _penalty(raw: str) -> float | None:
    if raw == "server":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r}: expected a number in (0, 2] or 'server'") from None
    if not 0 < value <= 2:
        raise argparse.ArgumentTypeError(f"{raw!r}: expected a number in (0, 2] or 'server'")
    return value


def parse_args(argv: list[str] | None, prog: str = "python -m cli.bench") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument(
        "--target",
        action="append",
        required=True,
        help="NAME=KIND[/MODEL]:URL, once per target (service/MODEL: a named model of the service)",
    )
    p.add_argument("--questions", type=Path, required=True, help="SQuAD-format JSON or a text file")
    p.add_argument("--limit-questions", type=int, help="use only the first N questions")
    p.add_argument("--concurrency", default="1,4,16", help="closed-loop levels (default 1,4,16)")
    p.add_argument("--rate", help="open-loop request rates per second, e.g. 0.5,1,2 (default: none)")
    p.add_argument("--requests", type=int, default=32, help="requests per level (default 32)")
    p.add_argument("--max-seconds", type=float, default=300, help="time limit per level (default 300)")
    p.add_argument("--warmup", type=int, default=2, help="uncounted requests per target first (default 2)")
    p.add_argument("--max-tokens", type=int, default=128, help="answer length for raw servers (default 128)")
    p.add_argument("--repeat-penalty", type=_penalty, default=1.0, metavar="P",
                   help="repetition penalty for raw servers, as LLM_REPEAT_PENALTY (default 1.0 = none; "
                        "'server' sends none: each server's own default)")  # fmt: skip
    p.add_argument("--space", default="demo", help="space asked on service targets (default demo)")
    p.add_argument("--timeout", type=float, default=300, help="longest wait for one request (default 300 s)")
    p.add_argument("--out-dir", type=Path, default=Path("bench-out/bench"), help="where results go")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout instead of the table")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = "python -m cli.bench") -> int:
    args = parse_args(argv, prog)
    try:
        targets = [parse_target(t, args.space) for t in args.target]
        if len({t.name for t in targets}) != len(targets):
            raise UsageError("two targets share a name; give each --target its own NAME")
        concurrency = parse_numbers(args.concurrency, "--concurrency", integer=True)
        rates = parse_numbers(args.rate, "--rate", integer=False)
        if not concurrency and not rates:
            raise UsageError("nothing to run: give --concurrency and/or --rate")
        if args.requests < 1 or args.warmup < 0:
            raise UsageError("--requests must be at least 1 and --warmup at least 0")
        prompts = load_prompts(args.questions, args.limit_questions)
        results = asyncio.run(bench(args, targets, prompts, concurrency, rates))
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown(results)
    (args.out_dir / "bench.md").write_text(table)
    (args.out_dir / "bench.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    written = [] if args.no_plots else plots(results, args.out_dir)
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    else:
        ui.markdown(table)
    sys.stderr.write(f"\nwritten: {', '.join(str(p) for p in [args.out_dir / 'bench.json', *written])}\n")
    failed = [r for r in results if r["stats"]["completed"] == 0]
    for r in failed:
        sys.stderr.write(
            f"error: {r['target']} at {r['load']}: every request failed, e.g. {r['stats']['error_examples']}\n"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
