#!/usr/bin/env bash
# Shows that two sparsetrain binaries train offloaded (`fuyou finetune --ssd`) identically: for a
# matrix of offload placements it runs the same command with each binary into fresh store
# directories and compares, per case,
#   1. every file the run leaves in each --ssd directory, byte for byte (cmp);
#   2. the run records (--out) without their volatile `run` block (jq -S 'del(.run)').
# Prints one line per case on stdout (the store's files, names and sizes, go to stderr) and exits 1
# when anything differs, 0 when everything is identical, 2 on a usage error, 3 without jq.
#   scripts/compare_offload_stores.sh OLD_BINARY NEW_BINARY [WORKDIR]
# WORKDIR: where the scratch stores go (default $TMPDIR or /tmp); a fresh directory in it is removed
# on exit. OMP_NUM_THREADS defaults to 1 (the runs are tiny); both binaries run with the same value.
#
# Both binaries run with the very same --ssd paths (the scratch store is moved aside after each
# run), because the paths are part of what a run writes: the store manifest (sparsetrain-store.json
# "dirs") and the record's config.ssd. Nothing else is excluded from the stores: two runs of the same
# binary leave byte-identical files (manifest and .dat extents alike: no timestamps or random ids).
# In the records, besides `run` (argv, pid, host, timings, throughput, measured rates), the `build`
# block (version, git commit, compiler) differs between two builds by design; it is left out of the
# verdict and printed as a note when it differs. Everything else, losses and the plan
# (metrics.offload) included, must match.
#
# The cases (model custom:L=4,C=64,H=4,V=128,T=64, B=2, T=32, CPU tier; the budgets come from
# --dry-run plans of that model, and each case checks its plan in the old binary's record, so a
# planner change that moves a case off its placement stops the script instead of silently testing
# something else):
#   a  states in RAM (--cpu-mem 1GiB), blocks resident, clipping, K=1
#   b  states in the store (--cpu-mem 2MiB), resident, --grad-clip 0 (updates overlap the backward)
#   c  states in the store, K=3, clipping
#   d  states in RAM, --commit-every 2
#   e  blocks streamed (--gpu-mem 2MiB < the 2.16 MiB resident layout), states in the store, K=2
#   f  streamed, block inputs in the store (--gpu-mem 1800KiB)
#   g  streamed, K=2 and clipping, block gradients drained to RAM (--gpu-mem 1600KiB)
#   h  as g with the gradient accumulators in the store (--cpu-mem 1800KiB)
#   i  resume without a kill, placement h: --steps 2, then --steps 4 --resume in the same store
#      (compared after each part: i.1 and i.2)
# Every case stripes the store over two directories. All placements of the brief are reachable
# through the CLI on the CPU tier; none is skipped.
set -euo pipefail
source "$(dirname "$0")/common.sh"
usage="usage: scripts/compare_offload_stores.sh OLD_BINARY NEW_BINARY [WORKDIR]"
if [ $# -lt 2 ] || [ $# -gt 3 ]; then die "$usage" "" 2; fi
old=$1 new=$2
for b in "$old" "$new"; do
  if [ ! -f "$b" ] || [ ! -x "$b" ]; then die "no executable binary '$b'; $usage" "" 2; fi
done
command -v jq >/dev/null || die "jq is not installed" "apt-get install jq" 3
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

work=$(mktemp -d "${3:-${TMPDIR:-/tmp}}/st-cmp-XXXXXX")
trap 'rm -rf "$work"' EXIT
ssd=$work/ssd  # the path every run uses; moved to $work/{old,new} after a run
# shellcheck disable=SC2054  # the commas belong to --model and --ssd
common=(--model custom:L=4,C=64,H=4,V=128,T=64 --micro-batch 2 --seq 32 --loss-chunk 16
        --device cpu --eval-every 0 --eval-batches 1 --ssd "$ssd/a,$ssd/b")

# run BINARY SIDE RESUME? ARGS...: one training run into $ssd; its store ends at $work/SIDE, its
# record at $work/SIDE.json. With RESUME=resume it continues the store already at $work/SIDE.
run() {
  local bin=$1 side=$2 resume=$3
  shift 3
  rm -rf "$ssd"
  if [ "$resume" = resume ]; then mv "$work/$side" "$ssd"; else mkdir -p "$ssd/a" "$ssd/b"; fi
  rm -rf "${work:?}/$side" "$work/$side.json"
  if ! "$bin" --progress never --log-level warn --out "$work/rec.json" fuyou finetune \
    "${common[@]}" "$@" >"$work/$side.log" 2>&1; then
    echo "$side run failed ($bin): $(tail -n 3 "$work/$side.log" | tr '\n' ' ')"
    mv "$ssd" "$work/$side"
    return 1
  fi
  mv "$ssd" "$work/$side"
  mv "$work/rec.json" "$work/$side.json"
}

# Leaf paths (a.b.0.c) of a record without `run` and `build` whose values differ.
record_diff() {
  jq -rn --slurpfile x "$1" --slurpfile y "$2" '
    def leaves: [paths(scalars) as $p | {key: ($p | map(tostring) | join(".")), value: getpath($p)}]
                | from_entries;
    ($x[0] | del(.run, .build) | leaves) as $a | ($y[0] | del(.run, .build) | leaves) as $b
    | ([$a, $b] | map(keys) | add | unique)[] | select($a[.] != $b[.])'
}

# compare NAME: the stores $work/old, $work/new and the records; prints the case's line.
failed=0
build_noted=0
compare() {
  local name=$1 f files=0 bytes=0 list="" store="" record=""
  local -a diffs=()
  local old_files new_files
  old_files=$(cd "$work/old" && find . ! -type d | sed 's|^\./||' | LC_ALL=C sort)
  new_files=$(cd "$work/new" && find . ! -type d | sed 's|^\./||' | LC_ALL=C sort)
  while read -r f; do
    [ -n "$f" ] || continue
    if [ ! -f "$work/old/$f" ] || [ -L "$work/old/$f" ]; then diffs+=("$f: not a plain file"); continue; fi
    if [ ! -e "$work/new/$f" ]; then diffs+=("$f: only in old"); continue; fi
    local size
    size=$(stat -c %s "$work/old/$f")
    files=$((files + 1)) bytes=$((bytes + size)) list+=" $f ($size B)"
    if ! out=$(cmp "$work/old/$f" "$work/new/$f" 2>&1); then
      if [[ $f == */sparsetrain-store.json ]] && jq -e . "$work/new/$f" >/dev/null 2>&1; then
        local tensors
        tensors=$(jq -rn --slurpfile x "$work/old/$f" --slurpfile y "$work/new/$f" '
          [($x[0].tensors + $y[0].tensors | map(.name) | unique)[] as $n
           | select([$x[0].tensors[] | select(.name == $n)] != [$y[0].tensors[] | select(.name == $n)])
           | $n] | join(",")' 2>/dev/null || echo "?")
        diffs+=("$f differs (tensors: ${tensors:-none; header fields})")
      else
        out=${out##*: }
        diffs+=("$f differs (first at ${out%%, line*})")
      fi
    fi
  done <<<"$old_files"
  while read -r f; do
    if [ -n "$f" ] && [ ! -e "$work/old/$f" ]; then diffs+=("$f: only in new"); fi
  done <<<"$new_files"
  say "$name: store files:${list:- none}"
  if [ ${#diffs[@]} -eq 0 ]; then
    store="store identical ($files files, $bytes bytes)"
  else
    store="store DIFFERS: $(IFS=';'; echo "${diffs[*]}")"
  fi
  local changed
  changed=$(record_diff "$work/old.json" "$work/new.json" | head -n 12 | paste -sd, - || true)
  if [ -z "$changed" ]; then record="record identical"; else record="record DIFFERS: $changed"; fi
  if [ $build_noted = 0 ] && ! diff -q <(jq -S .build "$work/old.json") \
    <(jq -S .build "$work/new.json") >/dev/null; then
    say "note: the records' build blocks differ (not compared): $(jq -c .build "$work/old.json")" \
      "vs $(jq -c .build "$work/new.json")"
    build_noted=1
  fi
  echo "case $name: $store, $record"
  [ ${#diffs[@]} -eq 0 ] && [ -z "$changed" ] || failed=1
}

# expect NAME JQ: the old binary's plan (metrics.offload) must satisfy JQ, or the case is stale.
expect() {
  jq -e "(.metrics.offload | $2) == true" "$work/old.json" >/dev/null ||
    die "case $1: the plan is not the intended placement ($2): $(jq -c '.metrics.offload |
      {states, stream_slots, inputs_in_store, block_grads_in_cpu, block_grads_in_store}' \
      "$work/old.json")" "adjust the budgets in $0 (see its --dry-run plan)"
}

# case NAME PLAN-CHECK ARGS...: both binaries, fresh stores, then compare.
case_() {
  local name=$1 plan=$2
  shift 2
  if run "$old" old fresh "$@" && run "$new" new fresh "$@"; then
    expect "$name" "$plan"
    compare "$name"
  else
    echo "case $name: a run failed (see above)"
    failed=1
  fi
  rm -rf "$work/old" "$work/new"
}

resident='.resident_blocks == 4 and .stream_slots == 0'
streamed='.resident_blocks == 0 and .stream_slots > 0'
plain_grads='(.block_grads_in_cpu | not) and (.block_grads_in_store | not)'
# a-h: three steps each
case_ a "$resident and .states == \"cpu\" and $plain_grads" --steps 3 --cpu-mem 1GiB
case_ b "$resident and .states == \"store\" and (.grad_clip_mode | startswith(\"overlapped\"))" \
  --steps 3 --cpu-mem 2MiB --grad-clip 0
case_ c "$resident and .states == \"store\" and (.grad_clip_mode | startswith(\"deferred\"))" \
  --steps 3 --cpu-mem 2MiB --accum 3
case_ d "$resident and .states == \"cpu\"" --steps 3 --cpu-mem 1GiB --commit-every 2
case_ e "$streamed and .states == \"store\" and (.inputs_in_store | not) and $plain_grads" \
  --steps 3 --cpu-mem 2MiB --gpu-mem 2MiB --accum 2
case_ f "$streamed and .inputs_in_store and $plain_grads" --steps 3 --cpu-mem 2MiB --gpu-mem 1800KiB
case_ g "$streamed and .block_grads_in_cpu and (.block_grads_in_store | not)" \
  --steps 3 --cpu-mem 2MiB --gpu-mem 1600KiB --accum 2
h=(--cpu-mem 1800KiB --gpu-mem 1600KiB --accum 2)
h_plan="$streamed and .states == \"store\" and .block_grads_in_cpu and .block_grads_in_store"
case_ h "$h_plan" --steps 3 "${h[@]}"

# i: two steps, compared; then each binary resumes its own store to step 4, compared again.
if run "$old" old fresh --steps 2 "${h[@]}" && run "$new" new fresh --steps 2 "${h[@]}"; then
  expect i "$h_plan"
  compare i.1
  if run "$old" old resume --steps 4 --resume "${h[@]}" &&
    run "$new" new resume --steps 4 --resume "${h[@]}"; then
    jq -e '.metrics.first_step == 3' "$work/old.json" >/dev/null || die "case i: did not resume"
    compare i.2
  else
    echo "case i.2: a run failed (see above)"
    failed=1
  fi
else
  echo "case i.1: a run failed (see above)"
  failed=1
fi
say "done in ${SECONDS}s: $([ $failed = 0 ] && echo "everything identical" || echo "DIFFERENCES")"
exit $failed
