"""Ask the running service a question; the answer streams in, then its numbered sources.

    python -m cli.ask "Когда закончили замену горелок?" --space mail
    python -m cli.ask "What is the pump's pressure?" --space demo --url http://gpu-box:9000 --json
    python -m cli.ask "Что Петров писал о бюджете?" --space mail --participant Петров --after 2024-03-11T00:00+03:00

The API key comes from RAG_API_KEY; the service from --url, else SERVICE_URL, else http://HOST:PORT.
Exit status: 0 answered, 1 the service refused or failed (its message is shown), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

import httpx

from backend.config import SPACE_RE, ConfigError, load_settings
from cli import ui


def parse_args(argv: list[str] | None, prog: str = "python -m cli.ask") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("question", help="the question, in quotes")
    p.add_argument("--space", required=True, help="space to answer from")
    p.add_argument("--url", help="the service (default: SERVICE_URL, else http://HOST:PORT)")
    p.add_argument("--top-k", type=int, help="chunks to retrieve (1-50; default: the service's TOP_K)")
    p.add_argument("--mode", choices=["hybrid", "dense", "sparse"], help="retrieval mode (default: the service's)")
    p.add_argument("--model", help="a named model of the service (GET /models; default: its default model)")
    p.add_argument("--json", action="store_true", help="print the whole JSON response (no streaming)")
    f = p.add_argument_group("conversation filters (mail and chat exports: docs/conversations.md)")
    f.add_argument("--participant", action="append", default=[], metavar="NAME",
                   help="who wrote or received the messages (name, surname or address); repeatable")  # fmt: skip
    f.add_argument("--chat", action="append", default=[], help="a chat or mail thread title; repeatable")
    f.add_argument(
        "--after", help="messages sent at or after this time (ISO 8601 with a zone, e.g. 2024-03-11T00:00+03:00)"
    )
    f.add_argument("--before", help="messages sent before this time (ISO 8601 with a zone)")
    return p.parse_args(argv)


def _body(args: argparse.Namespace, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"q": args.question, "space_id": args.space, "stream": stream}
    if args.top_k:
        body["top_k"] = args.top_k
    if args.mode:
        body["mode"] = args.mode
    if args.model:
        body["model"] = args.model
    filters: dict[str, Any] = {}
    if args.participant:
        filters["participants"] = args.participant
    if args.chat:  # a title may be a chat's or a mail thread's
        filters["chat"] = filters["thread"] = args.chat
    if args.after:
        filters["sent_after"] = args.after
    if args.before:
        filters["sent_before"] = args.before
    if filters:
        body["filters"] = filters
    return body


def _refused(response: httpx.Response) -> int:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:300]
    ui.error(f"{response.status_code}: {message}")
    return 1


def _show_sources(sources: list[dict[str, Any]], cited: set[int]) -> None:
    if not sources:
        return
    ui.say("")
    rows = [(f"[{s['n']}]" + (" *" if s["n"] in cited else ""), s["path"] or "?", _who_and_when(s), f"{s['score']:.3f}")
            for s in sources]  # fmt: skip
    ui.table("Sources (* cited)", ["n", "document", "who, when", "score"], rows, styles=["bold cyan", "", "", "dim"])


def _who_and_when(source: dict[str, Any]) -> str:
    """Senders and first message time of a chunk of a chat or mail thread; empty for a plain document."""
    c = source.get("conversation")
    if not c:
        return ""
    people = list(dict.fromkeys(m["sender"] for m in c["messages"]))
    when = datetime.fromtimestamp(c["sent_first"], tz=UTC).strftime("%Y-%m-%d %H:%M UTC") if c["sent_first"] else ""
    return ", ".join(people[:3] + ([f"+{len(people) - 3}"] if len(people) > 3 else []) + ([when] if when else []))


def service_client(url: str | None, timeout_s: float) -> httpx.Client:
    """A client of the service at `url`, else SERVICE_URL, else http://HOST:PORT, with RAG_API_KEY's key.
    Raises ConfigError when the settings that give the address are wrong."""
    base = (url or load_settings().resolved_service_url).rstrip("/")
    key = os.environ.get("RAG_API_KEY", "")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=base, headers=headers, timeout=httpx.Timeout(timeout_s, connect=5))


def main(argv: list[str] | None = None, prog: str = "python -m cli.ask") -> int:
    args = parse_args(argv, prog)
    if not SPACE_RE.match(args.space):
        ui.error(f"invalid --space {args.space!r}: use 1-63 of a-z 0-9 - _")
        return 2
    try:
        client = service_client(args.url, 600)
    except ConfigError as exc:
        ui.error(str(exc))
        return 2
    try:
        with client as http:
            if args.json:
                response = http.post("/ask", json=_body(args, stream=False))
                if response.status_code != 200:
                    return _refused(response)
                sys.stdout.write(json.dumps(response.json(), ensure_ascii=False, indent=2) + "\n")
                return 0
            return _stream(http, args)
    except httpx.HTTPError as exc:
        ui.error(f"cannot reach the service at {client.base_url}: {exc} (is it running? --url)")
        return 1


def _stream(http: httpx.Client, args: argparse.Namespace) -> int:
    sources: list[dict[str, Any]] = []
    streamed: list[str] = []
    with http.stream("POST", "/ask", json=_body(args, stream=True)) as response:
        if response.status_code != 200:
            response.read()
            return _refused(response)
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if event == "sources":
                    sources = data["sources"]
                elif event == "token":
                    streamed.append(data["delta"])
                    sys.stdout.write(data["delta"])
                    sys.stdout.flush()
                elif event == "error":
                    sys.stdout.write("\n")
                    ui.error(data["error"]["message"])
                    return 1
                elif event == "done":
                    sys.stdout.write("\n")
                    if data["answer"] != "".join(streamed).strip():  # citations moved or added by the check
                        ui.say(f"with its citations checked: {data['answer']}", "dim")
                    unsupported = (data.get("citations") or {}).get("unsupported", 0)
                    if unsupported:
                        ui.say(f"warning: {unsupported} statement(s) of this answer are not in the sources", "yellow")
                    _show_sources(sources, set(data.get("cited", [])))
                    t = data["timings"]
                    for notice in data.get("notices") or []:  # another model answered: say why
                        ui.say(f"note: {notice}", "yellow")
                    named = f"{data['model_name']}: " if data.get("model_name") else ""
                    ui.say(f"answered by {named}{data['backend']} ({data['model']}) in {t['total_ms'] / 1000:.1f} s, "
                           f"first token after {(t['llm_ttft_ms'] or 0) / 1000:.1f} s", "dim")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
