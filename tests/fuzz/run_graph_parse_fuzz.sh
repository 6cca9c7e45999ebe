#!/usr/bin/env bash
# Builds the graph-parser fuzz harness with clang's libFuzzer + ASan + UBSan (no CMake, no torch:
# the parsers need only lib/teddy's I/O files, lib/common/{error,atomic_file}.cpp, zlib and
# libdeflate) and runs it.
#   tests/fuzz/run_graph_parse_fuzz.sh [SECONDS=120] [WORKDIR=/tmp/sparsetrain-fuzz]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-120}
work=${2:-/tmp/sparsetrain-fuzz}
cxx=${CXX_FUZZ:-$(command -v clang++-14 || command -v clang++ || true)}
[ -n "$cxx" ] || { echo "no clang++ with libFuzzer found; skipping" >&2; exit 77; }
mkdir -p "$work/corpus"
"$cxx" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root/lib" "$root/tests/fuzz/graph_parse_fuzz.cpp" "$root/lib/teddy/graph/text_parse.cpp" \
  "$root/lib/teddy/graph/gzip_file.cpp" "$root/lib/teddy/graph/graph_io.cpp" "$root/lib/teddy/graph/graph.cpp" \
  "$root/lib/common/error.cpp" "$root/lib/common/atomic_file.cpp" -ldeflate -lz -lpthread \
  -o "$work/graph_parse_fuzz"
# Seeds: one per mode (first byte = mode, second = node-count bound).
printf '\x00\x080,1\n1,2\n2,3\n' >"$work/corpus/csv"
printf '\x01\x00# c\n0 1\n1\t2\n\n2,3\n' >"$work/corpus/edgelist"
printf '\x02\x040,1\n1,0\n' >"$work/corpus/dup"
{ printf '\x03\x08'; printf '0,1\n1,2\n' | gzip -n; } >"$work/corpus/gzip"
# Two GzipWriter-style members (FEXTRA subfield 'S','T': member bytes, line count).
python3 - "$work/corpus/gzip-indexed" <<'PY'
import struct, sys, zlib
def member(text):
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    body = c.compress(text) + c.flush()
    size = 24 + len(body) + 8
    head = b"\x1f\x8b\x08\x04" + b"\0" * 5 + b"\x03" + struct.pack("<H", 12) + b"ST" + \
        struct.pack("<HII", 8, size, text.count(b"\n"))
    return head + body + struct.pack("<II", zlib.crc32(text), len(text))
open(sys.argv[1], "wb").write(b"\x03\x08" + member(b"0,1\n1,2\n") + member(b"2,3\n"))
PY
cd "$work"
exec ./graph_parse_fuzz -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 corpus
