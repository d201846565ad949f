"""LLM server adapters. Issue #2 ships the OpenAI-compatible one (vLLM, llama.cpp server)."""

from backend.adapters.llm.openai_compat import LLMError, OpenAICompatLLM, StreamEvent, Usage

__all__ = ["LLMError", "OpenAICompatLLM", "StreamEvent", "Usage"]
