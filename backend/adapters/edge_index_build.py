"""Build the search index of a copy of a Qdrant Edge shard, in a process of its own.

Run by `VectorStore` as `python edge_index_build.py FOLDER PARENT_PID` (by path: it needs nothing of this
project). Qdrant Edge holds Python's GIL while it builds, so a build inside the service would stop every
other thread of it for the length of the build; here it stops nothing. The process runs at a lower
priority than the service and dies with it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        sys.exit(3)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: edge_index_build.py SHARD_FOLDER PARENT_PID\n")
        return 2
    folder, parent = argv[1], int(argv[2])
    _die_with(parent)
    os.nice(10)  # the service's own work comes first
    import qdrant_edge

    shard = qdrant_edge.EdgeShard.load(folder)
    try:
        shard.optimize()
        shard.flush()
    finally:
        shard.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
