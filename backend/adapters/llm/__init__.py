"""LLM server adapters: OpenAI-compatible (vLLM, llama.cpp, ...) and Ollama, behind one protocol."""

from backend.adapters.llm.base import LLMBackend, LLMError, StreamEvent, Usage
from backend.adapters.llm.openai_compat import OpenAICompatLLM

__all__ = ["LLMBackend", "LLMError", "OpenAICompatLLM", "StreamEvent", "Usage"]
