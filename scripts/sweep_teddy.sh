#!/usr/bin/env bash
# Sweeps `sparsetrain teddy run` over datasets × models × methods × levels × seeds, one run record
# (JSON) per run, for scripts/plot_sweep.py. Runs one after another (the machine has 2 cores).
#   scripts/sweep_teddy.sh OUT_DIR
# Environment (space-separated lists):
#   DATASETS  graph directories, or "csbm" for the embedded synthetic one (default: cora and
#             citeseer in data/, fetched with `sparsetrain data fetch` when missing, or from
#             SPARSETRAIN_DATA / ../shared/data offline; csbm when neither can be had)
#   MODELS    default "gcn gat gin";  METHODS  default "teddy ugs random"
#   LEVELS    paper level numbers, default "1 2 3 5 7 10 15 20";  SEEDS  default 3
#   EXTRA     further flags for every run, e.g. "--epochs 100 --lambda 10"
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -eq 1 ] || die "usage: scripts/sweep_teddy.sh OUT_DIR" "pass the directory for the JSON run records" 2
out=$1
st=${SPARSETRAIN_BIN:-$ROOT/build/apps/sparsetrain/sparsetrain}
[ -x "$st" ] || die "no sparsetrain binary at $st" "run scripts/setup.sh first" 3
if [ -z "${DATASETS:-}" ]; then
  for name in cora citeseer; do
    dir=$(planetoid_graph "$name" "$st")
    [ -n "$dir" ] && DATASETS="${DATASETS:-} $dir"
  done
  DATASETS=${DATASETS:-csbm}
fi
MODELS=${MODELS:-gcn gat gin}
METHODS=${METHODS:-teddy ugs random}
LEVELS=${LEVELS:-1 2 3 5 7 10 15 20}
SEEDS=${SEEDS:-3}
EXTRA=${EXTRA:-}
mkdir -p "$out"
levels_csv=$(echo $LEVELS | tr ' ' ',')
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for ds in $DATASETS; do
  name=$(basename "$ds")
  graph_flag=(--graph "$ds")
  [ "$ds" = csbm ] && graph_flag=()
  for model in $MODELS; do
    for method in $METHODS; do
      # One run per (dataset, model, method) with every level: the dense model (and TEDDY's
      # teacher) trains once per seed, and UGS reaches level k through rounds 1..k anyway.
      file=$out/$name-$model-$method.json
      [ -s "$file" ] && { say "skip $file (exists)"; continue; }
      say "$name $model $method levels $levels_csv seeds $SEEDS"
      # shellcheck disable=SC2086
      "$st" teddy run "${graph_flag[@]}" --model "$model" --method "$method" --levels "$levels_csv" \
        --seeds "$SEEDS" --progress never --out "$file" $EXTRA >/dev/null
    done
  done
done
say "records in $out; plot with: $VENV/bin/python scripts/plot_sweep.py $out"
