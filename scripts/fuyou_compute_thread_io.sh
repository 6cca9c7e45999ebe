#!/usr/bin/env bash
# Shows that the offloaded trainer's compute thread (the main thread) does no I/O while training:
# runs `fuyou finetune --ssd` under strace for 2 and for 12 steps and counts I/O system calls per
# thread. The main thread's count must not grow with the steps (its only I/O is creating the store
# and the initial commit); every per-step read, write, fdatasync and manifest rename happens on the
# optimizer/I-O threads. Exit 0 when that holds, 1 when not, 77 without strace.
#   scripts/fuyou_compute_thread_io.sh [path/to/sparsetrain] [--stream | --in-place | --activations]
# --stream: a model whose blocks stream from the store and whose block inputs go there too
# (--gpu-mem smaller than the compute weights), so the loader and stash threads are checked as well.
# --in-place: one store slot (--store-slots 1): the step's seal and journal writes are checked too.
# --activations: every block keeps every activation in the store (--activations keep-all
# --activations-in store): the kept activations' stash thread is checked too.
set -euo pipefail
bin=${1:-$(dirname "$0")/../build/apps/sparsetrain/sparsetrain}
model=(--model tiny --cpu-mem 1200KiB --micro-batch 4 --seq 32)
if [ "${2:-}" = --stream ]; then
  model=(--model custom:L=8,C=64,H=4,V=256,T=64 --cpu-mem 4MiB --gpu-mem 1300KiB --micro-batch 2
         --seq 16)
elif [ "${2:-}" = --in-place ]; then
  model=(--model tiny --cpu-mem 2MiB --micro-batch 4 --seq 32 --store-slots 1)
elif [ "${2:-}" = --activations ]; then
  model=(--model tiny --cpu-mem 1200KiB --micro-batch 4 --seq 32 --activations keep-all
         --activations-in store)
fi
command -v strace >/dev/null || { echo "strace not installed: skipped" >&2; exit 77; }
work=$(mktemp -d /tmp/st-io-XXXXXX)
trap 'rm -rf "$work"' EXIT
calls=io_uring_enter,pread64,pwrite64,preadv,pwritev,preadv2,pwritev2,fdatasync,fsync,rename,renameat,renameat2
declare -A main_calls
for steps in 2 12; do
  rm -rf "$work/a" "$work/b"; mkdir -p "$work/a" "$work/b"
  OMP_NUM_THREADS=1 strace -f -qq -o "$work/trace.$steps" -e trace=$calls "$bin" fuyou finetune \
    "${model[@]}" --ssd "$work/a,$work/b" --grad-clip 0 --steps $steps \
    --eval-every 0 --eval-batches 1 --device cpu --progress never 2>/dev/null
  main=$(awk 'NR == 1 {print $1}' "$work/trace.$steps")
  echo "== $steps steps (main thread $main): I/O calls per thread"
  awk '{split($2, a, "("); print $1, a[1]}' "$work/trace.$steps" | sort | uniq -c |
    awk -v m="$main" '{print ($2 == m ? "  compute/main" : "  other       "), $1, $3}'
  main_calls[$steps]=$(awk -v m="$main" '$1 == m' "$work/trace.$steps" | wc -l)
done
echo "main-thread I/O calls: ${main_calls[2]} at 2 steps, ${main_calls[12]} at 12 steps"
[ "${main_calls[2]}" = "${main_calls[12]}" ]
