"""Bring spaces up to the current collection schema and lexical analyzer, without re-embedding.

    python -m cli.migrate --check          # which spaces need it (exit 1 if any)
    python -m cli.migrate --space docs     # one space
    python -m cli.migrate --all            # every space that needs it
    python -m cli.migrate --from-local-mode  # the embedded store of before Qdrant Edge, moved into Edge
    python -m cli.migrate --to http://qdrant:6333     # every space of QDRANT_PATH into a Qdrant server/cluster
    python -m cli.migrate --from http://qdrant:6333 --space docs  # a space of a server into QDRANT_PATH

Needed for spaces indexed before hybrid retrieval (they answer dense queries only until migrated), after
changing LEXICAL_WINDOW_WORDS, and to give spaces made before the 8-bit copy (or after changing
QDRANT_QUANTIZATION) what the setting says: that one rebuilds the index only, nothing copied. Stop the
service first: a migration must be the only writer. Safe to interrupt: run it again and it finishes; the
original collection is replaced only after a complete, counted copy exists.

--to / --from copy vectors (dense and sparse) and payloads as stored, nothing re-embedded, and check
each collection by its point count and ids; the source is never changed. Stop the service (and any
index_cli) first. Afterwards point the service at the copy: QDRANT_URL=<url> (--to), or unset it (--from).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Literal

from backend.adapters.local_mode_import import BACKUP
from backend.adapters.qdrant_nodes import ClusterOptions
from backend.adapters.store import StoreError, StoreLockedError
from backend.adapters.store_copy import StoreCopyError
from backend.config import SPACE_RE, ConfigError, Settings, http_urls, load_settings
from backend.container import build_ingest, cluster_options, load_embedder, open_store
from backend.observability import Metrics, configure_logging
from backend.services.migration import MigrationError, MigrationService, copy_spaces, import_local_mode_store

log = logging.getLogger("cli.migrate")


def parse_args(argv: list[str] | None, prog: str = "python -m cli.migrate") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    which = p.add_mutually_exclusive_group()
    p.add_argument("--space", action="append", help="space to migrate, or to copy with --to/--from (repeatable)")
    which.add_argument("--all", action="store_true", help="every space that needs it")
    which.add_argument("--check", action="store_true", help="only list the spaces that need it")
    which.add_argument(
        "--from-local-mode",
        action="store_true",
        help="move QDRANT_PATH, written by the embedded store of before Qdrant Edge, into Edge shards",
    )
    which.add_argument("--to", metavar="URL", help="copy the embedded store (QDRANT_PATH) into this Qdrant server "
                       "(several node URLs of a cluster: comma-separated)")  # fmt: skip
    which.add_argument("--from", dest="from_url", metavar="URL",
                       help="copy spaces of this Qdrant server into the embedded store (QDRANT_PATH)")  # fmt: skip
    cluster = p.add_argument_group(
        "--to a cluster: how the copied collections are laid out (default: the "
        "QDRANT_SHARD_NUMBER, QDRANT_REPLICATION_FACTOR, QDRANT_WRITE_CONSISTENCY_FACTOR settings)"
    )
    cluster.add_argument("--shards", type=int, help="shards per collection")
    cluster.add_argument("--replicas", type=int, help="copies of each shard")
    cluster.add_argument("--write-consistency", type=int, help="replicas that confirm a write")
    args = p.parse_args(argv)
    if not (args.space or args.all or args.check or args.from_local_mode or args.to or args.from_url):
        p.error("say what to do: --space, --all, --check, --from-local-mode, --to or --from")
    if args.space and (args.all or args.check or args.from_local_mode):
        p.error("--space goes alone, or with --to / --from")
    given = [f for f in ("shards", "replicas", "write_consistency") if getattr(args, f) is not None]
    if given and not args.to:
        p.error("--shards, --replicas and --write-consistency go with --to")
    if any(getattr(args, f) < 1 for f in given):
        p.error("--shards, --replicas and --write-consistency take a number of at least 1")
    return args


async def copy(args: argparse.Namespace, settings: Settings) -> int:
    """--to / --from: the embedded store <-> a Qdrant server, as stored (backend/adapters/store_copy.py)."""
    try:
        url = http_urls(args.to or args.from_url)
    except ValueError as exc:
        sys.stderr.write(f"error: {args.to or args.from_url!r} {exc}\n")
        return 2
    assert url is not None
    direction: Literal["to", "from"] = "to" if args.to else "from"
    s = cluster_options(settings)  # the flags, else the QDRANT_* settings; reads need no consistency here
    cluster = ClusterOptions(shard_number=args.shards or s.shard_number,
                             replication_factor=args.replicas or s.replication_factor,
                             write_consistency_factor=args.write_consistency or s.write_consistency_factor)  # fmt: skip
    key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None

    def progress(name: str, written: int) -> None:
        log.info("%s: %d points written", name, written)

    copied = await copy_spaces(settings.qdrant_path, url, direction=direction, prefix=settings.collection_prefix,
                               spaces=args.space, api_key=key, timeout_s=max(60.0, settings.qdrant_timeout_s),
                               cluster=cluster, progress=progress)  # fmt: skip
    for c in copied:
        note = "" if c.written == c.points else f" ({c.points - c.written} copied by an earlier run)"
        sys.stdout.write(f"{c.name}: {c.points} points, counts and ids checked{note}\n")
    where = f"QDRANT_URL={url}" if direction == "to" else f"QDRANT_PATH={settings.qdrant_path} without QDRANT_URL"
    sys.stdout.write(f"{len(copied)} collections copied; the source is unchanged. Point the service at the copy: "
                     f"{where}\n")  # fmt: skip
    return 0


async def import_local_mode(path: Path) -> int:
    imported = await import_local_mode_store(path)
    for c in imported:
        sys.stdout.write(f"{c.name}: {c.points} points{' (copied by an earlier run)' if c.skipped else ''}\n")
    sys.stdout.write(
        f"{path} now holds Qdrant Edge shards; the old files are in {path / BACKUP} (delete it once the "
        "service answers as before)\n"
    )
    return 0


async def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.to or args.from_url:
        return await copy(args, settings)
    if args.from_local_mode:
        if settings.qdrant_url:
            sys.stderr.write("error: --from-local-mode moves the embedded store (QDRANT_PATH); QDRANT_URL is set\n")
            return 2
        return await import_local_mode(settings.qdrant_path)
    try:
        store = open_store(settings)
    except StoreLockedError as exc:
        sys.stderr.write(f"error: {exc}\nStop the service, then run the migration again.\n")
        return 2
    try:
        embedder = load_embedder(settings)
        service = MigrationService(store, build_ingest(settings, store, embedder, Metrics()))
        names = sorted({*await store.list_space_names(), *await store.staged_space_names()})
        if args.space:
            unknown = [s for s in args.space if not SPACE_RE.match(s) or s not in names]
            if unknown:
                sys.stderr.write(f"error: no such space: {', '.join(unknown)} (spaces: {', '.join(names) or 'none'})\n")
                return 2
        reasons = {s: await service.reasons(s) for s in names if not args.space or s in args.space}
        targets = args.space or [s for s in names if reasons[s]]
        if args.check:
            for s in targets:
                sys.stdout.write(f"{s}: needs migration ({'; '.join(reasons[s])})\n")
            sys.stdout.write(f"{len(targets)} of {len(names)} spaces need migration\n")
            return 1 if targets else 0
        for space in targets:
            result = await service.migrate(space)
            if result.action == "requantized":
                if result.index_build_s is None:
                    build = "the Qdrant server builds its index again by itself"
                elif result.index_build_s:
                    build = f"index built again in {result.index_build_s:.1f} s"
                else:
                    build = "no index yet: its first build follows the setting"
                sys.stdout.write(f"{space}: dense vectors now kept as {settings.qdrant_quantization}; {build}; "
                                 f"{result.chunks} chunks, nothing re-embedded\n")  # fmt: skip
                continue
            sys.stdout.write(
                f"{space}: {result.action}, {result.chunks} chunks (was schema {result.from_schema}, "
                f"lexical {result.from_lexical!r})\n"
            )
        if not targets:
            sys.stdout.write("every space is up to date\n")
        return 0
    finally:
        store.close()


def main(argv: list[str] | None = None, prog: str = "python -m cli.migrate") -> int:
    args = parse_args(argv, prog)
    configure_logging("INFO", "text")
    try:
        return asyncio.run(run(args))
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except (MigrationError, StoreError, StoreCopyError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
