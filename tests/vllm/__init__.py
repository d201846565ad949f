"""The real-vLLM-on-CPU test tier: model conversion and the server fixture."""
