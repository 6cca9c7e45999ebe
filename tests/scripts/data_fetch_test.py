"""scripts/data_fetch.py over real HTTP: a local server (http.server in a thread, on 127.0.0.1,
with Range support) serves Planetoid pickles and an OGB-layout zip that this test writes itself;
fetch + convert is checked against a ground truth built before the pickles (not against the
converter), a download cut off midway resumes with a Range request, a checksum mismatch is
refused (exit 1, nothing under the final name), --from without a file names it (exit 2), a
pickle that names a foreign global is refused without running it.

With the original Planetoid files (SPARSETRAIN_PLANETOID_RAW=DIR holding ind.{cora,citeseer,
pubmed}.*, from github.com/kimiyoung/planetoid data/) and ../shared/data present, `fetch --from`
must give ../shared/data's graphs byte for byte; that test skips otherwise.

  data_fetch_test.py [--binary build/apps/sparsetrain/sparsetrain]
With --binary, and when that binary has `data fetch`, one fetch also runs through it.
Exits 77 (skip) without numpy or scipy.
"""
import argparse
import collections
import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
import zipfile

try:
    import numpy as np
    import scipy.sparse as sp
except ImportError as e:
    print(f"skip: {e}", file=sys.stderr)
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "scripts", "data_fetch.py")
SHARED_DATA = os.path.join(HERE, "..", "..", "..", "shared", "data")
BINARY = None
PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index")


# ---------------------------------------------------------------------------------------------
# A local HTTP server with Range support


class FileServer:
    """Serves `files` {name: bytes} at http://127.0.0.1:PORT/NAME. `cut_once[name] = n` sends the
    full Content-Length but closes after n bytes, once; every request's path and Range header is
    recorded in `requests`."""

    def __init__(self, files):
        self.files, self.cut_once, self.requests = dict(files), {}, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                start, status = 0, 200
                ranged = self.headers.get("Range")
                if ranged:
                    start = int(ranged.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                cut = server.cut_once.pop(name, None)
                self.wfile.write(body[start:start + cut] if cut is not None else body[start:])
                if cut is not None:
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------------
# A small Planetoid dataset: ground truth first, then the pickles that encode it


def make_planetoid(name="citeseer"):
    """530 nodes: 10 labelled (x, y), 520 in allx, test ids 520..529 of which 523 and 527 have
    no row (CiteSeer's case). Returns (files {name: bytes}, truth)."""
    rng = np.random.default_rng(7)
    n, width, classes = 530, 6, 3
    feats = np.zeros((n, width), dtype=np.float32)
    mask = rng.random((n, width)) < 0.3
    feats[mask] = rng.choice(np.array([1.0, 0.1, 0.5, 0.3333333], dtype=np.float32), mask.sum())
    labels = rng.integers(0, classes, n)
    test_ids = np.array([528, 520, 525, 522, 529, 521, 524, 526])  # shuffled, 523/527 missing
    missing = [523, 527]
    feats[missing] = 0
    labels[missing] = 0  # argmax of an all-zero row
    onehot = np.eye(classes, dtype=np.int32)
    truth_edges = {(0, 1), (1, 2), (2, 525), (3, 529), (10, 520), (100, 200), (519, 528)}
    adjacency = collections.defaultdict(list)
    for u, v in sorted(truth_edges):
        adjacency[u].append(v)
        adjacency[v].append(u)
    adjacency[1].append(0)  # a duplicate
    adjacency[4].append(4)  # a self loop
    adjacency[527]  # a key without neighbours
    objects = {
        "x": sp.csr_matrix(feats[:10]), "y": onehot[labels[:10]],
        "allx": sp.csr_matrix(feats[:520]), "ally": onehot[labels[:520]],
        "tx": sp.csr_matrix(feats[test_ids]), "ty": onehot[labels[test_ids]],
        "graph": adjacency,
    }
    files = {f"ind.{name}.{k}": pickle.dumps(v, protocol=2) for k, v in objects.items()}
    files[f"ind.{name}.test.index"] = "".join(f"{i}\n" for i in test_ids).encode()
    truth = {"nodes": n, "features": feats, "labels": labels, "edges": sorted(truth_edges),
             "train": list(range(10)), "valid": list(range(10, 510)),
             "test": sorted(test_ids.tolist())}
    return files, truth


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def overrides(files):
    out = []
    for name, data in files.items():
        out += ["--sha256", f"{name}={sha256(data)}"]
    return out


def run_tool(*args, binary=None):
    command = [binary, "data"] if binary else [sys.executable, SCRIPT]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)


def read_gz_text(path):
    with open(path, "rb") as f:
        raw = f.read()
    return raw, gzip.decompress(raw).decode()


# ---------------------------------------------------------------------------------------------


class FetchPlanetoid(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="st-data-fetch-")
        self.root = os.path.join(self.dir, "root")
        self.files, self.truth = make_planetoid()
        self.server = FileServer(self.files)

    def tearDown(self):
        self.server.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def fetch(self, *extra, binary=None):
        return run_tool("fetch", "citeseer", "--root", self.root, "--url-base", self.server.url,
                        *overrides(self.files), *extra, binary=binary)

    def assert_graph_is_truth(self, target):
        t = self.truth
        files = {}
        for rel in ["raw/edge.csv.gz", "raw/node-feat.csv.gz", "raw/node-label.csv.gz",
                    "raw/num-node-list.csv.gz", "raw/num-edge-list.csv.gz",
                    "split/public/train.csv.gz", "split/public/valid.csv.gz",
                    "split/public/test.csv.gz"]:
            raw, text = read_gz_text(os.path.join(target, rel))
            # gzip header: deflate, no flags (no file name), mtime 0, XFL 2, OS 255
            self.assertEqual(raw[:10], b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff", rel)
            files[rel] = text
        self.assertEqual(files["raw/edge.csv.gz"], "".join(f"{u},{v}\n" for u, v in t["edges"]))
        self.assertEqual(files["raw/num-node-list.csv.gz"], f"{t['nodes']}\n")
        self.assertEqual(files["raw/num-edge-list.csv.gz"], f"{len(t['edges'])}\n")
        self.assertEqual(files["raw/node-label.csv.gz"], "".join(f"{c}\n" for c in t["labels"]))
        for part in ("train", "valid", "test"):
            self.assertEqual(files[f"split/public/{part}.csv.gz"],
                             "".join(f"{i}\n" for i in t[part]), part)
        rows = files["raw/node-feat.csv.gz"].splitlines()
        got = np.array([[np.float32(v) for v in r.split(",")] for r in rows], dtype=np.float32)
        np.testing.assert_array_equal(got, t["features"])  # bit for bit as float32
        self.assertIn("0.3333333", files["raw/node-feat.csv.gz"])  # shortest round-trip form
        self.assertNotIn("1.0", files["raw/node-feat.csv.gz"])  # '1', not '1.0'
        self.assertEqual(rows[523], ",".join(["0"] * 6))  # a missing test-range node
        with open(os.path.join(target, ".sparsetrain-dataset.json")) as f:
            marker = json.load(f)
        self.assertEqual(marker["name"], "citeseer")
        self.assertEqual(marker["counts"]["nodes"], t["nodes"])
        for name, data in self.files.items():
            self.assertEqual(marker["sources"][name]["sha256"], sha256(data))

    def test_fetch_converts_the_pickles_as_pyg_does(self):
        r = self.fetch("--progress", "never")
        self.assertEqual(r.returncode, 0, r.stderr)
        target = os.path.join(self.root, "citeseer")
        self.assert_graph_is_truth(target)
        self.assertEqual(sorted(os.listdir(self.root)), ["citeseer"])  # no .part, no temp dir
        self.assertEqual(len(self.server.requests), 8)
        # Already fetched and intact: one line, no request, nothing rewritten.
        before = os.stat(os.path.join(target, "raw", "edge.csv.gz")).st_mtime_ns
        again = self.fetch("--progress", "never")
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("already fetched and intact", again.stderr)
        self.assertEqual(len(again.stderr.strip().splitlines()), 1, again.stderr)
        self.assertEqual(len(self.server.requests), 8)
        self.assertEqual(os.stat(os.path.join(target, "raw", "edge.csv.gz")).st_mtime_ns, before)
        # `list` sees it; a damaged copy is noticed and fetched again.
        listing = json.loads(run_tool("list", "--root", self.root, "--json").stdout)
        status = {d["name"]: d["status"] for d in listing["datasets"]}
        self.assertEqual(status["citeseer"], "ok")
        self.assertEqual(status["cora"], "absent")
        os.unlink(os.path.join(target, "raw", "node-label.csv.gz"))
        listing = json.loads(run_tool("list", "--root", self.root, "--json").stdout)
        self.assertIn("damaged", {d["name"]: d["status"] for d in listing["datasets"]}["citeseer"])
        fixed = self.fetch("--progress", "never")
        self.assertEqual(fixed.returncode, 0, fixed.stderr)
        self.assert_graph_is_truth(target)

    def test_an_interrupted_download_resumes_with_a_range_request(self):
        allx = "ind.citeseer.allx"
        self.server.cut_once[allx] = 1000
        r = self.fetch("--progress", "auto")  # stderr is a pipe: periodic lines, no bar
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("broke off after 1000", r.stderr)
        self.assertIn("hint:", r.stderr)
        part = os.path.join(self.root, ".downloads", "citeseer", allx + ".part")
        self.assertEqual(os.path.getsize(part), 1000)
        self.assertFalse(os.path.exists(os.path.join(self.root, "citeseer")))
        self.assertFalse(os.path.exists(os.path.join(self.root, ".downloads", "citeseer", allx)))
        self.server.requests.clear()
        r = self.fetch("--progress", "auto")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn((allx, "bytes=1000-"), self.server.requests)
        self.assertIn("resuming ind.citeseer.allx", r.stderr)
        self.assertNotIn("\r", r.stderr)
        self.assert_graph_is_truth(os.path.join(self.root, "citeseer"))
        self.assertFalse(os.path.exists(os.path.join(self.root, ".downloads")))

    def test_a_checksum_mismatch_is_refused_and_nothing_kept(self):
        graph = "ind.citeseer.graph"
        good = self.files[graph]
        self.server.files[graph] = good[:-5] + bytes(b ^ 1 for b in good[-5:])
        r = self.fetch("--progress", "never")  # the overrides pin the good bytes
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"checksum mismatch for {graph}", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 2, r.stderr)  # error + hint
        self.assertFalse(os.path.exists(os.path.join(self.root, "citeseer")))
        for dirpath, _, names in os.walk(self.root):
            for name in names:
                self.assertFalse(name.startswith(graph), os.path.join(dirpath, name))
            self.assertFalse(os.path.basename(dirpath).startswith(".citeseer.tmp"), dirpath)

    def test_a_server_without_range_support_restarts_the_file(self):
        allx = "ind.citeseer.allx"
        workdir = os.path.join(self.root, ".downloads", "citeseer")
        os.makedirs(workdir)
        with open(os.path.join(workdir, allx + ".part"), "wb") as f:
            f.write(b"stale bytes from elsewhere")
        self.server.files["ind.citeseer.allx"] = self.files[allx]
        real_get = self.server.httpd.RequestHandlerClass.do_GET

        def without_range(handler):
            if "Range" in handler.headers:
                del handler.headers["Range"]
            real_get(handler)
        self.server.httpd.RequestHandlerClass.do_GET = without_range
        r = self.fetch("--progress", "never")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_graph_is_truth(os.path.join(self.root, "citeseer"))

    def test_from_a_folder_converts_without_network_and_names_a_missing_file(self):
        local = os.path.join(self.dir, "planetoid")
        os.makedirs(local)
        for name, data in self.files.items():
            with open(os.path.join(local, name), "wb") as f:
                f.write(data)
        r = run_tool("fetch", "citeseer", "--root", self.root, "--from", local,
                     *overrides(self.files))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_graph_is_truth(os.path.join(self.root, "citeseer"))
        self.assertEqual(self.server.requests, [])
        os.unlink(os.path.join(local, "ind.citeseer.ty"))
        other = os.path.join(self.dir, "other")
        r = run_tool("fetch", "citeseer", "--root", other, "--from", local, *overrides(self.files))
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("ind.citeseer.ty", r.stderr.splitlines()[0])
        self.assertFalse(os.path.exists(os.path.join(other, "citeseer")))

    def test_the_pinned_checksums_are_checked_on_local_files_too(self):
        local = os.path.join(self.dir, "planetoid")
        os.makedirs(local)
        for name, data in self.files.items():
            with open(os.path.join(local, name), "wb") as f:
                f.write(data)
        r = run_tool("fetch", "citeseer", "--root", self.root, "--from", local)  # no overrides
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("checksum mismatch for ind.citeseer.", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.root, "citeseer")))
        self.assertEqual(sorted(os.listdir(local)), sorted(self.files))  # the user's files stay

    def test_without_scipy_it_exits_3_before_downloading(self):
        blocker = os.path.join(self.dir, "no-scipy", "scipy")
        os.makedirs(blocker)
        with open(os.path.join(blocker, "__init__.py"), "w") as f:
            f.write("raise ImportError('No module named scipy')\n")
        env = dict(os.environ, PYTHONPATH=os.path.dirname(blocker))
        r = subprocess.run([sys.executable, SCRIPT, "fetch", "citeseer", "--root", self.root,
                            "--url-base", self.server.url], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("numpy and scipy", r.stderr)
        self.assertEqual(self.server.requests, [])

    def test_pubmed_allx_is_checked_by_its_git_blob_id(self):
        files, _ = make_planetoid("pubmed")
        local = os.path.join(self.dir, "pubmed")
        os.makedirs(local)
        for name, data in files.items():
            with open(os.path.join(local, name), "wb") as f:
                f.write(data)
        others = {k: v for k, v in files.items() if k != "ind.pubmed.allx"}
        r = run_tool("fetch", "pubmed", "--root", self.root, "--from", local, *overrides(others))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("checksum mismatch for ind.pubmed.allx: git blob SHA-1", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.root, "pubmed")))

    def test_bad_pickles_exit_2_and_run_nothing(self):
        local = os.path.join(self.dir, "planetoid")
        os.makedirs(local)
        sentinel = os.path.join(self.dir, "pwned")

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {sentinel}",))
        files = dict(self.files)
        files["ind.citeseer.graph"] = pickle.dumps(Evil(), protocol=2)
        files["ind.citeseer.y"] = b"not a pickle"
        for case in ("ind.citeseer.graph", "ind.citeseer.y"):
            for name, data in self.files.items():
                with open(os.path.join(local, name), "wb") as f:
                    f.write(files[name] if name == case else data)
            r = run_tool("fetch", "citeseer", "--root", self.root, "--from", local,
                         *overrides({**self.files, case: files[case]}))
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(f"{case}' is not a Planetoid pickle", r.stderr)
            self.assertFalse(os.path.exists(sentinel))
            self.assertFalse(os.path.exists(os.path.join(self.root, "citeseer")))
            self.assertEqual([e for e in os.listdir(self.root) if e != ".downloads"], [])

    def test_usage_errors_exit_2(self):
        r = run_tool("fetch", "coraa", "--root", self.root)
        self.assertEqual(r.returncode, 2, r.stderr)
        for name in ("cora", "citeseer", "pubmed", "ogbn-arxiv", "ogbn-products"):
            self.assertIn(name, r.stderr)
        self.assertTrue(r.stderr.startswith("sparsetrain: error: unknown dataset 'coraa'"))
        r = run_tool("fetch", "cora", "--sha256", "ind.cora.x=123")
        self.assertEqual(r.returncode, 2, r.stderr)
        r = run_tool("fetch", "cora", "--from", self.dir, "--url-base", "http://x")
        self.assertEqual(r.returncode, 2, r.stderr)
        os.makedirs(os.path.join(self.root, "citeseer"))  # a folder we did not write
        r = self.fetch("--progress", "never")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--force", r.stderr)

    def test_a_404_is_a_failed_run(self):
        del self.server.files["ind.citeseer.ty"]
        r = self.fetch("--progress", "never")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("HTTP 404", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.root, "citeseer")))

    @unittest.skipIf(BINARY is None and "--binary" not in sys.argv, "no sparsetrain binary given")
    def test_through_sparsetrain_data_fetch(self):
        probe = subprocess.run([BINARY, "data", "fetch", "--help"], capture_output=True, text=True)
        if probe.returncode != 0 or "--from" not in probe.stdout + probe.stderr:
            self.skipTest("this sparsetrain has no `data fetch` yet")
        r = self.fetch("--progress", "never", binary=BINARY)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_graph_is_truth(os.path.join(self.root, "citeseer"))
        r = run_tool("fetch", "nope", binary=BINARY)
        self.assertEqual(r.returncode, 2, r.stderr)


def make_arxiv_zip(with_counts=True, extra_member=None):
    """arxiv/raw/*.csv.gz and arxiv/split/time/*.csv.gz as OGB's archive lays them out."""
    members = {
        "arxiv/raw/edge.csv.gz": gzip.compress(b"0,1\n1,2\n2,0\n3,1\n"),
        "arxiv/raw/node-feat.csv.gz": gzip.compress(b"0.5,1.0\n-0.25,2.0\n0.0,0.0\n1.0,1.0\n"),
        "arxiv/raw/node-label.csv.gz": gzip.compress(b"0\n1\n1\n0\n"),
        "arxiv/raw/node_year.csv.gz": gzip.compress(b"2015\n2017\n2018\n2019\n"),
        "arxiv/split/time/train.csv.gz": gzip.compress(b"0\n1\n"),
        "arxiv/split/time/valid.csv.gz": gzip.compress(b"2\n"),
        "arxiv/split/time/test.csv.gz": gzip.compress(b"3\n"),
        "arxiv/mapping/README.md": b"mapping\n",
        "arxiv/RELEASE_v1.txt": b"v1\n",
    }
    if with_counts:
        members["arxiv/raw/num-node-list.csv.gz"] = gzip.compress(b"4\n")
        members["arxiv/raw/num-edge-list.csv.gz"] = gzip.compress(b"4\n")
    if extra_member:
        members[extra_member] = b"x"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue(), members


class FetchOgb(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="st-data-fetch-ogb-")
        self.root = os.path.join(self.dir, "root")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def fetch_zip(self, data):
        server = FileServer({"arxiv.zip": data})
        try:
            return run_tool("fetch", "ogbn-arxiv", "--root", self.root, "--url-base", server.url,
                            "--sha256", f"arxiv.zip={sha256(data)}", "--progress", "never")
        finally:
            server.close()

    def test_the_archive_is_extracted_into_the_ogb_layout(self):
        for with_counts in (True, False):
            data, members = make_arxiv_zip(with_counts)
            shutil.rmtree(self.root, ignore_errors=True)
            r = self.fetch_zip(data)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("--symmetrize", r.stderr)  # the hint for arxiv's directed edges
            target = os.path.join(self.root, "ogbn-arxiv")
            for name, content in members.items():
                with open(os.path.join(target, name[len("arxiv/"):]), "rb") as f:
                    self.assertEqual(f.read(), content, name)
            for rel in ("raw/num-node-list.csv.gz", "raw/num-edge-list.csv.gz"):
                self.assertEqual(read_gz_text(os.path.join(target, rel))[1], "4\n", rel)
            with open(os.path.join(target, ".sparsetrain-dataset.json")) as f:
                marker = json.load(f)
            self.assertEqual(marker["sources"]["arxiv.zip"]["sha256"], sha256(data))
            self.assertEqual(marker["split"], "time")
            self.assertEqual(marker["counts"]["train"], 2)
            self.assertEqual(sorted(os.listdir(self.root)), ["ogbn-arxiv"])

    def test_an_archive_with_a_member_outside_its_folder_is_refused(self):
        data, _ = make_arxiv_zip(extra_member="arxiv/../../evil.txt")
        r = self.fetch_zip(data)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("would be written outside arxiv/", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.root, "ogbn-arxiv")))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "evil.txt")))

    def test_the_pins_are_in_the_table(self):
        listing = json.loads(run_tool("list", "--root", self.root, "--json").stdout)
        by_name = {d["name"]: d for d in listing["datasets"]}
        arxiv = by_name["ogbn-arxiv"]["files"][0]
        self.assertEqual((arxiv["name"], arxiv["bytes"]), ("arxiv.zip", 83058288))
        for d in listing["datasets"]:
            for f in d["files"]:
                self.assertTrue(f["sha256"] or f["git_blob_sha1"], f)
            self.assertTrue(d["licence"] and d["source"], d["name"])


def shared_graph_files(name):
    folder = os.path.join(SHARED_DATA, name)
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, fs in os.walk(folder) for f in fs)


@unittest.skipUnless(os.environ.get("SPARSETRAIN_PLANETOID_RAW") and os.path.isdir(SHARED_DATA),
                     "set SPARSETRAIN_PLANETOID_RAW to the original ind.* files (and have "
                     "../shared/data) to compare byte for byte")
class OriginalPlanetoidFiles(unittest.TestCase):
    """The real files, converted with their pinned checksums, against ../shared/data."""

    def setUp(self):
        self.raw = os.environ["SPARSETRAIN_PLANETOID_RAW"]
        self.dir = tempfile.mkdtemp(prefix="st-data-fetch-real-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def compare(self, name, root, skip=()):
        ours = os.path.join(root, name)
        compared = 0
        for rel in shared_graph_files(name):
            if rel in skip:
                continue
            with open(os.path.join(ours, rel), "rb") as a, \
                    open(os.path.join(SHARED_DATA, name, rel), "rb") as b:
                self.assertEqual(a.read(), b.read(), f"{name}/{rel}")  # .gz bytes, hence text
            compared += 1
        return compared

    def test_cora_citeseer_pubmed_are_byte_for_byte_the_shared_graphs(self):
        counts = {"cora": (2708, 5278, 1433, 7), "citeseer": (3327, 4552, 3703, 6),
                  "pubmed": (19717, 44324, 500, 3)}
        for name, want in counts.items():
            if not os.path.isdir(os.path.join(SHARED_DATA, name)):
                continue
            source, extra, skip = self.raw, [], set()
            if not os.path.exists(os.path.join(self.raw, f"ind.{name}.allx")):
                # PubMed's allx (7 MB) may be missing: stand in an all-zero one of the right
                # shape; everything but node-feat.csv.gz depends on its row count only.
                source = os.path.join(self.dir, "raw-" + name)
                os.makedirs(source)
                for part in PARTS:
                    if part != "allx":
                        shutil.copy(os.path.join(self.raw, f"ind.{name}.{part}"), source)
                with open(os.path.join(source, f"ind.{name}.ally"), "rb") as f:
                    rows = pickle.load(f, encoding="latin1").shape[0]
                width = want[2]
                stand_in = pickle.dumps(sp.csr_matrix((rows, width), dtype=np.float32), protocol=2)
                with open(os.path.join(source, f"ind.{name}.allx"), "wb") as f:
                    f.write(stand_in)
                extra = ["--sha256", f"ind.{name}.allx={sha256(stand_in)}"]
                skip = {"raw/node-feat.csv.gz"}
            r = run_tool("fetch", name, "--root", self.dir, "--from", source, *extra)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(self.dir, name, ".sparsetrain-dataset.json")) as f:
                c = json.load(f)["counts"]
            self.assertEqual((c["nodes"], c["edges"], c["features"], c["classes"]), want)
            n = self.compare(name, self.dir, skip)
            print(f"  {name}: {n} files byte for byte equal to ../shared/data/{name}"
                  + (" (node-feat not compared: no ind.pubmed.allx)" if skip else ""),
                  file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary")
    args, rest = parser.parse_known_args()
    BINARY = args.binary
    unittest.main(argv=[sys.argv[0], *rest])
