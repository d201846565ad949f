"""Errors services raise for the caller's mistakes (the API maps them to 4xx)."""

from __future__ import annotations


class SpaceNotFoundError(Exception):
    def __init__(self, space: str) -> None:
        super().__init__(
            f"space {space!r} does not exist; index documents into it first "
            "(POST /documents or index_cli), GET /spaces lists the existing ones"
        )
        self.space = space
