#!/usr/bin/env bash
# Sets up if needed, builds, and shows what sparsetrain does on built-in data and on Cora (fetched
# into data/cora with `sparsetrain data fetch cora`; offline: SPARSETRAIN_DATA, ../shared/data, or
# the synthetic graph).
# Results (run records, pruned graphs, an exported model) land in demo-out/ (SPARSETRAIN_DEMO_OUT).
set -euo pipefail
source "$(dirname "$0")/common.sh"
"$ROOT/scripts/setup.sh" default
st=$ROOT/build/apps/sparsetrain/sparsetrain
out=${SPARSETRAIN_DEMO_OUT:-$ROOT/demo-out}
mkdir -p "$out"

say "teddy run: TEDDY tickets on the embedded Cora-sized csbm graph (dense teacher; k=5 prunes 22.6 % of edges and 67 % of weights, k=10 40.1 % / 89 %)"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$st" teddy run --model gcn --method teddy --levels 5,10 \
  --seeds 1 --out "$out/teddy-run-csbm.json"

say "sparsetrain --version"
"$st" --version
say "sparsetrain env: what this machine offers"
"$st" env --dir "$out" --out "$out/env.json"

say "graph generate: a Cora-sized contextual SBM with features, labels and a split"
"$st" graph generate csbm --seed 1 --overwrite --out-graph "$out/csbm" --out "$out/graph-generate.json"
say "data fetch: Cora into data/cora (Planetoid files from github.com/kimiyoung/planetoid, checked)"
cora=$(planetoid_graph cora "$st")
if [ -n "$cora" ]; then
  say "graph stats: Cora"
  "$st" graph stats "$cora"
  say "teddy prune: Cora at the 20 paper levels (1 - 0.95^k), nested, in one pass"
  "$st" teddy prune --graph "$cora" --levels paper --overwrite --out-graph "$out/cora-levels" \
    --out "$out/teddy-prune-cora.json"
else
  say "teddy prune: the generated graph at 30 % (no Cora here; see above how to get it)"
  "$st" teddy prune --graph "$out/csbm" --graph-sparsity 0.3 --overwrite --out-graph "$out/csbm-30" \
    --out "$out/teddy-prune-csbm.json"
fi

say "fuyou describe: GPT-3 175B's parameters, FLOPs per token and model-state bytes"
"$st" fuyou describe --model gpt3-175b --out "$out/fuyou-describe.json"
say "fuyou finetune: a 0.86M-parameter GPT learns the built-in text (loss starts near log 256 = 5.545)"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$st" fuyou finetune --model small --steps 400 --micro-batch 8 \
  --seq 128 --lr 3e-3 --warmup 20 --eval-every 100 --export "$out/fuyou-small.safetensors" \
  --out "$out/fuyou-finetune.json"
say "done: run records in $out"
