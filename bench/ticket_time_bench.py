#!/usr/bin/env python3
"""Time to a graph lottery ticket at one paper level: TEDDY (dense teacher + one edge score + one
sparse student) against UGS (k rounds of mask search + retrain, 2k trainings), both through
`sparsetrain teddy run` with the same binary, graph, model, seed and epochs, one after the other
in this one invocation (so the ratio sees the same machine and load). Prints JSON with the commit,
hardware, every parameter, both commands, per-method wall and CPU seconds (whole process) and the
in-process ticket time, the tickets' accuracies and sparsities, and the ratios. Not a test: it
never fails on speed. Needs only the Python standard library.

    OMP_NUM_THREADS=1 python3 bench/ticket_time_bench.py [--graph ../shared/data/cora]
        [--level 20] [--model gcn] [--seed 0] [--binary build/apps/sparsetrain/sparsetrain]
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time


def run_method(binary, graph, model, method, level, seed, out_dir):
    out = os.path.join(out_dir, f"{method}.json")
    cmd = [binary, "--progress", "never", "--seed", str(seed), "teddy", "run", "--graph", graph,
           "--model", model, "--method", method, "--levels", str(level), "--seeds", "1",
           "--out", out]
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out) as f:
        rec = json.load(f)
    lv = rec["metrics"]["levels"][-1]
    return {
        "command": " ".join(cmd),
        "wall_seconds": wall,
        "cpu_seconds": (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime),
        "ticket_seconds": lv["ticket_seconds"]["mean"],  # in-process wall, from the record
        "test_accuracy": lv["test_accuracy"]["mean"],
        "valid_accuracy": lv["valid_accuracy"]["mean"],
        "graph_sparsity": lv["graph_sparsity"],
        "weight_sparsity": lv["weight_sparsity"],
        "macs_vs_dense": lv["macs_vs_dense"],
        "dense_test_accuracy": rec["metrics"]["dense"]["test_accuracy"]["mean"],
        "load_avg_after": os.getloadavg(),
    }


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graph", default=os.path.join(root, "..", "shared", "data", "cora"))
    ap.add_argument("--binary",
                    default=os.path.join(root, "build", "apps", "sparsetrain", "sparsetrain"))
    ap.add_argument("--model", default="gcn")
    ap.add_argument("--level", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not os.path.isdir(args.graph):
        print(f"ticket_time_bench.py: no graph at {args.graph}", file=sys.stderr)
        return 77
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        results = {m: run_method(args.binary, args.graph, args.model, m, args.level, args.seed, tmp)
                   for m in ("teddy", "ugs")}
    commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    t, u = results["teddy"], results["ugs"]
    print(json.dumps({
        "bench": "ticket_time_bench", "commit": commit,
        "hardware": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                     "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                     "load_avg_before": load_before},
        "params": {"graph": args.graph, "model": args.model, "paper_level": args.level,
                   "graph_sparsity": 1 - 0.95 ** args.level,
                   "weight_sparsity": 1 - 0.8 ** args.level, "seed": args.seed, "epochs": 200,
                   "trainings": {"teddy": 2, "ugs": 1 + 2 * args.level}},
        "results": results,
        "ugs_over_teddy": {k: u[k] / t[k] for k in ("wall_seconds", "cpu_seconds",
                                                     "ticket_seconds")},
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
