#!/usr/bin/env python3
"""Activation policies side by side, in one run: step time measured against the cost model's.

Runs `BINARY fuyou finetune --ssd DIRS --activations POLICY <args>` for every policy, alternating
the policies within each round (the machine's load drifts, so none gets the quiet minutes), each
in a fresh store. Prints JSON: every sample; per policy the median measured step, the predicted
step (the plan's bound) and predicted / measured, the binding term, what the plan kept (blocks
keeping, bytes per tier), the recompute FLOPs per step predicted and counted, and median step /
the first policy's median step; and whether every run's losses are identical (they must be: the
policy changes no bit).

  bench/fuyou_activations_bench.py --binary build/apps/sparsetrain/sparsetrain \\
      --ssd /tmp/acts/a --rounds 3 --policies 'recompute;auto;keep-all' -- \\
      --model gpt3-350m --cpu-mem 8GiB --steps 3 --micro-batch 1 --seq 256 --device cpu \\
      --eval-every 0 --eval-batches 1

A policy may carry its own flags after a '+': 'keep-all+--activations-in store'.
"""
import argparse
import json
import os
import platform
import shlex
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab_bench import run_finetune_record  # noqa: E402  (the store set-up, run and clean-up)


def run_policy(binary, ssd_dirs, policy, extra):
    name, _, flags = policy.partition("+")
    record = run_finetune_record(binary, ssd_dirs, ["--activations", name] + shlex.split(flags) +
                                 extra, tool="fuyou_activations_bench")
    measured = record["run"]["offload_measured"]
    per_step = measured["per_step"]
    acts = record["metrics"]["offload"]["activations"]
    bound = record["run"]["offload_bound"]
    return {"step_seconds": measured["step_seconds"],
            "compute_flops_per_s": bound["rates"]["compute_flops_per_s"],
            "predicted_seconds": record["run"]["offload_bound"]["bound_seconds"],
            "binding": record["run"]["offload_bound"]["binding"],
            "terms": per_step["terms"],
            "recompute_flops": per_step["recompute_flops"],
            "activation_bytes": per_step["activation_bytes"],
            "kept": [b["kept"] + "@" + b["tier"] for b in acts["blocks"]],
            "blocks_keeping": acts["blocks_keeping"],
            "kept_bytes": {"compute": acts["compute_bytes"], "cpu": acts["cpu_bytes"],
                           "store": acts["store_bytes"]},
            "peak_rss_bytes": record["run"]["peak_rss_bytes"],
            "losses": record["metrics"]["losses"],
            "commit": record["build"].get("git_commit")}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--ssd", required=True, help="store directories (emptied per run)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--policies", default="recompute;auto",
                        help="';'-separated --activations values (lists have commas), each "
                             "optionally '+FLAGS'")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then finetune's arguments")
    a = parser.parse_args()
    extra = a.args[1:] if a.args[:1] == ["--"] else a.args
    policies = [p for p in a.policies.split(";") if p]
    ssd_dirs = a.ssd.split(",")
    samples = {p: [] for p in policies}
    for _ in range(a.rounds):
        for p in policies:
            samples[p].append(run_policy(a.binary, ssd_dirs, p, extra))
    first = statistics.median(s["step_seconds"] for s in samples[policies[0]])
    # Each run probes the compute rate for its own plan; the machine's drift moves that probe as
    # much as the policies differ. The pooled prediction takes the median probe over every run
    # and rescales each run's compute terms by it (compute, and the compute part of
    # compute_then_update), the other terms as planned.
    pooled_rate = statistics.median(s["compute_flops_per_s"] for p in policies for s in samples[p])

    def pooled(s):
        scale = s["compute_flops_per_s"] / pooled_rate
        terms = {k: v["predicted"] for k, v in s["terms"].items() if "predicted" in v}
        compute = terms.get("compute", 0)
        if "compute_then_update" in terms:
            terms["compute_then_update"] += compute * (scale - 1)
        terms["compute"] = compute * scale
        return max(terms.values())
    summary = {}
    for p in policies:
        runs = samples[p]
        median = statistics.median(s["step_seconds"] for s in runs)
        predicted = statistics.median(s["predicted_seconds"] for s in runs)
        predicted_pooled = statistics.median(pooled(s) for s in runs)
        summary[p] = {
            "median_step_seconds": median,
            "predicted_step_seconds": predicted,
            "predicted_over_measured": predicted / median,
            "pooled_predicted_step_seconds": predicted_pooled,
            "pooled_predicted_over_measured": predicted_pooled / median,
            "binding": runs[0]["binding"],
            "blocks_keeping": runs[0]["blocks_keeping"],
            "kept": runs[0]["kept"],
            "kept_bytes": runs[0]["kept_bytes"],
            "recompute_flops_per_step": runs[0]["recompute_flops"],
            "median_over_first": median / first,
            "first_faster_by": first / median - 1,
        }
    losses = [s["losses"] for p in policies for s in samples[p]]
    print(json.dumps({
        "bench": "fuyou_activations", "host": platform.node(), "cpus": os.cpu_count(),
        "binary": a.binary, "args": extra, "rounds": a.rounds, "policies": policies,
        "commit": samples[policies[0]][0]["commit"],
        "pooled_compute_flops_per_s": pooled_rate,
        "losses_identical": all(l == losses[0] for l in losses),
        "summary": summary,
        "samples": {p: [{k: v for k, v in s.items() if k != "losses"} for s in samples[p]]
                    for p in policies},
    }, indent=1))


if __name__ == "__main__":
    main()
