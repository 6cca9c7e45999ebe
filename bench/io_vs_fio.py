#!/usr/bin/env python3
"""Side-by-side: our I/O engine against fio (io_uring engine, O_DIRECT, fixed buffers, registered
files; same file size, block size and queue depth), and striping over 2 directories on the same disk
against 1. Prints one JSON document: commit, hardware, every parameter, raw samples, medians and
ratios. Never fails on slow numbers (a benchmark, not a test).

Per repeat (tool order alternates): fio writes then reads its file; `sparsetrain fuyou bench-io`
writes then reads its own; then, pairing on the very same bytes, build/bench/io_engine_bench and
fio read fio's file back to back (each first in turn) (the disk here is a noisy virtual disk: paired ratios are the
fairest read figure). Striping: bench-io over 2 directories with half the size each (4 MiB stripe unit, fresh files)
vs 1 directory, the same total bytes.

  bench/io_vs_fio.py --dir /tmp/iobench --size 2GiB --block 1MiB --qd 32 --repeat 3
"""
import argparse, json, os, platform, shutil, statistics, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True)

def to_bytes(text):
    """'2GiB' -> 2147483648. fio reads 'MiB' as 10^6 under its default kb_base, so it gets bytes."""
    units = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "kB": 10**3, "MB": 10**6, "GB": 10**9}
    num = "".join(c for c in text if c.isdigit() or c == ".")
    return int(float(num) * units[text[len(num):]])

def fio(path, rw, size, block, qd):
    cmd = ["fio", "--name=" + rw, "--filename=" + path, "--size=" + str(to_bytes(size)), "--bs=" + str(to_bytes(block)),
           "--iodepth=" + str(qd), "--ioengine=io_uring", "--direct=1", "--rw=" + rw,
           "--fixedbufs=1", "--registerfiles=1", "--output-format=json"]
    job = json.loads(run(cmd).stdout)["jobs"][0]
    side = job["read" if rw == "read" else "write"]
    cpu_s = (job["usr_cpu"] + job["sys_cpu"]) / 100.0 * job["job_runtime"] / 1000.0
    return {"gbps": side["bw_bytes"] / 1e9, "cpu_s_per_gb": cpu_s / (side["io_bytes"] / 1e9), "cmd": " ".join(cmd)}

def ours(binary, dirs, size, block, qd):
    out = tempfile.mktemp(suffix=".json")
    cmd = [binary, "fuyou", "bench-io", "--ssd", ",".join(dirs), "--size", size, "--block", block,
           "--qd", str(qd), "--out", out, "--log-level", "warn"]
    run(cmd)
    with open(out) as f:
        m = json.load(f)["metrics"]
    os.unlink(out)
    m["cmd"] = " ".join(cmd)
    return m

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/sparsetrain-iobench")
    ap.add_argument("--size", default="2GiB")
    ap.add_argument("--block", default="1MiB")
    ap.add_argument("--qd", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/apps/sparsetrain/sparsetrain"))
    ap.add_argument("--engine-bench", default=os.path.join(ROOT, "build/bench/io_engine_bench"))
    a = ap.parse_args()
    if shutil.which("fio") is None:
        print("io_vs_fio: fio is not installed (apt-get install fio)", file=sys.stderr)
        return 3
    one = os.path.join(a.dir, "one"); two = [os.path.join(a.dir, "s0"), os.path.join(a.dir, "s1")]
    for d in [one] + two:
        os.makedirs(d, exist_ok=True)
    # --size is split over the two striped dirs, so both runs move the same total bytes.
    half_size = str(to_bytes(a.size) // 2)
    samples = {"fio_write": [], "fio_read": [], "ours_write": [], "ours_read": [],
               "ours_cpu_s_per_gb_write": [], "ours_cpu_s_per_gb_read": [],
               "fio_cpu_s_per_gb_write": [], "fio_cpu_s_per_gb_read": [],
               "one_dir_write": [], "one_dir_read": [], "striped2_write": [], "striped2_read": [],
               "paired_fio_read": [], "paired_engine_read": [], "paired_read_ratio": []}
    cmds = {}
    for r in range(a.repeat):
        order = ["fio", "ours"] if r % 2 == 0 else ["ours", "fio"]
        for who in order:
            if who == "fio":
                path = os.path.join(one, "fio.dat")
                w = fio(path, "write", a.size, a.block, a.qd)
                rd = fio(path, "read", a.size, a.block, a.qd)
                # Paired reads of fio's own file, back to back.
                for k in range(2):  # alternate which tool reads first
                    ecmd = [a.engine_bench, "read", path, str(to_bytes(a.size)), str(to_bytes(a.block)), str(a.qd)]
                    if k == 0:
                        pf = fio(path, "read", a.size, a.block, a.qd)
                        pe = json.loads(run(ecmd).stdout)
                    else:
                        pe = json.loads(run(ecmd).stdout)
                        pf = fio(path, "read", a.size, a.block, a.qd)
                    samples["paired_fio_read"].append(pf["gbps"]); samples["paired_engine_read"].append(pe["gbps"])
                    samples["paired_read_ratio"].append(pe["gbps"] / pf["gbps"])
                    cmds["engine_read"] = " ".join(ecmd)
                os.unlink(path)
                samples["fio_write"].append(w["gbps"]); samples["fio_read"].append(rd["gbps"])
                samples["fio_cpu_s_per_gb_write"].append(w["cpu_s_per_gb"])
                samples["fio_cpu_s_per_gb_read"].append(rd["cpu_s_per_gb"])
                cmds["fio_write"], cmds["fio_read"] = w["cmd"], rd["cmd"]
            else:
                m = ours(a.binary, [one], a.size, a.block, a.qd)
                d = m["per_dir"][0]
                samples["ours_write"].append(d["write"]["write_gbps"]); samples["ours_read"].append(d["read"]["read_gbps"])
                samples["ours_cpu_s_per_gb_write"].append(d["write"]["cpu_s_per_gb"])
                samples["ours_cpu_s_per_gb_read"].append(d["read"]["cpu_s_per_gb"])
                cmds["ours"] = m["cmd"]
        # Striping: the same total bytes through one directory vs two on the same disk.
        m1 = samples["ours_write"][-1], samples["ours_read"][-1]
        m2 = ours(a.binary, two, half_size, a.block, a.qd)
        samples["one_dir_write"].append(m1[0]); samples["one_dir_read"].append(m1[1])
        samples["striped2_write"].append(m2["striped"]["write"]["write_gbps"])
        samples["striped2_read"].append(m2["striped"]["read"]["read_gbps"])
        cmds["striped2"] = m2["cmd"]
    med = {k: statistics.median(v) for k, v in samples.items()}
    commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
    fio_version = run(["fio", "--version"]).stdout.strip()
    result = {
        "benchmark": "io_vs_fio", "commit": commit,
        "hardware": {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
                     "dir": a.dir, "fio": fio_version},
        "parameters": {"size": a.size, "block": a.block, "qd": a.qd, "repeat": a.repeat,
                       "striped_size_per_dir": half_size},
        "commands": cmds, "samples_gbps": samples, "median_gbps": med,
        "ratio_ours_over_fio": {"write_bench_io": med["ours_write"] / med["fio_write"],
                                "read_bench_io": med["ours_read"] / med["fio_read"],
                                "read_paired_same_file_median": med["paired_read_ratio"]},
        "striping_cost": {"write": 1 - med["striped2_write"] / med["one_dir_write"],
                          "read": 1 - med["striped2_read"] / med["one_dir_read"]},
        # Per repeat, striped vs one directory measured minutes apart: the median of those ratios
        # is less exposed to the disk's drift than the ratio of medians above.
        "striping_cost_paired_median": {
            op: 1 - statistics.median(s2 / s1 for s1, s2 in zip(samples["one_dir_" + op], samples["striped2_" + op]))
            for op in ("write", "read")},
    }
    print(json.dumps(result, indent=1))
    shutil.rmtree(a.dir, ignore_errors=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
