"""OpenAI-compatible chat over the spaces: point Open WebUI, AnythingLLM, Continue or the `openai` SDK at
`<service>/v1` with an API key of ours, and pick the model `rag-<space>` (the default model answers) or
`rag-<space>:<name>` (a named model of LLM_MODELS answers).

- GET /v1/models: one model per space the key may read, and with LLM_MODELS one per space and named model.
- POST /v1/chat/completions: the last user message, rewritten into a standalone question with the help of
  the earlier turns, is answered from that space like POST /ask (streamed or not). The answer ends with
  numbered references; the sources themselves come in the extra field `sources` (the response, or the
  first chunk of a stream) and what happened in `rag` (the response, or the last chunk).
Sampling parameters (temperature, top_p, max_tokens, ...) are accepted and ignored: the service's own
settings apply, as they do to /ask.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import (
    AnswerDep,
    ConversationDep,
    PrincipalDep,
    SettingsDep,
    StatusDep,
    require_model,
    require_read,
)
from backend.api.errors import ERROR_RESPONSES, APIError
from backend.api.routes.ask import check_question, chunk_filter
from backend.api.schemas import FiltersIn
from backend.config import MODEL_NAME_PATTERN, SPACE_RE
from backend.services.answering import AnswerStream
from backend.services.conversation import StandaloneQuestion, Turn, references
from backend.services.errors import LLMError, UnknownModelError
from backend.services.retrieval import SearchOptions

router = APIRouter(prefix="/v1", tags=["openai"])

MODEL_PREFIX = "rag-"
MAX_CONVERSATION_CHARS = 400_000


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls ... are accepted and ignored
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "\n".join(p.text or "" for p in self.content if p.type == "text")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, top_p, max_tokens, user ...: accepted, ignored
    model: str = Field(description="rag-<space> or rag-<space>:<model>, as listed by GET /v1/models.",
                       examples=["rag-demo"])  # fmt: skip
    messages: list[ChatMessage] = Field(min_length=1, max_length=500)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1, description="Only one choice is produced.")
    top_k: int | None = Field(default=None, ge=1, le=50, description="Extension: chunks to retrieve (1-50).")
    filters: FiltersIn | None = Field(
        default=None, description="Extension (extra body): metadata conditions, as `filters` on /ask."
    )


_MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN)


def space_of(model: str) -> tuple[str, str | None]:
    """The space and the named model (None: the default) of `rag-<space>[:<model>]`."""
    space, _, name = (model[len(MODEL_PREFIX) :] if model.startswith(MODEL_PREFIX) else "").partition(":")
    if not SPACE_RE.fullmatch(space) or (name and not _MODEL_NAME_RE.fullmatch(name)):
        message = (f"unknown model {model[:100]!r}: the models here are rag-<space> and rag-<space>:<model>; "
                   "GET /v1/models lists them")  # fmt: skip
        raise APIError(404, "model_not_found", message)
    return space, name or None


def conversation(body: ChatRequest) -> list[Turn]:
    for m in body.messages:
        if isinstance(m.content, list) and any(p.type != "text" for p in m.content):
            kinds = sorted({p.type for p in m.content if p.type != "text"})
            raise APIError(422, "unsupported_content", f"only text message parts are supported, not {kinds}")
    turns = [Turn("system" if m.role in ("system", "developer") else m.role, m.text()) for m in body.messages]
    turns = [t for t in turns if t.role != "tool"]
    if not turns or turns[-1].role != "user" or not turns[-1].content.strip():
        raise APIError(422, "no_question", "the last message must be the user's question (role user, with text)")
    if sum(len(t.content) for t in turns) > MAX_CONVERSATION_CHARS:
        message = f"the messages hold more than {MAX_CONVERSATION_CHARS} characters; start a new chat"
        raise APIError(413, "conversation_too_long", message)
    return turns


@router.get("/models")
async def list_models(status: StatusDep, settings: SettingsDep, principal: PrincipalDep) -> dict[str, Any]:
    """One model per space this API key may read (the default model answers it), and with LLM_MODELS one
    per space and named model this key may use."""
    names = [m["name"] for m in status.models() if principal.can_use(str(m["name"]))]
    suffixes = [None] + (names if settings.llm_models is not None else [])
    data = [
        {
            "id": f"{MODEL_PREFIX}{s.name}" + (f":{name}" if name else ""),
            "object": "model",
            "created": 0,
            "owned_by": "rag-service",
            "documents": s.documents,
        }
        for s in await status.spaces()
        if principal.can_read(s.name)
        for name in suffixes
    ]
    return {"object": "list", "data": data}


@router.post("/chat/completions", responses=ERROR_RESPONSES)
async def chat_completions(
    body: ChatRequest,
    answers: AnswerDep,
    conversations: ConversationDep,
    settings: SettingsDep,
    status: StatusDep,
    principal: PrincipalDep,
) -> Any:
    """An answer grounded in the space named by `model`, with sources; `stream: true` for Server-Sent Events
    in OpenAI's chunk format, ending with `data: [DONE]`."""
    space, name = space_of(body.model)
    require_read(principal, space)
    try:
        model = require_model(principal, status, name)
    except UnknownModelError as exc:  # OpenAI clients expect this code for a model that does not exist
        raise APIError(404, "model_not_found", f"{exc}; GET /v1/models lists rag-<space>:<model>") from exc
    turns = conversation(body)
    check_question(turns[-1].content, settings)
    question = await conversations.standalone_question(turns, model)
    options = SearchOptions(filters=chunk_filter(body.filters))
    top_k = body.top_k or settings.top_k
    if body.stream:
        answer = await answers.start(space, question.text, top_k, options, model)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_Reply(body.model, space, question, answer).chunks(include_usage),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip
    try:
        answer = await answers.complete(space, question.text, top_k, options, model)
    except LLMError as exc:
        raise APIError(503, "llm_failed", f"the LLM server failed while answering: {exc}") from exc
    return _Reply(body.model, space, question, answer).completion()


class _Reply:
    def __init__(self, model: str, space: str, question: StandaloneQuestion, answer: AnswerStream) -> None:
        self.model, self.space, self.question, self.answer = model, space, question, answer
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def _sources(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.answer.sources]

    def _references(self) -> str:
        return references(self._sources(), self.question.original)

    def _finish_reason(self) -> str:
        return "length" if self.answer.finish_reason == "length" else "stop"

    def _usage(self) -> dict[str, int]:
        usage = self.answer.usage
        prompt = usage.prompt_tokens if usage.prompt_tokens is not None else self.answer.context.prompt_tokens
        return {"prompt_tokens": prompt, "completion_tokens": usage.completion_tokens,
                "total_tokens": prompt + usage.completion_tokens}  # fmt: skip

    def _rag(self) -> dict[str, Any]:
        summary = self.answer.summary()
        return {
            "space": self.space,
            "question": self.question.to_dict(),
            "backend": summary["backend"],
            "llm_model": summary["model"],
            "model_name": summary["model_name"],
            "fallback_used": summary["fallback_used"],
            "notices": summary["notices"],
            "retrieval": summary["retrieval"],
            "context": summary["context"],
            "timings": {**summary["timings"], "rewrite_ms": self.question.rewrite_ms},
            "cited": [s.n for s in self.answer.sources if s.cited],
            # A stream carries the model's own [n]; the references above follow the checked ones.
            "answer": summary["answer"],
            "citations": summary["citations"],
        }

    def completion(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "finish_reason": self._finish_reason(), "logprobs": None,
                         "message": {"role": "assistant", "content": self.answer.answer + self._references()}}],
            "usage": self._usage(),
            "sources": self._sources(),
            "rag": self._rag(),
        }  # fmt: skip

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
                 **extra}  # fmt: skip
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    async def chunks(self, include_usage: bool) -> AsyncIterator[str]:
        yield self._chunk({"role": "assistant", "content": ""}, sources=self._sources())
        try:
            async for kind, text in self.answer.pieces():
                # Thinking goes where vLLM puts it, which Open WebUI and others show apart.
                yield self._chunk({"content": text} if kind == "answer" else {"reasoning_content": text})
        except LLMError as exc:
            error = {"message": f"the LLM server failed mid-answer: {exc}", "type": "llm_failed", "code": "llm_failed"}
            yield f"data: {json.dumps({'error': error}, ensure_ascii=False)}\n\n"
            return
        refs = self._references()
        if refs:
            yield self._chunk({"content": refs})
        yield self._chunk({}, self._finish_reason(), rag=self._rag())
        if include_usage:
            usage = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                     "choices": [], "usage": self._usage()}  # fmt: skip
            yield f"data: {json.dumps(usage)}\n\n"
        yield "data: [DONE]\n\n"
