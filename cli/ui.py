"""Terminal output of the command-line tools: colour, tables and progress bars in a terminal, plain text
when the output goes to a file or a pipe (and with NO_COLOR set), so scripts read the same text as before.
Machine-readable output is each command's --json, never this."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def stdout() -> Console:
    # Built per call: tests and callers may swap sys.stdout.
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def stderr() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def markdown(text: str) -> None:
    """Markdown (the tools' tables): rendered with colour in a terminal, written as-is otherwise."""
    out = stdout()
    if out.is_terminal:
        out.print(Markdown(text))
    else:
        sys.stdout.write(text)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], styles: Sequence[str] = ()) -> None:
    """A table on stdout; `styles` colours whole columns (in a terminal). Numbers are right-aligned."""
    out = Table(title=title, title_justify="left", header_style="bold")
    for i, name in enumerate(columns):
        numeric = bool(rows) and all(_is_number(row[i]) for row in rows)
        out.add_column(name, style=styles[i] if i < len(styles) else None, justify="right" if numeric else "left")
    for row in rows:
        out.add_row(*(str(cell) for cell in row))
    stdout().print(out)


def _is_number(cell: Any) -> bool:
    try:
        float(str(cell))
    except ValueError:
        return False
    return True


def say(text: str, style: str = "") -> None:
    """A line on stdout, in `style` (rich markup names: green, bold red ...) in a terminal."""
    stdout().print(text, style=style or None, markup=False)


def error(text: str) -> None:
    stderr().print(f"error: {text}", style="bold red", markup=False)


@contextmanager
def progress(description: str, total: int) -> Iterator[Any]:
    """A progress bar on stderr, shown only in a terminal; yields `advance(n, note=..., total=...)` (a total
    given moves the bar's end: work found on the way)."""
    bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"), console=stderr(), transient=False, disable=not stderr().is_terminal,
    )  # fmt: skip
    with bar:
        task = bar.add_task(description, total=total, note="")

        def advance(n: int, note: str = "", total: int | None = None) -> None:
            bar.update(task, advance=n, note=note, total=total)

        yield advance
