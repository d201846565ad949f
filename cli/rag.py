"""`rag`: one entry point for the service's command-line tools. `rag COMMAND --help` for each."""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import sys
from collections.abc import Callable
from typing import NamedTuple

from cli import ui


class Command(NamedTuple):
    module: str
    summary: str
    example: str


COMMANDS = {
    "index": Command("cli.index_cli", "index a folder into a space; re-runs write only what changed",
                     "rag index --dir ~/mail --space mail --prune"),
    "ask": Command("cli.ask", "ask the running service; the answer streams, then its sources",
                   'rag ask "Когда заменили горелки?" --space mail'),
    "summarize": Command("cli.summarize", "summarise a document or a filtered selection, every chunk read",
                         'rag summarize --space mail --chat "Проект Дельта" --style decisions'),
    "plan": Command("cli.plan", "will a model fit the GPU, and with which vLLM settings",
                    "rag plan qwen3-30b-a3b@fp8 --gpu rtx-pro-6000 --write-env .env.vllm"),
    "eval": Command("cli.eval", "retrieval (and answer) quality on a SQuAD-format question set",
                    "rag eval xquad.ru.dev.json --compare hybrid,dense"),
    "bench": Command("cli.bench", "latency and throughput of /ask or an LLM server under load",
                     "rag bench --target vllm=service:http://127.0.0.1:9000 --questions q.txt --concurrency 1,8"),
    "migrate": Command("cli.migrate", "bring spaces up to the current schema; copy them to or from a Qdrant server",
                       "rag migrate --check | rag migrate --to http://qdrant:6333"),
}  # fmt: skip


def usage() -> None:
    ui.say("usage: rag COMMAND [options]      rag COMMAND --help: that command's options", "bold")
    ui.say("")
    width = max(map(len, COMMANDS)) + 2
    for name, c in COMMANDS.items():
        ui.say(f"  {name:<{width}}{c.summary}", "bold")
        ui.say(f"  {'':<{width}}e.g. {c.example}", "dim")
    ui.say("")
    ui.say("Most commands take --json for scripts. The service's address and API key: SERVICE_URL (or --url,")
    ui.say("--service) and RAG_API_KEY. Settings come from the environment or ./.env (docs/configuration.md).")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        usage()
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        ui.say(f"rag {importlib.metadata.version('rag-service')}")
        return 0
    name, rest = args[0], args[1:]
    command = COMMANDS.get(name)
    if command is None:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"; did you mean `rag {close[0]}`?" if close else f"; the commands: {', '.join(COMMANDS)}"
        ui.error(f"unknown command {name!r}{hint}")
        return 2
    # Imported on demand: `rag plan` need not load torch and the embedder.
    run: Callable[..., int] = importlib.import_module(command.module).main
    return run(rest, prog=f"rag {name}")


if __name__ == "__main__":
    sys.exit(main())
