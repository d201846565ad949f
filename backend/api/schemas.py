"""Request and response models shared by the routes (they are the OpenAPI contract)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from backend.config import MODEL_NAME_PATTERN, SPACE_PATTERN
from backend.services.correspondence import normalized_key

SpaceField = Field(
    pattern=SPACE_PATTERN,
    description="Space name: 1-63 characters, lower-case letters, digits, '-' and '_'.",
    examples=["demo"],
)


class FiltersIn(BaseModel):
    """Metadata conditions, applied inside the search: only matching chunks are ranked at all."""

    model_config = ConfigDict(extra="forbid")

    file_types: list[str] = Field(
        default_factory=list, max_length=20, description='Extensions, any of: ["pdf", "md"] (a dot is optional).'
    )
    folders: list[str] = Field(
        default_factory=list, max_length=20, description='Folders, any of: ["mail/2024"] (documents anywhere below).'
    )
    title: str | None = Field(default=None, min_length=1, max_length=200, description="Words in the title.")
    modified_after: AwareDatetime | None = Field(
        default=None, description="ISO 8601 with time zone; documents whose file date is unknown never match."
    )
    modified_before: AwareDatetime | None = None
    indexed_after: AwareDatetime | None = None
    indexed_before: AwareDatetime | None = None
    participants: list[str] = Field(
        default_factory=list, max_length=20,
        description='Conversations: people who wrote or received the messages, any of: a name, a surname or an '
        'address ("Петров", "Anna Smirnova", "anna@corp.ru"); case and ё/е do not matter.',
    )  # fmt: skip
    chat: list[str] = Field(
        default_factory=list, max_length=20, description="Conversations: chat titles (Telegram, WhatsApp), any of."
    )
    thread: list[str] = Field(
        default_factory=list, max_length=20, description='Conversations: mail thread subjects without "Re:", any of.'
    )
    sent_after: AwareDatetime | None = Field(
        default=None, description="Conversations: messages sent at or after this time (ISO 8601 with time zone)."
    )
    sent_before: AwareDatetime | None = None

    @field_validator("participants", "chat", "thread", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("participants", "chat", "thread")
    @classmethod
    def _names(cls, values: list[str]) -> list[str]:
        out = []
        for v in values:
            key = normalized_key(v)
            if not key or len(key) > 200 or any(ord(ch) < 32 for ch in v):
                raise ValueError(f"{v[:50]!r} is not a name, chat or subject (1-200 characters of text)")
            out.append(key)
        return out

    @field_validator("file_types")
    @classmethod
    def _extensions(cls, values: list[str]) -> list[str]:
        out = []
        for v in values:
            ext = v.strip().lower().lstrip(".")
            if not ext.isalnum() or len(ext) > 10:
                raise ValueError(f"{v!r} is not a file extension (like pdf or md)")
            out.append(ext)
        return out

    @field_validator("folders")
    @classmethod
    def _folders(cls, values: list[str]) -> list[str]:
        out = []
        for v in values:
            parts = [p for p in PurePosixPath(v.replace("\\", "/")).parts if p not in ("/", ".")]
            if not parts or ".." in parts or any(ord(ch) < 32 for ch in v):
                raise ValueError(f"{v!r} is not a folder path relative to the indexed folder (like mail/2024)")
            out.append("/".join(parts))
        return out

    @model_validator(mode="after")
    def _ranges(self) -> FiltersIn:
        for name, lo, hi in (
            ("modified", self.modified_after, self.modified_before),
            ("indexed", self.indexed_after, self.indexed_before),
            ("sent", self.sent_after, self.sent_before),
        ):
            if lo is not None and hi is not None and lo >= hi:
                raise ValueError(f"{name}_after must be earlier than {name}_before")
        return self


class QueryBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: str = Field(min_length=1, description="The question.", examples=["What does the service do?"])
    space_id: str = SpaceField
    top_k: int | None = Field(default=None, ge=1, le=50, description="Chunks to retrieve (1-50); default TOP_K.")
    mode: Literal["hybrid", "dense", "sparse"] | None = Field(
        default=None, description="Retrieval mode for this request; default RETRIEVAL_MODE."
    )
    fusion: Literal["weighted", "rrf", "dbsf"] | None = Field(
        default=None, description="Fusion of the hybrid mode for this request; default HYBRID_FUSION."
    )
    filters: FiltersIn | None = None

    @field_validator("q")
    @classmethod
    def _clean_question(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


ModelField = Field(
    default=None, pattern=MODEL_NAME_PATTERN,
    description="A named model (GET /models lists those this key may use); default: the default model.",
)  # fmt: skip


class AskRequest(QueryBase):
    model: str | None = ModelField
    stream: bool = Field(default=False, description="Stream Server-Sent Events instead of one JSON.")
    include_reasoning: bool = Field(
        default=False, description="Return a reasoning model's thinking (kept out of `answer` either way)."
    )


class SearchRequest(QueryBase):
    pass


class MessageRef(BaseModel):
    id: str = Field(description="Message-ID of a mail, the message id of a Telegram chat, or the line of a chat log.")
    sender: str
    sent_at: float | None = Field(description="Unix seconds; None when the export's date did not parse.")


class ConversationOut(BaseModel):
    kind: Literal["chat", "thread"]
    title: str
    participants: list[str]
    sent_first: float | None
    sent_last: float | None
    messages: list[MessageRef]
    attachment: str | None = Field(default=None, description="The attached file this chunk comes from, if any.")


class ChunkOut(BaseModel):
    """A chunk as a source: numbered for [n] citations, with where it lies and its text."""

    n: int
    id: str | None = Field(
        default=None, description="The chunk's id: kept when its document is re-indexed with its text unchanged."
    )
    document: str | None
    path: str | None
    title: str | None
    heading: str | None = None
    page: int | None = None
    chunk: int | None
    text: str
    conversation: ConversationOut | None = Field(
        default=None, description="For a chunk of a mail thread or chat: who wrote its messages, and when."
    )


class SourceOut(ChunkOut):
    score: float
    modified_at: float | None = Field(default=None, description="The file's modification time (unix seconds).")
    cited: bool = False


class UsageOut(BaseModel):
    prompt_tokens: int | None = Field(description="None when the LLM server does not report usage.")
    completion_tokens: int
    total_tokens: int | None


class TimingsOut(BaseModel):
    embed_ms: float
    search_ms: float
    rerank_ms: float | None = None
    llm_ttft_ms: float | None
    llm_ms: float
    total_ms: float


class ContextOut(BaseModel):
    window_tokens: int = Field(description="The model's context window (prompt + answer).")
    prompt_tokens: int = Field(description="Size of the prompt sent, counted or estimated.")
    counted_by: Literal["server", "estimate"] = Field(
        description="server: the LLM server's own tokenizer (vLLM /tokenize, llama.cpp); estimate: a safe bound."
    )
    dropped_chunks: int = Field(description="Lowest-ranked retrieved chunks left out so the prompt fits.")
    weak_chunks: int = Field(
        default=0,
        description="Retrieved chunks left out of the prompt and the sources because their hybrid score was under "
        "ANSWER_PASSAGE_CUTOFF times the best chunk's.",
    )


class RetrievalOut(BaseModel):
    mode: Literal["hybrid", "dense", "sparse"] = Field(description="The mode that ranked the sources.")
    fusion: Literal["weighted", "rrf", "dbsf"] | None = Field(description="The fusion, in hybrid mode.")
    notices: list[str] = Field(description="What to know about this ranking (e.g. a space needing migration).")


class CitationsOut(BaseModel):
    written: list[int] = Field(description="Source numbers the model itself cited.")
    moved: int = Field(description="Sentences whose citation was moved to the source that supports them.")
    added: int = Field(description="Sentences that got the citation they lacked (CITATION_CHECK).")
    unsupported: int = Field(description="Sentences that no source supports even weakly: treat them with doubt.")


class AskResponse(BaseModel):
    answer: str = Field(description="The answer, its [n] citations checked against the sources (CITATION_CHECK).")
    sources: list[SourceOut]
    backend: str = Field(description="Kind of server that wrote the answer: vllm, ollama, openai (none: no LLM).")
    model: str = Field(description="The model id the server reported.")
    model_name: str = Field(description="The named model that answered (LLM_MODELS; 'default' without it).")
    fallback_used: bool = Field(description="True when the requested model failed and another answered.")
    notices: list[str] = Field(description="Why the models tried before the one that answered did not answer.")
    retrieval: RetrievalOut
    usage: UsageOut
    finish_reason: str | None
    citations: CitationsOut | None = Field(default=None, description="What the citation check changed.")
    context: ContextOut
    reasoning: str | None = Field(default=None, description="The model's thinking, with include_reasoning.")
    timings: TimingsOut


class SearchResponse(BaseModel):
    sources: list[SourceOut]
    retrieval: RetrievalOut
    timings: dict[str, float | None]


class FileResultOut(BaseModel):
    path: str
    status: Literal["new", "changed", "unchanged", "failed", "deleted"]
    document_id: str
    chunks: int
    reason: str | None = None
    warnings: list[str] = Field(default_factory=list, description="Parts left out (a broken message), and why.")
    reused: int = Field(default=0, description="Chunks already indexed with the same text: vectors kept.")


class UploadResponse(BaseModel):
    space: str
    files: list[FileResultOut]
    chunks_written: int
    seconds: float


class ManifestEntry(BaseModel):
    path: str = Field(min_length=1, max_length=1024)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class PlanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    space_id: str = SpaceField
    files: list[ManifestEntry] = Field(max_length=1_000_000)


class DocumentOut(BaseModel):
    id: str
    path: str = Field(description="Relative path; a mail attachment's is `<mail file>#<Message-ID>/<name>`.")
    title: str
    chunks: int = Field(description="Chunks of this document (a mail file's without its attachments').")
    size: int
    content_sha256: str | None
    indexed_at: float
    status: Literal["ready", "pending"]
    parent: str | None = Field(default=None, description="A mail attachment: the id of the mail file it came in.")
    message: str | None = Field(default=None, description="A mail attachment: the Message-ID of its mail.")
    attachments: int = Field(default=0, description="A mail file: how many of its attachments are documents.")


class PlanResponse(BaseModel):
    space: str
    new: list[str]
    changed: list[str]
    unchanged: list[str]
    missing: list[DocumentOut]


class DocumentList(BaseModel):
    space: str
    documents: list[DocumentOut]


class SpaceOut(BaseModel):
    name: str
    documents: int = Field(description="Files indexed (GET /documents also lists their mail attachments).")
    chunks: int
    embedding_model: str
    dimension: int
    schema_version: int = Field(description="2: dense + lexical vectors; 1: dense only (run python -m cli.migrate).")
    lexical_analyzer: str | None = Field(description="Analyzer and window its lexical vectors were built with.")
    indexed_chunks: int | None = Field(
        default=None,
        description="Embedded store: chunks its HNSW search index held when last built (those written since are "
        "scanned; QDRANT_INDEX_AFTER); null with a Qdrant server, which indexes by itself.",
    )
    index_building: bool = Field(default=False, description="The service is building the search index now.")


class SpaceList(BaseModel):
    spaces: list[SpaceOut]


class CheckOut(BaseModel):
    status: Literal["ok", "error"]
    latency_ms: float
    detail: str | None = None


class ReadyResponse(BaseModel):
    status: Literal["ready", "degraded", "unavailable"]
    checks: dict[str, CheckOut]
    auth: Literal["api_keys", "disabled"] = Field(
        description="disabled: AUTH_DISABLED=true, anyone who reaches the port may read, write and delete."
    )


class SummarizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    space_id: str = SpaceField
    document_id: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        description="Summarise this document (from GET /documents).",
    )  # fmt: skip
    filters: FiltersIn | None = Field(
        default=None, description="Or summarise every chunk these filters match ({} = the whole space)."
    )
    style: Literal["brief", "detailed", "decisions", "action_items"] = "brief"
    model: str | None = ModelField
    language: Literal["ru", "en"] | None = Field(
        default=None, description="The summary's language; default: the documents' (Russian when mostly Cyrillic)."
    )
    stream: bool = Field(
        default=False, description="Server-Sent Events: progress, then the summary's tokens, then done."
    )


class SummaryCoverage(BaseModel):
    chunks_read: int = Field(description="Chunks the summary's LLM calls read: always every selected chunk.")
    chunks_selected: int


class SummaryChecks(BaseModel):
    moved: int = Field(description="Sentences whose [n] was moved to the chunk that clearly holds them.")
    added: int = Field(description="Sentences that got the [n] they lacked.")
    unsupported: int = Field(description="Sentences no selected chunk supports even weakly.")
    restored: int = Field(description="Sentences stating a decision or action item that the model's summary "
                          "left out, added word for word with their [n] (styles decisions, action_items).")  # fmt: skip
    cut_short: int = Field(description="LLM outputs kept although they stopped at LLM_MAX_TOKENS: the summary "
                           "itself, a merge, or a batch's notes (a batch whose notes reach it is read again once, "
                           "in two halves; a half's notes that reach it again are kept and counted here).")  # fmt: skip


class SummaryResponse(BaseModel):
    summary: str = Field(description="The summary; [n] cites sources[n].")
    style: str
    language: Literal["ru", "en"] = Field(description="The documents' language, which the summary is written in.")
    sources: list[ChunkOut] = Field(
        description="The chunks the summary cites; n numbers the selection in document order."
    )
    coverage: SummaryCoverage
    llm_calls: int = Field(description="map_calls + reduce_calls + final_calls.")
    map_calls: int = Field(description="Calls that read the selection, batch by batch (0: it fit one prompt).")
    reduce_calls: int = Field(description="Calls that merged notes too many for one prompt.")
    final_calls: int = Field(description="Calls that wrote the summary: 1, or one per part of notes too many "
                             "for one prompt (never cut).")  # fmt: skip
    model: str
    backend: str
    fallback_used: bool
    completion_tokens: int
    prompt_tokens: int | None
    seconds: float
    created_at: float = Field(description="When the summary was written (unix seconds).")
    checks: SummaryChecks = Field(description="What the check of the written summary changed (CITATION_CHECK).")
    cached: bool = Field(description="A stored result: same selection, document versions, style and model.")


class StoredSummary(BaseModel):
    id: str
    selection: dict[str, Any] = Field(description='{"document_id": ...} or {"filters": {...}} as requested.')
    style: str
    model: str
    language: str | None
    created_at: float
    chunks: int | None
    documents: list[str] = Field(description="Ids of the files it read (deleting one deletes the summary).")
    current: bool = Field(description="False once one of those files changed: asking again writes it anew.")


class SummaryList(BaseModel):
    space: str
    summaries: list[StoredSummary]
