#!/usr/bin/env python3
"""What the planner says a large fine-tune needs on hardware that is not here (issue 22): for each
model, SSD count and store mode, `sparsetrain fuyou finetune --dry-run --assume-ssd ...` at the
given GPU and CPU budgets, one JSON line each: the granularity, pieces per block, the largest
micro-batch that fits, the predicted step time (the lower bound) at B = 1 and at that largest B with
their binding terms, tokens/s at the largest B, and the SSD bytes (total, per parameter). Pure
planning: nothing is measured but what a dry run measures (without a GPU, the CUDA plans use the
H200 machine's reference rates, replaced here by --assume-pcie / --assume-tflops when given).

  bench/fuyou_plan_at_scale.py [--bin build/apps/sparsetrain/sparsetrain] [--models gpt3-175b]
      [--ssds 1,4,12] [--ssd-size 8TB] [--ssd-rate 2GB/s] [--gpu-mem 24GiB] [--cpu-mem 64GiB]
      [--seq 2048] [--assume-pcie 25GB/s] [--assume-tflops 150]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def plan(args, model, ssds, slots, micro_batch):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "plan.json")
        cmd = [args.bin, "fuyou", "finetune", "--model", model, "--device", "cuda",
               "--gpu-mem", args.gpu_mem, "--cpu-mem", args.cpu_mem, "--seq", str(args.seq),
               "--micro-batch", str(micro_batch), "--grad-clip", str(args.grad_clip),
               "--assume-ssd", f"{ssds}x{args.ssd_size}@{args.ssd_rate}",
               "--store-slots", str(slots), "--progress", "never", "--dry-run", "--out", out]
        if args.assume_pcie:
            cmd += ["--assume-pcie", args.assume_pcie]
        if args.assume_tflops:
            cmd += ["--assume-tflops", str(args.assume_tflops)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            return {"refused": done.stderr.strip().splitlines()[-1] if done.stderr else "?"}
        with open(out) as f:
            return json.load(f)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    p.add_argument("--bin", default=os.path.join(here, "..", "build", "apps", "sparsetrain",
                                                 "sparsetrain"))
    p.add_argument("--models", default="gpt3-175b")
    p.add_argument("--ssds", default="1,4,12")
    p.add_argument("--ssd-size", default="8TB")
    p.add_argument("--ssd-rate", default="2GB/s")
    p.add_argument("--gpu-mem", default="24GiB")
    p.add_argument("--cpu-mem", default="64GiB")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--assume-pcie", default="")
    p.add_argument("--assume-tflops", type=float, default=0)
    args = p.parse_args()
    commit = subprocess.run(["git", "-C", here, "rev-parse", "--short=12", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    for model in args.models.split(","):
        for ssds in (int(n) for n in args.ssds.split(",")):
            for slots in (2, 1):
                first = plan(args, model, ssds, slots, 1)
                row = {"model": model, "ssds": ssds, "ssd_size": args.ssd_size,
                       "ssd_rate_each": args.ssd_rate, "store_slots": slots,
                       "gpu_mem": args.gpu_mem, "cpu_mem": args.cpu_mem, "seq": args.seq,
                       "grad_clip": args.grad_clip, "accum": 1, "commit": commit}
                if "refused" in first:
                    row["refused"] = first["refused"]
                    print(json.dumps(row), flush=True)
                    continue
                off = first["metrics"]["offload"]
                largest = off["largest_micro_batch"]
                row.update({"granularity": off["granularity"],
                            "pieces_per_block": off["pieces_per_block"],
                            "ssd_bytes": off["ssd_bytes"],
                            "ssd_bytes_per_param": round(off["ssd_bytes_per_param"], 3),
                            "largest_micro_batch": largest,
                            "b1_bound_s": first["run"]["offload_bound"]["bound_seconds"],
                            "b1_binding": first["run"]["offload_bound"]["binding"],
                            "rates": first["run"]["offload_bound"]["rates"]})
                if largest > 1:
                    best = plan(args, model, ssds, slots, largest)
                    bound = best["run"]["offload_bound"]
                    row.update({"largest_b_granularity": best["metrics"]["offload"]["granularity"],
                                "largest_b_bound_s": bound["bound_seconds"],
                                "largest_b_binding": bound["binding"]})
                    seconds = bound["bound_seconds"]
                else:
                    seconds = row["b1_bound_s"]
                row["tokens_per_s_at_largest_b"] = max(largest, 1) * args.seq / seconds
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
