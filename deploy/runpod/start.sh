#!/usr/bin/env bash
# Starts vLLM (both GPUs, tensor parallel) and then the gateway in one RunPod container.
# Exits as soon as either process dies, so RunPod's restart brings both back together.
set -euo pipefail

# Trap RunPod's stop signal from the very first line: a stop during vLLM's start-up (up to 40
# minutes) must stop vLLM too, not leave the shell to die and the GPUs held. Each pid is added
# once its process exists; the trap forwards TERM, waits, and exits.
pids=()
stop_all() {
  set +e
  trap - TERM INT
  ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null
  wait
  exit 143
}
trap stop_all TERM INT

: "${HF_TOKEN:?HF_TOKEN is required (the model is gated)}"
: "${VLLM_API_KEY:?VLLM_API_KEY is required (vLLM and the gateway share it)}"
: "${VISIONRAG_API_KEYS:?VISIONRAG_API_KEYS is required (tenant:key,...), or the gateway is open}"

MODEL="${MODEL:-meta-llama/Llama-3.2-11B-Vision-Instruct}"
# The profile's pinned Hugging Face commit: a push to the model repository never changes what runs.
REVISION="${REVISION:-9eb2daaa8597bf192a8b0e73f848f3a102794df5}"
mkdir -p "${HF_HOME:-/workspace/hf}" "$VISIONRAG_DATA_DIR" "$VISIONRAG_FASTEMBED_CACHE_DIR"

# Flags mirror serving/profiles/llama32-vision-2xl40s.toml, the source of truth
# (tests/deploy checks that they agree).
VLLM_ARGS=(
  --model="$MODEL"
  --revision="$REVISION"
  --served-model-name=llama-3.2-11b-vision-instruct
  --dtype=bfloat16
  --tensor-parallel-size=2
  --max-model-len=8192
  --max-num-seqs=16
  --enforce-eager
  '--limit-mm-per-prompt={"image": 1}'
  --gpu-memory-utilization=0.9
  # Loopback only: the gateway beside it is its one client. RunPod publishes only the gateway's port,
  # and vLLM's --api-key guards only /v1 (/invocations and /tokenize need no key and fetch media).
  --host=127.0.0.1
  --port=8000
)
# Media fetching off, as in the profile's [env] (see the comments there): vLLM 0.10.2 has no media
# allow-list, so its media fetches go to a proxy on a closed port; only Hugging Face (the weight
# download) bypasses it. Set for vLLM alone: the gateway fetches clients' image URLs itself.
# VLLM_API_KEY reaches vLLM from the pod's environment, never as --api-key: vLLM logs its
# non-default arguments at start-up, and `ps` shows them.
VLLM_ENV=(
  VLLM_SKIP_P2P_CHECK=0
  HTTP_PROXY=http://127.0.0.1:9
  HTTPS_PROXY=http://127.0.0.1:9
  http_proxy=http://127.0.0.1:9
  https_proxy=http://127.0.0.1:9
  NO_PROXY=huggingface.co,hf.co
  no_proxy=huggingface.co,hf.co
  VLLM_IMAGE_FETCH_TIMEOUT=1
  VLLM_VIDEO_FETCH_TIMEOUT=1
  VLLM_AUDIO_FETCH_TIMEOUT=1
)
# Peer access between the two PCIe GPUs, checked with a real NCCL all-reduce: a diagnosis in the
# log and a stop, rather than vLLM hanging at start-up with nothing said.
env "${VLLM_ENV[@]}" python3 /opt/visionrag/src/serving/gpu_preflight.py --gpus 2 || exit 1
env "${VLLM_ENV[@]}" python3 -m vllm.entrypoints.openai.api_server "${VLLM_ARGS[@]}" &
vllm_pid=$!
pids+=("$vllm_pid")

# First start downloads ~21 GB: wait up to 40 minutes for /health, and stop if vLLM died.
vllm_healthy() {
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)" 2>/dev/null
}
deadline=$((SECONDS + 2400))
until vllm_healthy; do
  if ! kill -0 "$vllm_pid" 2>/dev/null; then
    echo "vLLM exited during start-up" >&2
    exit 1
  fi
  if ((SECONDS > deadline)); then
    echo "vLLM not healthy after 40 minutes" >&2
    kill -TERM "$vllm_pid"
    exit 1
  fi
  sleep 5
done

export VISIONRAG_UPSTREAM_URLS="${VISIONRAG_UPSTREAM_URLS:-http://127.0.0.1:8000/v1}"
export VISIONRAG_UPSTREAM_API_KEY="$VLLM_API_KEY"
# Without VISIONRAG_QDRANT_URL the gateway embeds Qdrant's engine under VISIONRAG_DATA_DIR;
# set VISIONRAG_QDRANT_URL / VISIONRAG_QDRANT_API_KEY to use Qdrant Cloud (deploy/qdrant-cloud.md).
/opt/visionrag/venv/bin/python -m uvicorn gateway.api.app:create_app --factory --host 0.0.0.0 --port 8080 &
gateway_pid=$!
pids+=("$gateway_pid")

# Whichever exits first stops the other (RunPod's stop signal goes through stop_all).
set +e
wait -n "$vllm_pid" "$gateway_pid"
status=$?
kill -TERM "$vllm_pid" "$gateway_pid" 2>/dev/null
wait
exit "$status"
