#!/usr/bin/env bash
# The smallest --cpu-mem the planner accepts (states in the store), with the optimizer states
# staged as whole units (--state-piece 1TiB, the layout before pieces) and in the default 64 MiB
# pieces, for GPT-3 sizes on the CPU tier and the CUDA tier (resident, and streamed through
# --gpu-mem 24GiB), K = 1, no clipping; and streamed with clipping (--grad-clip 1: every block's fp32
# gradients are kept until the global norm is known, in the store when RAM cannot hold them). Pure
# planning (--dry-run; without a GPU the CUDA plans use
# the reference rates, which do not change the memory). Prints JSON lines.
#   bench/fuyou_cpu_mem_floor.sh [path/to/sparsetrain]
set -euo pipefail
bin=${1:-$(dirname "$0")/../build/apps/sparsetrain/sparsetrain}
dir=$(mktemp -d /tmp/st-floor-XXXXXX)
trap 'rm -rf "$dir"' EXIT
for model in gpt3-1.3b gpt3-6.7b gpt3-13b gpt3-175b; do
  for tier in cpu cuda cuda-streamed cuda-streamed-clip; do
    flags=(--device "${tier%%-*}")
    case $tier in
      cuda-streamed) flags+=(--gpu-mem 24GiB --grad-clip 0) ;;
      cuda-streamed-clip) flags+=(--gpu-mem 24GiB --grad-clip 1) ;;
      *) flags+=(--grad-clip 0) ;;
    esac
    for piece in 1TiB 64MiB; do
      # 1 byte of CPU budget: the refusal names what the plan needs there.
      err=$("$bin" fuyou finetune --model "$model" "${flags[@]}" --ssd "$dir" --cpu-mem 1 \
              --seq 1024 --micro-batch 1 --state-piece "$piece" --dry-run \
              --progress never 2>&1 >/dev/null || true)
      need=$(sed -n 's/.*--cpu-mem does not fit: needs [^=]*= \([0-9]*\) B.*/\1/p' <<<"$err")
      [ -n "$need" ] || { echo "fuyou_cpu_mem_floor: no --cpu-mem refusal for $model $tier: $err" >&2; exit 1; }
      printf '{"model": "%s", "tier": "%s", "state_piece": "%s", "cpu_mem_floor_bytes": %s}\n' \
        "$model" "$tier" "$piece" "$need"
    done
  done
done
