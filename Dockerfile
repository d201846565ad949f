# The RAG backend (API + embedder). Used by both compose stacks.
FROM python:3.11-slim

WORKDIR /app
# torch first, from PyPI: on x86-64 Linux that is the CUDA build, so the embedder can use the GPU
# (EMBEDDING_DEVICE=cuda). constraints.txt pins the rest exactly as CI tested them; its torch line is
# the CPU build of the same version, so it is left out here.
ARG TORCH_VERSION=2.13.0
COPY pyproject.toml constraints.txt README.md ./
COPY backend backend
COPY cli cli
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" \
 && grep -v '^torch==' constraints.txt > /tmp/constraints.txt \
 && pip install --no-cache-dir -c /tmp/constraints.txt . \
 && rm /tmp/constraints.txt

ENV HOST=0.0.0.0 \
    PORT=8000 \
    QDRANT_PATH=/data/qdrant \
    HF_HOME=/models/huggingface \
    LOG_FORMAT=json
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=5 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=4)"
CMD ["sh", "-c", "exec uvicorn --factory backend.main:app_from_env --host \"$HOST\" --port \"$PORT\""]
