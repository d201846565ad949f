"""The embedder's error type, apart so that every engine module can raise it without import cycles."""


class EmbedderError(Exception):
    """The embedding model cannot be loaded or used."""
