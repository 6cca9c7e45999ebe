#!/usr/bin/env python3
"""The out-of-core TEDDY prune (`teddy prune --out-of-core`, lib/teddy/prune/streaming_prune.h)
beside the in-memory one on the same generated graph, in alternating rounds: wall seconds
(median), peak RSS of each process (ru_maxrss of the child), and whether every level's edge file
is byte for byte the same. Prints one JSON document.

  .venv/bin/python bench/teddy_prune_out_of_core.py --edges 10000000 --rounds 3 [--levels 0.3 0.7]
  .venv/bin/python bench/teddy_prune_out_of_core.py --graph DIR_OR_EDGE_LIST   # your own graph

Generates an R-MAT graph (`graph generate powerlaw`, no duplicate pairs) unless --graph is given.
"""
import argparse
import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peak_rss(cmd):
    """Peak RSS of one run of cmd via GNU time (-f %M, KiB), and its wall seconds."""
    start = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    return seconds, int(p.stderr.strip().splitlines()[-1]) * 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--edges", type=int, default=10_000_000)
    ap.add_argument("--graph", help="prune this graph instead of generating one")
    ap.add_argument("--levels", type=float, nargs="+", default=[0.3, 0.7])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/apps/sparsetrain/sparsetrain"))
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    if not os.path.exists("/usr/bin/time"):
        sys.exit("needs GNU time at /usr/bin/time (apt-get install time) for the peak RSS")
    work = args.workdir or tempfile.mkdtemp(prefix="st-ooc-bench-")
    graph = args.graph
    if graph is None:
        graph = os.path.join(work, "graph")
        if not os.path.exists(graph):
            subprocess.run([args.binary, "graph", "generate", "powerlaw", "--edges", str(args.edges),
                            "--out-graph", graph, "--progress", "never"], check=True,
                           stdout=subprocess.DEVNULL)
    levels = [x for s in args.levels for x in ("--graph-sparsity", str(s))]
    base = [args.binary, "teddy", "prune", "--graph", graph, *levels, "--overwrite",
            "--progress", "never", "--log-level", "warn"]
    results = {"in_memory": [], "out_of_core": []}
    for r in range(args.rounds):
        order = ["in_memory", "out_of_core"] if r % 2 == 0 else ["out_of_core", "in_memory"]
        for mode in order:
            out = os.path.join(work, mode)
            cmd = base + ["--out-graph", out] + (["--out-of-core"] if mode == "out_of_core" else [])
            seconds, rss = peak_rss(cmd)
            results[mode].append({"seconds": seconds, "peak_rss_bytes": rss})
    same = True
    for i in range(len(args.levels)):
        sub = f"level-{i + 1:02d}" if len(args.levels) > 1 else ""
        a = os.path.join(work, "in_memory", sub, "raw", "edge.csv.gz")
        b = os.path.join(work, "out_of_core", sub, "raw", "edge.csv.gz")
        same &= filecmp.cmp(a, b, shallow=False)
    edge_file = (os.path.join(graph, "raw", "edge.csv.gz") if os.path.isdir(graph) else graph)
    summary = {
        "graph": graph if args.graph else f"powerlaw --edges {args.edges}",
        "edge_file_bytes": os.path.getsize(edge_file),
        "levels": args.levels, "rounds": args.rounds, "cpus": os.cpu_count(),
        "edge_files_identical": same,
    }
    for mode, runs in results.items():
        summary[mode] = {"median_seconds": statistics.median(x["seconds"] for x in runs),
                         "max_peak_rss_bytes": max(x["peak_rss_bytes"] for x in runs),
                         "runs": runs}
    summary["out_of_core_over_in_memory_seconds"] = (
        summary["out_of_core"]["median_seconds"] / summary["in_memory"]["median_seconds"])
    print(json.dumps(summary, indent=1))
    if args.workdir is None:
        shutil.rmtree(work)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
