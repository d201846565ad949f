"""Services: ingestion, retrieval and answering, built from adapters."""
