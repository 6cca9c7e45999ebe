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
  # clang-format keeps comments as written (ReflowComments: false): their 100 columns are checked
  # here, in characters (· and — are one column each).
  mapfile -t long < <(python3 - "${files[@]}" <<'PY'
import sys
for f in sys.argv[1:]:
    for n, line in enumerate(open(f, encoding="utf-8"), 1):
        if len(line.rstrip("\n")) > 100:
            print(f"{f}:{n}")
PY
)
  if [ ${#long[@]} -gt 0 ]; then
    printf '  %s\n' "${long[@]}" >&2
    die "${#long[@]} line(s) past 100 columns" "break them (comments are not reflowed for you)" 1
  fi
  if [ ${#drift[@]} -gt 0 ]; then
    printf '  %s\n' "${drift[@]}" >&2
    die "${#drift[@]} file(s) differ from .clang-format ($(clang-format --version | grep -o '[0-9][0-9.]*' | head -1))" \
        "run scripts/format.sh, then commit" 1
  fi
  say "format: ${#files[@]} files match .clang-format"
else
  clang-format --style=file -i "${files[@]}"
fi
