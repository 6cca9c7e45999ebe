#!/bin/bash
# The GPU machine's check, in one go (run there from the project root, after
# `EXTRA_DEBS="libdeflate-dev libdeflate0 libgloo-dev" bash ../shared/device/stage-deps.sh` here — libdeflate
# and Gloo's headers are ours beyond the packages that script stages — and with `.devdeps` carried):
#   1. unpacks the staged Debian packages and builds only what the check needs (build-gpu/);
#   2. runs the `gpu` tests (CUDA tier vs the in-memory CUDA trainer, smoke tests);
#   3. fine-tunes GPT-3 1.3B offloaded (--gpu-mem 24GiB --cpu-mem 32GiB, store on the machine's
#      disk, committed every 4 steps), then the same with the states forced into the store
#      (--cpu-mem 8GiB), a few steps each;
#   4. the in-memory CUDA trainer on the same model for the step-time comparison;
#   5. with STREAM_RUN=1, a 1.3B run whose blocks stream through GPU slots (--gpu-mem 4GiB);
#   6. with PIECE_RUN=1, a 13B-shape model streamed whole and in pieces (issue 22);
#   7. with ACT_RUN=1, GPT-3 2.7B in 24 GiB with --activations recompute and auto (issue 16).
# The `gpu` tests include the streamed CUDA tier against the in-memory CUDA trainer.
# Results go to $OUT (default ./gpu-check-out): gpu-tests.log, runs.log and one run record per run
# (the device tool brings back at most 8 files); the rest is printed. Each phase has a time limit
# so a slow phase cannot eat the others.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}; mkdir -p "$OUT"
STEPS=${STEPS:-3}
RUNS=${RUNS:-1}  # 0: build, tests and the AdamW benchmark only
R=$PWD/.devdeps/root; mkdir -p "$R"
for f in .devdeps/debs/*.deb; do dpkg -x "$f" "$R"; done
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
export CPATH="$R/usr/include${CPATH:+:$CPATH}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; free -g; df -h /tmp; } \
  2>&1
t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$R/usr;$R/usr/lib/x86_64-linux-gnu/cmake" \
  -DCMAKE_BUILD_RPATH="$R/usr/lib/x86_64-linux-gnu" -DCMAKE_CUDA_ARCHITECTURES=90 >/tmp/build.log 2>&1 &&
  cmake --build build-gpu -j"$(nproc)" --target sparsetrain gpu_smoke_tests gpu_offload_tests fuyou_model_gpu_tests adamw_bench \
    >>/tmp/build.log 2>&1 || { tail -40 /tmp/build.log; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
timeout 240 ctest --test-dir build-gpu -L gpu --output-on-failure -V >"$OUT/gpu-tests.log" 2>&1
echo "gpu tests: rc $? ($(grep -c 'Passed\|passed' "$OUT/gpu-tests.log") pass lines)"
grep -E "largest relative|max relative|units updated|tests passed|FAILED|ERROR" "$OUT/gpu-tests.log" | head -20

# Our fused CPU AdamW against torch's on this machine's cores (bench/adamw_bench.cpp).
timeout 90 build-gpu/bench/adamw_bench --n 67108864 --threads "$(nproc)" --steps 5 --skip-torch-optim \
  >"$OUT/adamw-bench.json" 2>/dev/null
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['hardware'], d['speedups'], {k: round(v['gparam_per_s'], 3) for k, v in d['methods'].items()})" \
  "$OUT/adamw-bench.json" 2>&1 | cut -c1-1500
[ "$RUNS" = 0 ] && exit 0

st=build-gpu/apps/sparsetrain/sparsetrain
common=(fuyou finetune --device cuda --micro-batch 8 --seq 1024 --grad-clip 0 --eval-every 0
        --eval-batches 1 --lr 1e-4 --warmup 0)
run() {  # name, time limit, steps, model, extra flags...
  local name=$1 limit=$2 steps=$3 model=$4; shift 4
  rm -rf /tmp/ssd && mkdir -p /tmp/ssd
  local t=$(date +%s)
  echo "=== $name: $model $*" >>"$OUT/runs.log"
  timeout "$limit" "$st" "${common[@]}" --steps "$steps" --model "$model" "$@" --out "$OUT/$name.json" \
    >/tmp/run.log 2>&1
  local rc=$?
  cat /tmp/run.log >>"$OUT/runs.log"
  echo "$name ($model): rc $rc in $(( $(date +%s) - t )) s"
  grep -E "s/step|refused|error|does not fit" /tmp/run.log | tail -3
  return $rc
}
"$st" "${common[@]}" --steps "$STEPS" --model gpt3-1.3b --ssd /tmp/ssd --gpu-mem 24GiB --cpu-mem 32GiB --dry-run \
  2>&1
run offload-cpu-states 110 4 gpt3-1.3b --ssd /tmp/ssd --gpu-mem 24GiB --cpu-mem 32GiB --commit-every 4
run offload-store-states 100 2 gpt3-1.3b --ssd /tmp/ssd --gpu-mem 24GiB --cpu-mem 8GiB
run in-memory 60 "$STEPS" gpt3-1.3b
# Optional (STREAM_RUN=1): the blocks streamed through GPU slots (--gpu-mem 4GiB holds about 6 GB
# resident otherwise), states in RAM; its first store write is the costly part (~21 GB).
if [ "${STREAM_RUN:-0}" = 1 ]; then
  "$st" "${common[@]}" --steps 2 --model gpt3-1.3b --ssd /tmp/ssd --gpu-mem 4GiB --cpu-mem 32GiB \
    --dry-run 2>&1 | grep -E "blocks|compute tier|bound"
  run offload-streamed 120 2 gpt3-1.3b --ssd /tmp/ssd --gpu-mem 4GiB --cpu-mem 32GiB --commit-every 4
fi
# Optional (PIECE_RUN=1, issue 22): a GPT-3 13B-shape model (10 of its 40 blocks, to fit the
# time) streamed whole and in pieces at one budget where both fit (tokens/s side by side), then in
# pieces at a budget two whole blocks (2 x 0.63 GiB bf16 + their fp32 gradients) do not fit.
if [ "${PIECE_RUN:-0}" = 1 ]; then
  m13=custom:L=10,C=5120,H=40,V=50257,T=2048
  for stream in block piece; do
    run "stream-$stream" 150 2 "$m13" --ssd /tmp/ssd --gpu-mem 12GiB --cpu-mem 64GiB \
      --micro-batch 1 --seq 2048 --stream "$stream"
  done
  "$st" "${common[@]}" --steps 2 --model "$m13" --ssd /tmp/ssd --gpu-mem 6GiB --cpu-mem 64GiB \
    --micro-batch 1 --seq 2048 --dry-run 2>&1 | grep -E "blocks|compute tier|bound"
  run stream-piece-small 150 2 "$m13" --ssd /tmp/ssd --gpu-mem 6GiB --cpu-mem 64GiB \
    --micro-batch 1 --seq 2048
fi
# Optional (ACT_RUN=1, issue 16): GPT-3 2.7B, B = 8, T = 1024 in 24 GiB, the activation policy
# recompute against auto (tokens/s; predicted against measured per term in each record's
# run.offload_measured.per_step). States in RAM committed only after the last step: committed
# every step or four, writing the 32 GB of states binds and auto rightly keeps nothing.
# With PIECE_RUN=1 as well the records pass the device tool's 8 files: run them apart.
# Clipping on (the default; common's --grad-clip 0 is replaced): without it AdamW binds there
# (0.41 s against 0.25 s of compute on the H200's rates) and auto keeps nothing.
if [ "${ACT_RUN:-0}" = 1 ]; then
  acts_common=(fuyou finetune --device cuda --micro-batch 8 --seq 1024 --eval-every 0
               --eval-batches 1 --lr 1e-4 --warmup 0)
  "$st" "${acts_common[@]}" --steps 4 --model gpt3-2.7b --ssd /tmp/ssd --gpu-mem 24GiB \
    --cpu-mem 64GiB --commit-every 1000 --dry-run 2>&1 | grep -E "activations|cost model|bound"
  for acts in recompute auto; do
    rm -rf /tmp/ssd && mkdir -p /tmp/ssd
    echo "=== activations-$acts" >>"$OUT/runs.log"
    timeout 150 "$st" "${acts_common[@]}" --steps 4 --model gpt3-2.7b --ssd /tmp/ssd \
      --gpu-mem 24GiB --cpu-mem 64GiB --commit-every 1000 --activations "$acts" \
      --out "$OUT/activations-$acts.json" >>"$OUT/runs.log" 2>&1
    echo "activations-$acts: rc $?"
  done
fi
rm -rf /tmp/ssd
echo "total: $(( $(date +%s) - t0 )) s"
