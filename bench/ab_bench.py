#!/usr/bin/env python3
"""Two builds (or two flag sets) side by side, in one run: is B slower than A?

Alternates A and B within each round (the machine's load drifts, so neither gets the quiet
minutes), and prints JSON with every sample, the medians per build, B/A of the medians and per
round. Two modes:
  finetune  runs `BINARY fuyou finetune --ssd DIRS --out X <args>` (offloaded) in a fresh store
            each time; the sample is the record's run.offload_measured.step_seconds, and
            losses_identical says whether every run's losses are the same (they must be).
  adamw     runs `ADAMW_BENCH <args>`; the samples are each method's median_s.

  bench/ab_bench.py finetune --a OLD/sparsetrain --b NEW/sparsetrain --ssd /tmp/ab/a,/tmp/ab/b \\
      --rounds 3 -- --model custom:L=24,C=1792,H=16,V=256,T=128 --cpu-mem 1GiB --gpu-mem 2GiB \\
      --steps 3 --micro-batch 1 --seq 128 --device cpu --eval-every 0 --eval-batches 1
  bench/ab_bench.py finetune --a build/.../sparsetrain --b build/.../sparsetrain --a-args \
      '--stream block' --b-args '--stream piece' --ssd /tmp/ab/a --rounds 3 -- <args>
  bench/ab_bench.py adamw --a OLD/adamw_bench --b NEW/adamw_bench --rounds 3 -- --skip-torch-optim
"""
import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile


def run_finetune_record(binary, ssd_dirs, extra, tool="ab_bench"):
    """One offloaded `fuyou finetune` in fresh store directories; returns its run record."""
    for d in ssd_dirs:
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [binary, "fuyou", "finetune", "--ssd", ",".join(ssd_dirs), "--progress", "never",
           "--log-level", "warn", "--out", out] + extra
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        sys.exit(f"{tool}: {' '.join(cmd)} exited {proc.returncode}: {tail}")
    with open(out) as f:
        record = json.load(f)
    os.unlink(out)
    for d in ssd_dirs:
        shutil.rmtree(d, ignore_errors=True)
    return record


def run_finetune(binary, ssd_dirs, extra):
    record = run_finetune_record(binary, ssd_dirs, extra)
    measured = record["run"]["offload_measured"]
    return {"step_seconds": measured["step_seconds"],
            "bound_seconds": record["run"]["offload_bound"]["bound_seconds"],
            "binding": record["run"]["offload_bound"]["binding"],
            "granularity": record["metrics"]["offload"].get("granularity"),
            "peak_rss_bytes": record["run"]["peak_rss_bytes"],
            "losses": record["metrics"]["losses"], "commit": record["build"].get("git_commit")}


def run_adamw(binary, extra):
    proc = subprocess.run([binary] + extra, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"ab_bench: {binary} exited {proc.returncode}: {proc.stderr.strip()[-200:]}")
    record = json.loads(proc.stdout)
    return {"methods": {name: m["median_s"] for name, m in record["methods"].items()},
            "commit": record.get("commit")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["finetune", "adamw"])
    parser.add_argument("--a", required=True, help="the baseline binary")
    parser.add_argument("--b", required=True, help="the binary under test")
    parser.add_argument("--ssd", help="finetune: comma-separated store directories (emptied)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--a-args", default="",
                        help="arguments for A only (shell words), e.g. '--stream block'")
    parser.add_argument("--b-args", default="", help="arguments for B only")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    opts = parser.parse_args(argv[:cut])
    extra = argv[cut + 1:]  # the command's own arguments, after --
    for b in (opts.a, opts.b):
        if not os.access(b, os.X_OK):
            sys.exit(f"ab_bench: '{b}' is not an executable (hint: build it first)")
    if opts.mode == "finetune" and not opts.ssd:
        sys.exit("ab_bench: finetune needs --ssd DIR[,DIR] (hint: directories it may empty)")
    runs = {"a": [], "b": []}
    side_args = {"a": shlex.split(opts.a_args), "b": shlex.split(opts.b_args)}
    for _ in range(opts.rounds):
        for which, binary in (("a", opts.a), ("b", opts.b)):
            args = extra + side_args[which]
            runs[which].append(run_finetune(binary, opts.ssd.split(","), args)
                               if opts.mode == "finetune" else run_adamw(binary, args))
    out = {"bench": "ab_bench", "mode": opts.mode, "a": opts.a, "b": opts.b,
           "args": extra, "a_args": side_args["a"], "b_args": side_args["b"],
           "rounds": opts.rounds, "runs": runs}
    if opts.mode == "finetune":
        med = {k: statistics.median(r["step_seconds"] for r in v) for k, v in runs.items()}
        out["median_step_seconds"] = med
        out["b_over_a"] = med["b"] / med["a"]
        out["b_over_a_per_round"] = [b["step_seconds"] / a["step_seconds"]
                                     for a, b in zip(runs["a"], runs["b"])]
        out["losses_identical"] = len({json.dumps(r["losses"]) for v in runs.values()
                                       for r in v}) == 1
    else:
        names = runs["a"][0]["methods"].keys()
        out["median_s"] = {k: {n: statistics.median(r["methods"][n] for r in v) for n in names}
                           for k, v in runs.items()}
        out["b_over_a"] = {n: out["median_s"]["b"][n] / out["median_s"]["a"][n] for n in names}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
