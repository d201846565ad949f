"""Adapters: the only code that talks to Qdrant, the embedding model and LLM servers."""
