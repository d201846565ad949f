"""The errors the API maps to a status: the services' own, and those of the parts below them.

The adapters' error types are re-exported here so that the API depends on the services only
(API -> services -> adapters; tests/unit/test_layers.py holds every module to it).
"""

from __future__ import annotations

from backend.adapters.embedder import EmbedderError as EmbedderError
from backend.adapters.llm import LLMError as LLMError
from backend.adapters.llm.models import UnknownModelError as UnknownModelError
from backend.adapters.llm.switching import SwitchQueueFullError as SwitchQueueFullError
from backend.adapters.reranker import RerankerError as RerankerError
from backend.adapters.store import EmbeddingMismatchError as EmbeddingMismatchError
from backend.adapters.store import SpaceGoneError as SpaceGoneError
from backend.adapters.store import SpaceNeedsMigrationError as SpaceNeedsMigrationError
from backend.adapters.store import StoreError as StoreError
from backend.adapters.store import StoreFullError as StoreFullError
from backend.adapters.store import StoreUnavailableError as StoreUnavailableError


class SpaceNotFoundError(Exception):
    def __init__(self, space: str) -> None:
        super().__init__(
            f"space {space!r} does not exist; index documents into it first "
            "(POST /documents or index_cli), GET /spaces lists the existing ones"
        )
        self.space = space


class AttachmentDeleteError(Exception):
    """A mail attachment is indexed with its mail file, and goes with it."""

    def __init__(self, attachment_path: str, file_path: str) -> None:
        super().__init__(
            f"{attachment_path!r} is an attachment of a mail in {file_path!r}: it is indexed and deleted with that "
            f"file. Delete {file_path!r}, or remove the mail from it and index it again"
        )
