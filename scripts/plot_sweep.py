#!/usr/bin/env python3
"""Plots a directory of `sparsetrain teddy run` records (scripts/sweep_teddy.sh): for each
dataset × model, test accuracy (mean ± std over seeds) against achieved graph sparsity and against
achieved weight sparsity, one line per method, the dense accuracy as a horizontal line. Writes
DATASET-MODEL.png (and .svg) next to the records, or to --out. Not a table tool: it only plots.

    .venv/bin/python scripts/plot_sweep.py RESULTS_DIR [--out DIR]
"""
import argparse
import collections
import json
import os
import statistics
import sys


def load(directory):
    """{(dataset, model): {method: [(graph_s, weight_s, mean, std)], 'dense': [means]}}

    Records of one method at the same target level (e.g. one seed each, run as parallel
    processes) are pooled: mean and population std over all their seeds' accuracies."""
    pooled = collections.defaultdict(lambda: collections.defaultdict(list))
    dense = collections.defaultdict(list)
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(directory, name)) as f:
            rec = json.load(f)
        if rec.get("status") != "ok":
            continue
        m = rec["metrics"]
        key = (os.path.basename(m["dataset"].split(" ")[0].rstrip("/")), m["model"])
        dense[key].extend(m["dense"]["test_accuracy"]["values"])
        for lv in m["levels"]:
            level = (m["method"], round(lv["target_graph_sparsity"], 6),
                     round(lv["target_weight_sparsity"], 6))
            pooled[key][level].append(
                (lv["graph_sparsity"], lv["weight_sparsity"], lv["test_accuracy"]["values"]))
    groups = collections.defaultdict(lambda: collections.defaultdict(list))
    for key, levels in pooled.items():
        groups[key]["dense"] = dense[key]
        for (method, _, _), runs in levels.items():
            acc = [a for _, _, values in runs for a in values]
            groups[key][method].append((statistics.fmean(r[0] for r in runs),
                                        statistics.fmean(r[1] for r in runs),
                                        statistics.fmean(acc), statistics.pstdev(acc)))
    for key in dense:
        groups[key]["dense"] = dense[key]
    return groups


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="directory of run records (JSON)")
    ap.add_argument("--out", help="output directory (default: the results directory)")
    args = ap.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_sweep.py: error: matplotlib is missing\n  hint: run scripts/setup.sh "
              "(it installs scripts/requirements.txt into .venv)", file=sys.stderr)
        return 3
    if not os.path.isdir(args.results):
        print(f"plot_sweep.py: error: '{args.results}' is not a directory\n"
              "  hint: pass the OUT_DIR of scripts/sweep_teddy.sh", file=sys.stderr)
        return 2
    out = args.out or args.results
    os.makedirs(out, exist_ok=True)
    groups = load(args.results)
    if not groups:
        print(f"plot_sweep.py: error: no ok run records in '{args.results}'", file=sys.stderr)
        return 2
    for (dataset, model), methods in sorted(groups.items()):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        dense = sum(methods["dense"]) / len(methods["dense"])
        for ax, col, label in ((axes[0], 0, "graph sparsity"), (axes[1], 1, "weight sparsity")):
            for method, points in sorted(methods.items()):
                if method == "dense":
                    continue
                pts = sorted(set(points))
                ax.errorbar([100 * p[col] for p in pts], [100 * p[2] for p in pts],
                            yerr=[100 * p[3] for p in pts], marker="o", capsize=3, label=method)
            ax.axhline(100 * dense, color="k", linestyle="--", label=f"dense {100 * dense:.1f}")
            ax.set_xlabel(f"{label} (%)")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("test accuracy (%)")
        axes[0].legend()
        fig.suptitle(f"{dataset} — {model.upper()}")
        fig.tight_layout()
        for ext in ("png", "svg"):
            path = os.path.join(out, f"{dataset}-{model}.{ext}")
            fig.savefig(path, dpi=120)
        plt.close(fig)
        print(os.path.join(out, f"{dataset}-{model}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
