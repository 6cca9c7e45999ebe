#!/usr/bin/env python3
"""Offloaded training with the optimizer states in pieces of different sizes, side by side.

Runs `sparsetrain fuyou finetune --ssd ...` once per --state-piece value per round, alternating
within each round (the machine's load drifts), each in a fresh store, and prints JSON: per piece
size the median step time, measured / bound, the optimizer thread's phases per step, peak RSS, and
whether every run's losses are identical (they must be: AdamW is elementwise). A piece size larger
than every unit (e.g. 1TiB) stages whole units, the layout before pieces.

  bench/fuyou_state_piece_bench.py --binary build/apps/sparsetrain/sparsetrain \\
      --ssd /tmp/fpb/a,/tmp/fpb/b --pieces 1TiB,64MiB --rounds 2 -- \\
      --model custom:L=24,C=1792,H=16,V=256,T=128 --cpu-mem 6GiB --gpu-mem 2GiB --grad-clip 0 \\
      --steps 3 --micro-batch 1 --seq 128 --device cpu --eval-every 0 --eval-batches 1
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile


def run_once(binary, ssd_dirs, piece, extra):
    for d in ssd_dirs:
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [binary, "fuyou", "finetune", "--ssd", ",".join(ssd_dirs), "--state-piece", piece,
           "--progress", "never", "--out", out] + extra
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"fuyou_state_piece_bench: {' '.join(cmd)} exited {proc.returncode}: "
                 f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
    with open(out) as f:
        record = json.load(f)
    os.unlink(out)
    measured = record["run"]["offload_measured"]
    steps = max(1, measured["steps"])
    return {
        "step_seconds": measured["step_seconds"],
        "measured_over_bound": measured["measured_over_bound"],
        "binding": measured["binding"],
        "optimizer_phase_seconds_per_step": {
            k: v / steps for k, v in measured["optimizer_thread"].items()},
        "peak_rss_bytes": record["run"]["peak_rss_bytes"],
        "cpu_bytes_planned": record["metrics"]["offload"]["cpu_bytes"],
        "losses": record["metrics"]["losses"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--ssd", required=True, help="comma-separated store directories (wiped)")
    parser.add_argument("--pieces", default="1TiB,64MiB", help="comma-separated --state-piece values")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="-- then finetune flags")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    pieces = args.pieces.split(",")
    ssd_dirs = args.ssd.split(",")
    runs = {p: [] for p in pieces}
    for _ in range(args.rounds):
        for p in pieces:
            runs[p].append(run_once(args.binary, ssd_dirs, p, extra))
    for d in ssd_dirs:
        shutil.rmtree(d, ignore_errors=True)
    all_losses = [r["losses"] for p in pieces for r in runs[p]]
    result = {"flags": extra, "rounds": args.rounds,
              "same_losses": all(l == all_losses[0] for l in all_losses), "by_piece": {}}
    for p in pieces:
        rs = runs[p]
        phases = sorted({k for r in rs for k in r["optimizer_phase_seconds_per_step"]})
        result["by_piece"][p] = {
            "step_seconds": [r["step_seconds"] for r in rs],
            "median_step_seconds": statistics.median(r["step_seconds"] for r in rs),
            "median_measured_over_bound": statistics.median(r["measured_over_bound"] for r in rs),
            "binding": rs[-1]["binding"],
            "median_optimizer_phase_seconds_per_step": {
                k: statistics.median(r["optimizer_phase_seconds_per_step"].get(k, 0) for r in rs)
                for k in phases},
            "cpu_bytes_planned": rs[-1]["cpu_bytes_planned"],
            "median_peak_rss_bytes": statistics.median(r["peak_rss_bytes"] for r in rs),
        }
    base = result["by_piece"][pieces[0]]["median_step_seconds"]
    result["step_time_ratio_to_first"] = {
        p: result["by_piece"][p]["median_step_seconds"] / base for p in pieces}
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
