#!/usr/bin/env bash
# Builds the graph-parser fuzz harness with clang's libFuzzer + ASan + UBSan (no CMake, no torch:
# the parsers need only lib/teddy's I/O files, lib/common/error.cpp and zlib) and runs it.
#   tests/fuzz/run_graph_parse_fuzz.sh [SECONDS=120] [WORKDIR=/tmp/sparsetrain-fuzz]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-120}
work=${2:-/tmp/sparsetrain-fuzz}
cxx=${CXX_FUZZ:-$(command -v clang++-14 || command -v clang++ || true)}
[ -n "$cxx" ] || { echo "no clang++ with libFuzzer found; skipping" >&2; exit 77; }
mkdir -p "$work/corpus"
"$cxx" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root/lib" "$root/tests/fuzz/graph_parse_fuzz.cpp" "$root/lib/teddy/text_parse.cpp" \
  "$root/lib/teddy/gzip_file.cpp" "$root/lib/teddy/graph_io.cpp" "$root/lib/teddy/graph.cpp" \
  "$root/lib/common/error.cpp" -lz -lpthread -o "$work/graph_parse_fuzz"
# Seeds: one per mode (first byte = mode, second = node-count bound).
printf '\x00\x080,1\n1,2\n2,3\n' >"$work/corpus/csv"
printf '\x01\x00# c\n0 1\n1\t2\n\n2,3\n' >"$work/corpus/edgelist"
printf '\x02\x040,1\n1,0\n' >"$work/corpus/dup"
{ printf '\x03\x08'; printf '0,1\n1,2\n' | gzip -n; } >"$work/corpus/gzip"
cd "$work"
exec ./graph_parse_fuzz -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 corpus
