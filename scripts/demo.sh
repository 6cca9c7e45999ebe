#!/usr/bin/env bash
# Sets up if needed, builds, and shows what sparsetrain does on built-in data.
set -euo pipefail
source "$(dirname "$0")/common.sh"
"$ROOT/scripts/setup.sh" default
st=$ROOT/build/apps/sparsetrain/sparsetrain
out=${SPARSETRAIN_DEMO_OUT:-$ROOT/demo-out}
mkdir -p "$out"

say "sparsetrain --version"
"$st" --version
say "sparsetrain env: what this machine offers (run record in $out/env.json)"
"$st" env --dir "$out" --out "$out/env.json"
