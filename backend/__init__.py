"""RAG question-answering service: ingest documents, answer questions with sources."""
