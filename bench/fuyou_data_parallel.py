#!/usr/bin/env python3
"""Data-parallel fuyou finetune (lib/fuyou/dist) beside one process, the same global batch: one
process with --accum R against R ranks (--nproc R) of --accum 1, each rank with its own store,
states in the store (a small --cpu-mem forces them there), in alternating rounds. Prints one JSON
document: median step seconds and tokens/s of each, the store bytes read and written per step by
each rank (from the run records, counted exactly by the store), whether the losses match, and
the ranks' time in gradient sums (phase rank_sum).

  .venv/bin/python bench/fuyou_data_parallel.py --model small --ranks 2 --steps 6 --rounds 3

Today every rank holds the full states (replicated data parallel): its store bytes per step are
one process's, not 1/R of them — the partitioned states of the issue are what would halve them.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(binary, args, out):
    p = subprocess.run([binary] + args + ["--out", out, "--progress", "never"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-800:]}")
    with open(out) as f:
        return json.load(f)


def per_step(record):
    m = record["run"]["offload_measured"]
    steps = max(1, m["steps"])
    return {"step_seconds": m["step_seconds"],
            "ssd_read_bytes_per_step": m["ssd_read_bytes"] / steps,
            "ssd_write_bytes_per_step": m["ssd_write_bytes"] / steps,
            "tokens_per_s": record["metrics"]["tokens_per_step"] / m["step_seconds"],
            "states": record["metrics"]["offload"]["states"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="small")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--cpu-mem", default="6MiB")  # below the states (10 MiB): they go to the store
    ap.add_argument("--state-piece", default="1MiB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/apps/sparsetrain/sparsetrain"))
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="st-dp-bench-")
    base = ["fuyou", "finetune", "--model", args.model, "--steps", str(args.steps),
            "--micro-batch", str(args.micro_batch), "--seq", str(args.seq), "--eval-every", "0",
            "--eval-batches", "1", "--cpu-mem", args.cpu_mem, "--state-piece", args.state_piece,
            "--grad-clip", "1.0"]
    rows = {"one": [], "ranks": []}
    losses_equal = True
    for i in range(args.rounds):
        for kind in (["one", "ranks"] if i % 2 == 0 else ["ranks", "one"]):
            ssd = os.path.join(work, f"{kind}{i}")
            os.makedirs(ssd)
            extra = (["--accum", str(args.ranks)] if kind == "one"
                     else ["--nproc", str(args.ranks)])
            rec = run(args.binary, base + ["--ssd", ssd] + extra, os.path.join(work, f"{kind}{i}.json"))
            row = per_step(rec)
            if kind == "ranks":  # each rank's own record: NAME.rank<r>.json beside rank 0's
                per_rank = [row]
                for r in range(1, args.ranks):
                    with open(os.path.join(work, f"{kind}{i}.rank{r}.json")) as f:
                        per_rank.append(per_step(json.load(f)))
                row["per_rank_ssd_read_bytes_per_step"] = [
                    x["ssd_read_bytes_per_step"] for x in per_rank]
                row["per_rank_ssd_write_bytes_per_step"] = [
                    x["ssd_write_bytes_per_step"] for x in per_rank]
            rows[kind].append((row, rec["metrics"]["losses"]))
            shutil.rmtree(ssd)
    losses_equal = all(a[1] == b[1] for a, b in zip(rows["one"], rows["ranks"]))

    def summary(kind):
        r = [x[0] for x in rows[kind]]
        return {"step_seconds_median": statistics.median(x["step_seconds"] for x in r),
                "tokens_per_s_median": statistics.median(x["tokens_per_s"] for x in r),
                "ssd_read_bytes_per_step_per_process": r[0]["ssd_read_bytes_per_step"],
                "ssd_write_bytes_per_step_per_process": r[0]["ssd_write_bytes_per_step"],
                "runs": r}

    one, many = summary("one"), summary("ranks")
    print(json.dumps({
        "bench": "fuyou_data_parallel",
        "model": args.model, "ranks": args.ranks, "steps": args.steps,
        "micro_batch_per_rank": args.micro_batch, "seq": args.seq, "cpu_mem": args.cpu_mem,
        "machine_cores": os.cpu_count(),
        "one_process_accum": one, "data_parallel": many,
        "step_time_ratio_ranks_over_one": many["step_seconds_median"] / one["step_seconds_median"],
        "losses_bit_equal": losses_equal if args.ranks == 2 else None,
    }, indent=2))


if __name__ == "__main__":
    main()
