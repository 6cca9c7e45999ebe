#!/usr/bin/env python3
"""Kill-soak: an offloaded fine-tune killed at random points always resumes to the same weights.

First one uninterrupted run exports its weights and gives the run's wall time. Then, N times:
  1. A fresh run in new store directories.
  2. A signal at a random moment within that wall time: SIGKILL and SIGTERM alternate.
     - SIGTERM must end the run with exit 130 and a run record whose status is "interrupted" and
       whose metrics list the losses of the steps it finished.
     - A kill can land before the store exists, before its first commit, mid-step, mid-update or
       after the end.
  3. The run continues with --resume. When nothing was committed, it is run again without
     --resume, as the error's hint says.
  4. Its export must equal the uninterrupted run's, byte for byte.
Prints one JSON document and exits 1 when any kill broke the rule.

  .venv/bin/python scripts/kill_soak.py --binary build/apps/sparsetrain/sparsetrain --kills 100
  (the test command runs --kills 3)
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def finetune_args(args, ssd, extra):
    return [args.binary, "fuyou", "finetune", "--model", "tiny", "--steps", str(args.steps),
            "--micro-batch", "4", "--seq", "32", "--eval-every", "0", "--eval-batches", "1",
            "--seed", "5", "--progress", "never", "--device", "cpu", "--grad-clip", "1",
            "--accum", "2", "--cpu-mem", "1200KiB", "--ssd", ssd, "--log-level", "warn"] + extra


def fresh_store(root):
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("a", "b"):
        os.makedirs(os.path.join(root, sub))
    return os.path.join(root, "a") + "," + os.path.join(root, "b")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def committed_version(manifest):
    try:
        with open(manifest) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return -1


def one_kill(args, work, index, rng, wall_s, first_commit_s, reference):
    root = os.path.join(work, f"kill{index}")
    ssd = fresh_store(root)
    sig = signal.SIGKILL if index % 2 == 0 else signal.SIGTERM
    # Three kills in four land while it trains (after the initial commit), one in its start-up.
    if rng.random() < 0.75:
        delay = rng.uniform(first_commit_s, wall_s)
    else:
        delay = rng.uniform(0, first_commit_s)
    record = os.path.join(root, "killed.json")
    proc = subprocess.Popen(finetune_args(args, ssd, ["--out", record]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    finished_first = proc.poll() is not None
    if not finished_first:
        proc.send_signal(sig)
    _, err = proc.communicate()
    result = {"kill": index, "signal": sig.name, "delay_s": round(delay, 3),
              "finished_before_the_signal": finished_first, "exit_code": proc.returncode,
              "problems": []}
    problems = result["problems"]
    if not finished_first and sig == signal.SIGTERM:
        # The handler may also have lost the race to a natural exit (0); otherwise 130. Before
        # main installs it (the dynamic loader, static initialisers: nothing started, no store
        # file yet) the signal's default action ends the process, with nothing to flush.
        untouched = not any(os.listdir(os.path.join(root, d)) for d in ("a", "b"))
        if proc.returncode == -signal.SIGTERM and untouched:
            result["before_main"] = True
        elif proc.returncode not in (130, 0):
            problems.append(f"SIGTERM exit {proc.returncode}, want 130: {err.strip()[-300:]}")
        if proc.returncode == 130:
            try:
                rec = json.load(open(record))
                if rec.get("status") != "interrupted":
                    problems.append(f"record status {rec.get('status')!r}, want 'interrupted'")
                losses = rec.get("metrics", {}).get("losses")
                if not isinstance(losses, list):
                    problems.append("the record has no metrics.losses list")
                else:
                    result["steps_in_record"] = len(losses)
            except (OSError, ValueError) as e:
                problems.append(f"no readable record after SIGTERM: {e}")
    export = os.path.join(root, "resumed.safetensors")
    resumed = subprocess.run(finetune_args(args, ssd, ["--resume", "--export", export]),
                             capture_output=True, text=True)
    result["resume_exit_code"] = resumed.returncode
    if resumed.returncode == 2 and "nothing to resume" in resumed.stderr:
        result["nothing_committed"] = True
        ssd = fresh_store(root)
        resumed = subprocess.run(finetune_args(args, ssd, ["--export", export]),
                                 capture_output=True, text=True)
        result["rerun_exit_code"] = resumed.returncode
    if resumed.returncode != 0:
        problems.append(f"resume exit {resumed.returncode}: {resumed.stderr.strip()[-300:]}")
    else:
        result["identical"] = read(export) == reference
        if not result["identical"]:
            problems.append("resumed weights differ from the uninterrupted run's")
    shutil.rmtree(root, ignore_errors=True)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default="build/apps/sparsetrain/sparsetrain")
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", help="scratch directory (default: a temporary one)")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="st-kill-soak-")
    os.makedirs(work, exist_ok=True)
    rng = random.Random(args.seed)
    try:
        ssd = fresh_store(os.path.join(work, "whole"))
        ref_path = os.path.join(work, "whole.safetensors")
        start = time.monotonic()
        proc = subprocess.Popen(finetune_args(args, ssd, ["--export", ref_path]),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        manifest = os.path.join(work, "whole", "a", "sparsetrain-store.json")
        first_commit_s = None  # the initial weights' commit (version 1): training starts
        while proc.poll() is None:
            if first_commit_s is None and committed_version(manifest) >= 1:
                first_commit_s = time.monotonic() - start
            time.sleep(0.002)
        whole = subprocess.CompletedProcess(proc.args, proc.returncode, "", proc.stderr.read())
        wall_s = time.monotonic() - start
        if first_commit_s is None:
            first_commit_s = 0.0
        if whole.returncode != 0:
            sys.exit(f"kill_soak: the uninterrupted run failed: {whole.stderr.strip()}")
        reference = read(ref_path)
        kills = [one_kill(args, work, i, rng, wall_s, first_commit_s, reference)
                 for i in range(args.kills)]
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    bad = [k for k in kills if k["problems"]]
    summary = {
        "kills": len(kills),
        "sigkill": sum(k["signal"] == "SIGKILL" for k in kills),
        "sigterm": sum(k["signal"] == "SIGTERM" for k in kills),
        "finished_before_the_signal": sum(k["finished_before_the_signal"] for k in kills),
        "nothing_committed": sum(bool(k.get("nothing_committed")) for k in kills),
        "sigterm_records_with_steps": sum("steps_in_record" in k for k in kills),
        "identical": sum(bool(k.get("identical")) for k in kills),
        "failed": len(bad),
        "sigterm_before_main": sum(bool(k.get("before_main")) for k in kills),
        "uninterrupted_wall_s": round(wall_s, 3),
        "first_commit_s": round(first_commit_s, 3),
    }
    print(json.dumps({"bench": "kill_soak", "steps": args.steps, "seed": args.seed,
                      "summary": summary, "kills": kills}, indent=1))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
