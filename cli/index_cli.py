"""Index a folder into a space: `python -m cli.index_cli --dir DIR --space NAME [--prune] [--dry-run]`.

Only new and changed files are read and embedded; unchanged ones are skipped by content hash. Works
whether or not the service is running (it hands the work to the service when the store is in use).
Exit codes: 0 done; 1 files failed with --strict, or nothing could be indexed; 2 usage/config error.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backend.config import SPACE_RE, ConfigError, Settings, load_settings
from backend.observability import configure_logging
from backend.services.ingest import FileResult, SourceFile
from backend.services.parsing import SUPPORTED_EXTENSIONS, is_supported
from cli import ui
from cli.ingest_targets import IngestTarget, TargetError, choose_target

log = logging.getLogger("index_cli")


@dataclass
class Summary:
    space: str
    target: str
    files: dict[str, int] = field(default_factory=dict)
    chunks_written: int = 0
    seconds: float = 0.0
    chunks_per_second: float = 0.0
    skipped_unsupported: int = 0
    failed: list[dict[str, str | None]] = field(default_factory=list)
    warnings: list[dict[str, object]] = field(default_factory=list)  # {path, warnings}: parts of files left out
    dry_run: bool = False


def parse_args(argv: list[str] | None, prog: str = "python -m cli.index_cli") -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Index a folder of documents into a space. Re-running only writes what changed.",
    )
    p.add_argument("--dir", required=True, type=Path, help="folder to index (recursively)")
    p.add_argument("--space", required=True, help="target space (lower-case letters, digits, - and _)")
    p.add_argument("--prune", action="store_true", help="delete indexed documents whose files are gone")
    p.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    p.add_argument("--strict", action="store_true", help="exit 1 if any file fails to parse")
    p.add_argument("--recreate", action="store_true", help="delete the space first, then index from scratch")
    p.add_argument("--service", metavar="URL", help="send the work to the service at URL (default: auto)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p.parse_args(argv)


def walk(root: Path) -> tuple[list[tuple[str, Path]], int]:
    """(relative POSIX path, file) for supported files, skipping hidden entries; and the unsupported count."""
    found: list[tuple[str, Path]] = []
    unsupported = 0
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if is_supported(path.name):
            found.append((rel.as_posix(), path))
        else:
            unsupported += 1
    return found, unsupported


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_files(files: list[tuple[str, Path]], unreadable: dict[str, str]) -> dict[str, str]:
    """{path: sha256} of the readable files; the others go to `unreadable` with the reason."""
    manifest = {}
    for rel, path in files:
        try:
            manifest[rel] = sha256_file(path)
        except OSError as exc:
            unreadable[rel] = f"cannot read the file: {exc.strerror or exc}"
    return manifest


def batches(
    paths: list[tuple[str, Path]], max_bytes: int, max_files: int, unreadable: dict[str, str]
) -> Iterator[list[SourceFile]]:
    batch: list[SourceFile] = []
    size = 0
    for rel, path in paths:
        try:
            data = path.read_bytes()
            mtime = path.stat().st_mtime
        except OSError as exc:  # vanished or locked since it was hashed
            unreadable[rel] = f"cannot read the file: {exc.strerror or exc}"
            continue
        if batch and (size + len(data) > max_bytes or len(batch) >= max_files):
            yield batch
            batch, size = [], 0
        batch.append(SourceFile(rel, data, modified_at=mtime))
        size += len(data)
    if batch:
        yield batch


async def run(args: argparse.Namespace, settings: Settings) -> tuple[Summary, int]:
    root: Path = args.dir
    files, unsupported = walk(root)
    on_disk = dict(files)
    unreadable: dict[str, str] = {}  # reported as failed, and never pruned: the file is still there
    manifest = hash_files(files, unreadable)

    target: IngestTarget = await choose_target(settings, args.service)
    summary = Summary(args.space, target.description, skipped_unsupported=unsupported, dry_run=args.dry_run)
    log.info("indexing %s into space %s via %s", root, args.space, target.description)
    counts: Counter[str] = Counter()
    start = time.perf_counter()
    try:
        if args.recreate and not args.dry_run:
            await target.drop_space(args.space)
        plan = await target.plan(args.space, manifest)
        counts["unchanged"] = len(plan.unchanged)
        todo = [(rel, on_disk[rel]) for rel in plan.new + plan.changed]
        if args.dry_run:
            counts["new"], counts["changed"] = len(plan.new), len(plan.changed)
            counts["deleted"] = len([r for r in plan.missing if r.path not in unreadable]) if args.prune else 0
        else:
            results: list[FileResult] = []
            with ui.progress(f"indexing {args.space}", total=len(todo)) as advance:

                def progress(files_done: int, chunks_done: int) -> None:
                    summary.chunks_written += chunks_done
                    advance(files_done, f"{summary.chunks_written} chunks")

                for batch in batches(todo, target.max_batch_bytes, settings.max_files_per_upload, unreadable):
                    results.extend(await target.ingest(args.space, batch, progress))
            for r in results:
                counts[r.status] += 1
                if r.status == "failed":
                    summary.failed.append({"path": r.path, "reason": r.reason})
                elif r.warnings:  # a mail or chat export indexed without its broken parts
                    summary.warnings.append({"path": r.path, "warnings": r.warnings})
            if args.prune:
                for rec in (r for r in plan.missing if r.path not in unreadable):
                    await target.delete(args.space, rec.id)
                    counts["deleted"] += 1
    finally:
        await target.close()
    for rel, reason in sorted(unreadable.items()):
        counts["failed"] += 1
        summary.failed.append({"path": rel, "reason": reason})
    summary.seconds = round(time.perf_counter() - start, 2)
    summary.chunks_per_second = round(summary.chunks_written / summary.seconds, 1) if summary.seconds else 0.0
    summary.files = {k: counts.get(k, 0) for k in ("new", "changed", "unchanged", "failed", "deleted")}

    code = 0
    indexed = summary.files["new"] + summary.files["changed"] + summary.files["unchanged"]
    if not files:
        log.error("no supported files in %s (supported: %s)", root, ", ".join(SUPPORTED_EXTENSIONS))
        code = 1
    elif args.strict and summary.failed:
        code = 1
    elif indexed == 0:
        code = 1  # not one file of the folder is in the space
    return summary, code


def render(summary: Summary) -> str:
    f = summary.files
    verb = "would be" if summary.dry_run else ""
    lines = [
        f"space {summary.space} ({summary.target}){' [dry run: nothing written]' if summary.dry_run else ''}",
        f"  files: {f['new']} new, {f['changed']} changed, {f['unchanged']} unchanged, "
        f"{f['failed']} failed, {f['deleted']} deleted {verb}".rstrip(),
        f"  unsupported files skipped: {summary.skipped_unsupported}",
    ]
    if not summary.dry_run:
        lines.append(
            f"  chunks written: {summary.chunks_written} in {summary.seconds} s ({summary.chunks_per_second} chunks/s)"
        )
    for fail in summary.failed:
        lines.append(f"  FAILED {fail['path']}: {fail['reason']}")
    for entry in summary.warnings:
        problems = [str(w) for w in entry["warnings"]]  # type: ignore[attr-defined]
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        lines.append(f"  PARTLY {entry['path']}: {'; '.join(problems[:3])}{more}")
    return "\n".join(lines) + "\n"


def show(summary: Summary) -> None:
    """render(), coloured in a terminal: what failed in red, the header in bold."""
    for i, line in enumerate(render(summary).splitlines()):
        style = "red" if line.lstrip().startswith("FAILED") else "yellow" if line.lstrip().startswith("PARTLY") else ""
        ui.say(line, "bold" if i == 0 else style)


def main(argv: list[str] | None = None, prog: str = "python -m cli.index_cli") -> int:
    args = parse_args(argv, prog)
    if not SPACE_RE.match(args.space):
        sys.stderr.write(
            f"error: invalid --space {args.space!r}: use 1-63 of a-z 0-9 - _ (starting with a letter/digit)\n"
        )
        return 2
    if not args.dir.is_dir():
        sys.stderr.write(f"error: --dir {args.dir} is not a folder\n")
        return 2
    try:
        settings = load_settings()
        configure_logging(settings.log_level, "text")
        summary, code = asyncio.run(run(args, settings))
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except TargetError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except Exception as exc:  # store/embedder failures: one clear line, not a traceback
        log.debug("failure", exc_info=True)
        sys.stderr.write(f"error: {type(exc).__name__}: {exc}\n")
        return 2
    if args.json:
        sys.stdout.write(json.dumps(asdict(summary), ensure_ascii=False) + "\n")
    else:
        show(summary)
    return code


if __name__ == "__main__":
    sys.exit(main())
