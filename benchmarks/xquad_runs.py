"""What the retrieval-only XQuAD benchmarks share: their arguments."""

from __future__ import annotations

import argparse
from pathlib import Path


def unit_floats(value: str) -> list[float]:
    """`0.7,0.82`: settings that are shares or cosines, each from 0 to 1."""
    try:
        numbers = [float(x) for x in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: give comma-separated numbers, e.g. 0,0.7") from None
    if any(not 0 <= x <= 1 for x in numbers):
        raise argparse.ArgumentTypeError(f"{value!r}: each value is from 0 to 1")
    return numbers


def xquad_parser(doc: str | None, stride_help: str) -> argparse.ArgumentParser:
    """--eval-dir, --stride (default 4), --langs and --top-k (default 5), as the benchmarks take them."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    p.add_argument("--stride", type=int, default=4, help=stride_help)
    p.add_argument("--langs", default="ru,en", help="comma-separated: ru, en")
    p.add_argument("--top-k", type=int, default=5)
    return p
