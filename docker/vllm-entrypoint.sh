#!/usr/bin/env bash
# Turns the VLLM_* settings of .env.vllm into vLLM server flags, so every setting really reaches it.
# An unset variable leaves vLLM's own default; VLLM_EXTRA_ARGS appends anything else verbatim.
set -euo pipefail

# VLLM_NAME_PREFIX: the variables' names in .env.vllm (VLLM_B_ for the pair profile's second model).
prefix="${VLLM_NAME_PREFIX:-VLLM_}"
args=(--host 0.0.0.0 --port "${VLLM_PORT:-8000}" --model "${VLLM_MODEL:?set ${prefix}MODEL in .env.vllm}")
if [ "$prefix" != VLLM_ ]; then
  for name in SERVED_MODEL_NAME GPU_MEMORY_UTILIZATION; do
    var="VLLM_$name"
    if [ -z "${!var:-}" ]; then
      echo "set ${prefix}${name} in .env.vllm (python -m cli.plan MODEL_A MODEL_B --pair --write-env .env.vllm)" >&2
      exit 2
    fi
  done
fi
add() { [ -n "${2:-}" ] && args+=("$1" "$2") || true; }

add --served-model-name "${VLLM_SERVED_MODEL_NAME:-}"
add --gpu-memory-utilization "${VLLM_GPU_MEMORY_UTILIZATION:-}"
add --max-model-len "${VLLM_MAX_MODEL_LEN:-}"
add --max-num-seqs "${VLLM_MAX_NUM_SEQS:-}"
add --tensor-parallel-size "${VLLM_TENSOR_PARALLEL_SIZE:-}"
add --pipeline-parallel-size "${VLLM_PIPELINE_PARALLEL_SIZE:-}"
add --quantization "${VLLM_QUANTIZATION:-}"
add --kv-cache-dtype "${VLLM_KV_CACHE_DTYPE:-}"
add --cpu-offload-gb "${VLLM_CPU_OFFLOAD_GB:-}"
add --dtype "${VLLM_DTYPE:-}"
add --reasoning-parser "${VLLM_REASONING_PARSER:-}"
add --api-key "${VLLM_API_KEY:-}"
case "${VLLM_ENABLE_PREFIX_CACHING:-}" in
  true|1|yes) args+=(--enable-prefix-caching) ;;
  false|0|no) args+=(--no-enable-prefix-caching) ;;
  "") ;;
  *) echo "VLLM_ENABLE_PREFIX_CACHING must be true or false, got '${VLLM_ENABLE_PREFIX_CACHING}'" >&2; exit 2 ;;
esac

# Sleep mode (two models taking turns on one card, docs/models.md): --enable-sleep-mode, and the
# development endpoints /sleep, /wake_up, /is_sleeping, which vLLM serves only with VLLM_SERVER_DEV_MODE=1.
# They come with vLLM's other development endpoints: keep this port off the host (the compose files do).
case "${VLLM_ENABLE_SLEEP_MODE:-}" in
  true|1|yes) args+=(--enable-sleep-mode); export VLLM_SERVER_DEV_MODE=1 ;;
  false|0|no|"") ;;
  *) echo "VLLM_ENABLE_SLEEP_MODE must be true or false, got '${VLLM_ENABLE_SLEEP_MODE}'" >&2; exit 2 ;;
esac

# Hugging Face reads HF_TOKEN; older tools read HUGGING_FACE_HUB_TOKEN: set both from whichever is given.
token="${HF_TOKEN:-${HUGGING_FACE_HUB_TOKEN:-}}"
if [ -n "$token" ]; then export HF_TOKEN="$token" HUGGING_FACE_HUB_TOKEN="$token"; fi

if [ -n "${VLLM_EXTRA_ARGS:-}" ]; then
  read -r -a extra <<< "$VLLM_EXTRA_ARGS"
  args+=("${extra[@]}")
fi

exec "${VLLM_PYTHON:-python3}" -m vllm.entrypoints.openai.api_server "${args[@]}"
