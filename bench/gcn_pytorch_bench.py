#!/usr/bin/env python3
"""One 200-epoch GCN training on Cora: `sparsetrain teddy run` (sparse CSR features and
adjacency, LibTorch) against the same model in PyTorch eager with dense features as PyG does it
(X·W dense, then the normalised adjacency as a sparse COO product), side by side in one run.
Same protocol on both sides: 2-layer GCN, hidden 512, dropout 0.5, no bias, Adam lr 0.01 wd 5e-4,
an eval-mode forward after every step for best-validation selection. Repeats interleaved,
reports raw samples (wall and CPU seconds), medians and the ratios as JSON on stdout. Not a test: it never fails on speed.

    OMP_NUM_THREADS=1 .venv/bin/python bench/gcn_pytorch_bench.py [--graph ../shared/data/cora]
        [--repeats 3] [--epochs 200] [--binary build/apps/sparsetrain/sparsetrain]
"""
import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch


def read_csv(path, dtype):
    with gzip.open(path, "rt") as f:
        return np.loadtxt(f, delimiter=",", dtype=dtype, ndmin=2)


def load(graph):
    n = int(read_csv(f"{graph}/raw/num-node-list.csv.gz", np.int64)[0, 0])
    edges = read_csv(f"{graph}/raw/edge.csv.gz", np.int64)
    x = torch.from_numpy(read_csv(f"{graph}/raw/node-feat.csv.gz", np.float32))
    y = torch.from_numpy(read_csv(f"{graph}/raw/node-label.csv.gz", np.int64)[:, 0])
    split = {k: torch.from_numpy(read_csv(f"{graph}/split/public/{k}.csv.gz", np.int64)[:, 0])
             for k in ("train", "valid", "test")}
    x = x / x.sum(1, keepdim=True).clamp_min(1e-12)  # row-normalised, dense (as PyG)
    e = torch.from_numpy(edges)
    src = torch.cat([e[:, 0], e[:, 1]])
    dst = torch.cat([e[:, 1], e[:, 0]])
    a = torch.sparse_coo_tensor(torch.stack([dst, src]), torch.ones(src.numel()), (n, n)).coalesce()
    idx = a.indices()  # duplicates merged: a 0/1 adjacency
    loops = torch.arange(n)
    has_loop = torch.zeros(n, dtype=torch.bool)
    has_loop[idx[0][idx[0] == idx[1]]] = True
    extra = loops[~has_loop]
    idx = torch.cat([idx, torch.stack([extra, extra])], 1)
    deg = torch.zeros(n).index_add_(0, idx[0], torch.ones(idx.size(1)))
    w = deg[idx[0]].rsqrt() * deg[idx[1]].rsqrt()
    adj = torch.sparse_coo_tensor(idx, w, (n, n)).coalesce()
    return x, y, split, adj


def train_pytorch(x, y, split, adj, epochs, seed):
    torch.manual_seed(seed)
    f, c = x.size(1), int(y.max()) + 1
    w1 = torch.nn.Parameter(torch.nn.init.xavier_uniform_(torch.empty(f, 512)))
    w2 = torch.nn.Parameter(torch.nn.init.xavier_uniform_(torch.empty(512, c)))
    opt = torch.optim.Adam([w1, w2], lr=0.01, weight_decay=5e-4)

    def forward(training):
        h = torch.sparse.mm(adj, x @ w1).relu()
        h = torch.nn.functional.dropout(h, 0.5, training)
        return torch.sparse.mm(adj, h @ w2)

    best_val, test = -1.0, 0.0
    c0 = time.process_time()
    t0 = time.perf_counter()
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(forward(True)[split["train"]], y[split["train"]])
        loss.backward()
        opt.step()
        with torch.no_grad():
            pred = forward(False).argmax(1)
            val = (pred[split["valid"]] == y[split["valid"]]).float().mean().item()
            if val >= best_val:
                best_val = val
                test = (pred[split["test"]] == y[split["test"]]).float().mean().item()
    return time.perf_counter() - t0, time.process_time() - c0, test


def train_ours(binary, graph, epochs, seed):
    import resource
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([binary, "teddy", "run", "--graph", graph, "--model", "gcn",
                          "--epochs", str(epochs), "--seed", str(seed), "--progress", "never",
                          "--out", "-"], capture_output=True, text=True, check=True).stdout
    rec = json.loads(out[out.index("{"):])
    d = rec["metrics"]["dense"]
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the whole process (graph load included, so an upper bound for training)
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    return d["seconds"]["mean"], cpu, d["test_accuracy"]["mean"]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graph", default=os.path.join(root, "..", "shared", "data", "cora"))
    ap.add_argument("--binary", default=os.path.join(root, "build", "apps", "sparsetrain", "sparsetrain"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=200)
    args = ap.parse_args()
    if not os.path.isdir(args.graph):
        print(f"gcn_pytorch_bench.py: no graph at {args.graph}", file=sys.stderr)
        return 77
    x, y, split, adj = load(args.graph)
    samples = {"sparsetrain": [], "pytorch_eager": []}
    cpu = {"sparsetrain": [], "pytorch_eager": []}
    accuracy = {"sparsetrain": [], "pytorch_eager": []}
    for r in range(args.repeats):
        for name, fn in (("sparsetrain", lambda: train_ours(args.binary, args.graph, args.epochs, r)),
                         ("pytorch_eager", lambda: train_pytorch(x, y, split, adj, args.epochs, r))):
            s, c, a = fn()
            samples[name].append(s)
            cpu[name].append(c)
            accuracy[name].append(a)
    med = {k: statistics.median(v) for k, v in samples.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(json.dumps({
        "bench": "gcn_pytorch_bench", "commit": commit,
        "hardware": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                     "torch_threads": torch.get_num_threads(),
                     "load_avg": os.getloadavg()},
        "torch": torch.__version__,
        "params": {"graph": args.graph, "epochs": args.epochs, "repeats": args.repeats,
                   "hidden": 512, "features_pytorch": "dense", "features_sparsetrain": "sparse CSR"},
        "seconds": samples, "test_accuracy": accuracy, "median_seconds": med,
        "cpu_seconds": cpu, "median_cpu_seconds": med_cpu,
        "speedup_pytorch_over_sparsetrain": med["pytorch_eager"] / med["sparsetrain"],
        "cpu_speedup_pytorch_over_sparsetrain": med_cpu["pytorch_eager"] / med_cpu["sparsetrain"],
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
