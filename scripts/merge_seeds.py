#!/usr/bin/env python3
"""Merges `sparsetrain teddy run` records of the same dataset, model, method and levels that ran
one seed each (`--seed S --seeds 1`, e.g. as parallel processes) into one summary: per level and
for dense, test/valid accuracy mean ± population std over the seeds (as `--seeds N` reports them:
seed index i of a --seeds N run is seed i), achieved sparsities and ticket seconds. Prints JSON on
stdout. Not a plotter and not a runner. Standard library only.

    python3 scripts/merge_seeds.py cora-gcn-ugs-seed*.json > cora-gcn-ugs-5seeds.json
"""
import json
import statistics
import sys


def stats(values):
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values), "values": values}


def main(paths):
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    recs = []
    for p in paths:
        with open(p) as f:
            recs.append(json.load(f))
    first = recs[0]["metrics"]
    for r in recs:
        m = r["metrics"]
        if (m["dataset"], m["model"], m["method"], m["seeds"]) != (
                first["dataset"], first["model"], first["method"], 1):
            print(f"merge_seeds.py: records differ in dataset/model/method or ran several seeds",
                  file=sys.stderr)
            return 2
    seeds = [r["run"]["argv"] for r in recs]
    out = {"dataset": first["dataset"], "model": first["model"], "method": first["method"],
           "seeds": len(recs), "inputs": paths, "argv": seeds,
           "dense": {k: stats([r["metrics"]["dense"][k]["mean"] for r in recs])
                     for k in ("test_accuracy", "valid_accuracy")},
           "levels": []}
    for i, lv in enumerate(first["levels"]):
        per = [r["metrics"]["levels"][i] for r in recs]
        out["levels"].append({
            "paper_level": lv.get("paper_level"),
            "graph_sparsity": statistics.fmean(p["graph_sparsity"] for p in per),
            "weight_sparsity": statistics.fmean(p["weight_sparsity"] for p in per),
            "macs_vs_dense": statistics.fmean(p["macs_vs_dense"] for p in per),
            "test_accuracy": stats([p["test_accuracy"]["mean"] for p in per]),
            "valid_accuracy": stats([p["valid_accuracy"]["mean"] for p in per]),
            "ticket_seconds": stats([p["ticket_seconds"]["mean"] for p in per]),
        })
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
