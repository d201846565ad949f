"""Summarise a document, or everything a filter selects, with the running service: a progress bar while
every chunk is read, then the summary as it is written, then the sources it cites.

    python -m cli.summarize --space mail --document minutes/2024-03-15.md --style decisions
    python -m cli.summarize --space mail --chat "Проект Дельта" --after 2024-03-11T00:00+03:00 --style action_items
    python -m cli.summarize --space docs --folder specs --json

The API key comes from RAG_API_KEY; the service from --url, else SERVICE_URL, else http://HOST:PORT.
Exit status: 0 summarised, 1 the service refused or failed (its message is shown), 2 bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

import httpx

from backend.config import SPACE_RE, ConfigError
from cli import ui
from cli.ask import _refused, _who_and_when, service_client

STYLES = ("brief", "detailed", "decisions", "action_items")


def parse_args(argv: list[str] | None, prog: str = "python -m cli.summarize") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", required=True, help="space the documents are in")
    p.add_argument("--url", help="the service (default: SERVICE_URL, else http://HOST:PORT)")
    p.add_argument("--style", choices=STYLES, default="brief", help="what to write (default: brief)")
    p.add_argument("--language", choices=("ru", "en"), help="the summary's language (default: the documents')")
    p.add_argument("--model", help="a named model of the service (GET /models; default: its default model)")
    p.add_argument("--json", action="store_true", help="print the whole JSON response (no streaming)")
    s = p.add_argument_group("what to summarise: one document, or what the filters select (--all: the whole space)")
    s.add_argument("--document", help="a document's path (as GET /documents lists it) or id")
    s.add_argument("--all", action="store_true", help="every document of the space")
    s.add_argument("--folder", action="append", default=[], help="documents in this folder; repeatable")
    s.add_argument("--file-type", action="append", default=[], help="extension, e.g. pdf; repeatable")
    s.add_argument("--participant", action="append", default=[], metavar="NAME",
                   help="conversations: who wrote or received the messages; repeatable")  # fmt: skip
    s.add_argument("--chat", action="append", default=[], help="a chat or mail thread title; repeatable")
    s.add_argument("--after", help="messages sent at or after this time (ISO 8601 with a zone)")
    s.add_argument("--before", help="messages sent before this time (ISO 8601 with a zone)")
    return p.parse_args(argv)


def _filters(args: argparse.Namespace) -> dict[str, Any] | None:
    filters: dict[str, Any] = {}
    for key, value in (("folders", args.folder), ("file_types", args.file_type), ("participants", args.participant)):
        if value:
            filters[key] = value
    if args.chat:  # a title may be a chat's or a mail thread's
        filters["chat"] = filters["thread"] = args.chat
    if args.after:
        filters["sent_after"] = args.after
    if args.before:
        filters["sent_before"] = args.before
    return filters if filters or args.all else None


def _document_id(http: httpx.Client, space: str, wanted: str) -> str | httpx.Response | None:
    """The id of the document with this path or id (None: there is none), or the service's refusal."""
    response = http.get("/documents", params={"space_id": space})
    if response.status_code != 200:
        return response
    for doc in response.json()["documents"]:
        if wanted in (doc["path"], doc["id"]):
            return str(doc["id"])
    return None


def main(argv: list[str] | None = None, prog: str = "python -m cli.summarize") -> int:
    args = parse_args(argv, prog)
    if not SPACE_RE.match(args.space):
        ui.error(f"invalid --space {args.space!r}: use 1-63 of a-z 0-9 - _")
        return 2
    filters = _filters(args)
    if (args.document is None) == (filters is None):
        ui.error("say what to summarise: --document PATH, or filters (--folder, --chat, --after...), or --all")
        return 2
    try:
        client = service_client(args.url, 3600)
    except ConfigError as exc:
        ui.error(str(exc))
        return 2
    try:
        with client as http:
            body: dict[str, Any] = {"space_id": args.space, "style": args.style, "language": args.language,
                                    "model": args.model}  # fmt: skip
            if args.document is not None:
                found = _document_id(http, args.space, args.document)
                if isinstance(found, httpx.Response):
                    return _refused(found)
                if found is None:
                    ui.error(f"404: no document {args.document!r} in space {args.space!r} (GET /documents lists them)")
                    return 1
                body["document_id"] = found
            else:
                body["filters"] = filters
            if args.json:
                response = http.post("/summarize", json=body)
                if response.status_code != 200:
                    return _refused(response)
                sys.stdout.write(json.dumps(response.json(), ensure_ascii=False, indent=2) + "\n")
                return 0
            return _stream(http, {**body, "stream": True})
    except httpx.HTTPError as exc:
        ui.error(f"cannot reach the service at {client.base_url}: {exc} (is it running? --url)")
        return 1


def _stream(http: httpx.Client, body: dict[str, Any]) -> int:
    with http.stream("POST", "/summarize", json=body) as response, contextlib.ExitStack() as bar:
        if response.status_code != 200:
            response.read()
            return _refused(response)
        advance = None
        shown = 0
        event = ""
        streamed: list[str] = []
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
                continue
            if not line.startswith("data: "):
                continue
            data = json.loads(line[6:])
            if event == "progress":
                if advance is None:
                    advance = bar.enter_context(ui.progress("reading", data["total"]))
                advance(data["done"] - shown, note="LLM calls", total=data["total"])  # merges, re-reads: it grows
                shown = data["done"]
            elif event == "token":
                if advance is not None:  # every chunk read: the summary is being written
                    bar.close()
                    advance = None
                streamed.append(data["delta"])
                sys.stdout.write(data["delta"])
                sys.stdout.flush()
            elif event == "error":
                sys.stdout.write("\n")
                ui.error(data["error"]["message"])
                return 1
            elif event == "done":
                sys.stdout.write("\n")
                if data["summary"] != "".join(streamed).strip():  # citations moved or added by the check
                    ui.say(f"with its citations checked:\n{data['summary']}", "dim")
                _show(data)
    return 0


def _show(data: dict[str, Any]) -> None:
    unsupported = data["checks"]["unsupported"]
    if unsupported:
        ui.say(f"warning: {unsupported} statement(s) of this summary are in none of the chunks read", "yellow")
    if data["sources"]:
        ui.say("")
        rows = [(f"[{s['n']}]", s["path"] or "?", _who_and_when(s)) for s in data["sources"]]
        ui.table("Cited", ["n", "document", "who, when"], rows, styles=["bold cyan", "", ""])
    coverage = data["coverage"]
    how = "stored earlier" if data["cached"] else f"LLM calls: {data['llm_calls']}, {data['seconds']:.1f} s"
    ui.say(f"read {coverage['chunks_read']} of {coverage['chunks_selected']} chunks; {how}; "
           f"{data['backend']} ({data['model']})", "dim")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
