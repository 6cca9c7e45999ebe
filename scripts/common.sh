# Sourced by the scripts in scripts/: paths and small helpers. Not meant to be run.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SPARSETRAIN_VENV:-$ROOT/.venv}
JOBS=${SPARSETRAIN_JOBS:-$(nproc)}

say() { echo "[sparsetrain] $*" >&2; }
die() { echo "sparsetrain: error: $1" >&2; [ -n "${2:-}" ] && echo "  hint: $2" >&2; exit "${3:-1}"; }

# Sets DATA_TOOL (an array): `sparsetrain data` when this binary has it, else the script behind it.
data_tool() {
  local st=${1:-$ROOT/build/apps/sparsetrain/sparsetrain} help=""
  [ -x "$st" ] && help=$("$st" data fetch --help 2>/dev/null) || true
  if [[ $help == *--from* ]]; then
    DATA_TOOL=("$st" data)
  else
    DATA_TOOL=("$VENV/bin/python" "$ROOT/scripts/data_fetch.py")
  fi
}

# Prints the directory of Planetoid graph NAME (cora, citeseer, pubmed) in the OGB raw layout, or
# nothing when none can be had (offline, no copy): callers fall back to the synthetic graph.
#   planetoid_graph NAME [SPARSETRAIN_BINARY]
#   SPARSETRAIN_DATA set: its NAME/ (converted graphs) or its ind.NAME.* files (`data fetch --from`)
#   else data/NAME, fetched by `sparsetrain data fetch NAME` (one line when already there)
#   else ../shared/data/NAME
planetoid_graph() {
  local name=$1
  data_tool "${2:-}"
  if [ -n "${SPARSETRAIN_DATA:-}" ]; then
    if [ -f "$SPARSETRAIN_DATA/$name/raw/num-node-list.csv.gz" ]; then
      echo "$SPARSETRAIN_DATA/$name"; return
    fi
    if [ -f "$SPARSETRAIN_DATA/ind.$name.x" ] &&
       "${DATA_TOOL[@]}" fetch "$name" --from "$SPARSETRAIN_DATA" >&2; then
      echo "$ROOT/data/$name"; return
    fi
    say "SPARSETRAIN_DATA=$SPARSETRAIN_DATA has neither $name/ nor usable ind.$name.* files"
  fi
  if "${DATA_TOOL[@]}" fetch "$name" >&2; then
    echo "$ROOT/data/$name"; return
  fi
  if [ -f "$ROOT/../shared/data/$name/raw/num-node-list.csv.gz" ]; then
    say "using ../shared/data/$name instead"
    (cd "$ROOT/../shared/data/$name" && pwd); return
  fi
  say "no $name here: 'sparsetrain data fetch $name' needs github.com; offline, pass" \
      "'--from DIR' with the ind.$name.* files (github.com/kimiyoung/planetoid, data/)"
}
