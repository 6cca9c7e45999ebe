#!/usr/bin/env bash
# Builds one libFuzzer harness with clang++ (+ ASan + UBSan; no CMake, no torch: each target
# needs only torch-free sources, listed below) and runs it from its committed seed corpus.
#   tests/fuzz/run_fuzz.sh TARGET [SECONDS=60] [WORKDIR=/tmp/sparsetrain-fuzz]
#   tests/fuzz/run_fuzz.sh all 5      # every target, 5 s each (the test command's smoke run)
# TARGET: graph_parse, graph_dir, hf_config, safetensors_header, token_file, store_manifest,
# toml_config. New inputs found go to
# WORKDIR/TARGET/corpus (the committed seeds in tests/fuzz/corpus/TARGET are only read); a crash
# leaves WORKDIR/TARGET/crash-* and the script exits non-zero. Exit 77 (skip) without clang++.
# Prints one JSON line per target: executions, seconds, new corpus size.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${1:?usage: run_fuzz.sh TARGET|all [SECONDS] [WORKDIR]}
seconds=${2:-60}
work=${3:-/tmp/sparsetrain-fuzz}
targets=(graph_parse graph_dir hf_config safetensors_header token_file store_manifest toml_config)
if [ "$target" = all ]; then
  for t in "${targets[@]}"; do "$0" "$t" "$seconds" "$work"; done
  exit 0
fi
cxx=${CXX_FUZZ:-$(command -v clang++-14 || command -v clang++ || true)}
[ -n "$cxx" ] || { echo "run_fuzz.sh: no clang++ with libFuzzer found; skipping" >&2; exit 77; }

common=("$root"/lib/common/{error,fault_injection,atomic_file,log,units,progress,input_file,mapped_file,memory_check}.cpp)
graph=("$root"/lib/teddy/graph/{text_parse,gzip_file,graph_io,graph}.cpp)
libs=(-lz -ldeflate -lpthread)
case "$target" in
  graph_parse | graph_dir) sources=("${graph[@]}" "${common[@]}") ;;
  hf_config) sources=("$root"/lib/fuyou/model/{model_config,hf_config}.cpp "${common[@]}") ;;
  safetensors_header) sources=("$root/lib/fuyou/model/safetensors_header.cpp" "${common[@]}") ;;
  token_file) sources=("$root/lib/fuyou/model/token_data.cpp" "${common[@]}") ;;
  store_manifest)
    sources=("$root"/lib/fuyou/store/*.cpp "$root"/lib/common/io/*.cpp "${common[@]}")
    libs+=(-luring) ;;
  toml_config) sources=("$root/apps/sparsetrain/cli.cpp" "${common[@]}") ;;
  *) echo "run_fuzz.sh: unknown target '$target' (one of ${targets[*]}, or all)" >&2; exit 2 ;;
esac

dir=$work/$target
mkdir -p "$dir/corpus"
bin=$dir/${target}_fuzz
# Rebuilt only when a source is newer than the binary.
if [ ! -x "$bin" ] || [ -n "$(find "$root/tests/fuzz/${target}_fuzz.cpp" "${sources[@]}" \
      "$root/lib" "$root/apps/sparsetrain" \( -name '*.h' -o -name '*.cpp' \) -newer "$bin" \
      -print -quit 2>/dev/null)" ]; then
  "$cxx" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/lib" -I"$root/apps/sparsetrain" "$root/tests/fuzz/${target}_fuzz.cpp" "${sources[@]}" \
    "${libs[@]}" -o "$bin.tmp"
  mv "$bin.tmp" "$bin"
fi
cd "$dir"
log=$dir/last.log
set +e
# -rss_limit_mb and -malloc_limit_mb: an input may not make us allocate what its sizes do not
# justify; -timeout 1: no input may take a second. A finding exits 1 (libFuzzer's default, 77, is
# the test command's "skipped").
"$bin" -max_total_time="$seconds" -max_len=4096 -timeout=1 -rss_limit_mb=2048 \
  -malloc_limit_mb=1024 -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 \
  corpus "$root/tests/fuzz/corpus/$target" >"$log" 2>&1
rc=$?
set -e
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
echo "{\"target\": \"$target\", \"seconds\": $seconds, \"executions\": ${execs:-0}," \
  "\"corpus\": $(find corpus -type f | wc -l), \"exit\": $rc}"
if [ $rc -ne 0 ]; then
  tail -40 "$log" >&2
  exit $rc
fi
