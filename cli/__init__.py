"""Command-line tools: index_cli (ingest a folder), run_local (the whole local stack)."""
