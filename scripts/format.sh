#!/usr/bin/env bash
# Formats the C++ sources (lib, apps, tests, bench) with .clang-format, or checks that they are.
#   scripts/format.sh            rewrite every file that drifts
#   scripts/format.sh --check    list the files that drift and exit 1 (scripts/test.sh runs this)
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
command -v clang-format >/dev/null ||
  die "clang-format is not installed" "run scripts/setup.sh (it installs the clang-format package)" 3
mapfile -t files < <(git ls-files -- 'lib/*.h' 'lib/*.cpp' 'apps/*.h' 'apps/*.cpp' \
                                     'tests/*.h' 'tests/*.cpp' 'bench/*.h' 'bench/*.cpp')
if [ "${1:-}" = "--check" ]; then
  drift=()
  for f in "${files[@]}"; do
    clang-format --style=file --dry-run --Werror "$f" >/dev/null 2>&1 || drift+=("$f")
  done
  if [ ${#drift[@]} -gt 0 ]; then
    printf '  %s\n' "${drift[@]}" >&2
    die "${#drift[@]} file(s) differ from .clang-format ($(clang-format --version | grep -o '[0-9][0-9.]*' | head -1))" \
        "run scripts/format.sh, then commit" 1
  fi
  say "format: ${#files[@]} files match .clang-format"
else
  clang-format --style=file -i "${files[@]}"
fi
