#!/usr/bin/env bash
# Sets up if needed, builds, checks the formatting (scripts/format.sh --check) and runs every test
# (CTest: unit, cli, data; gpu tests skip without CUDA).
#   scripts/test.sh [PRESET] [ctest args...]     e.g. scripts/test.sh asan   or   scripts/test.sh default -L unit
set -euo pipefail
source "$(dirname "$0")/common.sh"
preset=${1:-default}
[ $# -gt 0 ] && shift
"$ROOT/scripts/setup.sh" "$preset"
cd "$ROOT"
"$ROOT/scripts/format.sh" --check  # the house style (.clang-format) holds, or nothing runs
ctest --preset "$preset" -j"$JOBS" "$@"
