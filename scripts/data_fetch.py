#!/usr/bin/env python3
"""Fetch the public node-classification graphs (Cora, CiteSeer, PubMed, ogbn-arxiv, ogbn-products)
and write each as ROOT/NAME in the OGB raw layout that `sparsetrain teddy prune|run` and `graph
stats` read. This is the tool behind `sparsetrain data fetch|list` (the C++ subcommand runs it
with the project venv's Python and passes its exit status through); it is not a general
downloader, and it never changes a graph's content beyond the conversion described here.

  .venv/bin/python scripts/data_fetch.py fetch cora                 # download, check, convert
  .venv/bin/python scripts/data_fetch.py fetch cora --from ~/planetoid/data   # files you have
  .venv/bin/python scripts/data_fetch.py list [--json]              # known and on disk

Sources (the table DATASETS below pins every file's size and SHA-256):
  cora, citeseer, pubmed   the Planetoid pickles ind.NAME.{x,y,tx,ty,allx,ally,graph,test.index}
                           from github.com/kimiyoung/planetoid (data/), where PyTorch Geometric's
                           `Planetoid` downloads them from
  ogbn-arxiv, ogbn-products  OGB's archives (snap.stanford.edu/ogb/data/nodeproppred/*.zip),
                           already in the OGB raw layout: extracted, the split kept as OGB names it

Planetoid conversion, step for step as PyG's `read_planetoid_data`: features vstack(allx, tx) as
float32 (CiteSeer's tx first padded with zero rows to the whole test-index range), labels the
argmax of vstack(ally, ty), then both reordered `x[test.index] = x[sorted(test.index)]`; edges from
the adjacency dict with self loops removed and duplicates merged, each undirected pair written
once as `src,dst` with src < dst, sorted; public split: train = the first len(y) nodes, valid =
the next 500, test = test.index ascending. No feature normalisation.

Output, per graph (gzip level 9, mtime 0, no file name in the header: the bytes depend on the
input only; a feature is the shortest decimal that reads back as the same float32):
  raw/edge.csv.gz  raw/node-feat.csv.gz  raw/node-label.csv.gz  raw/num-node-list.csv.gz
  raw/num-edge-list.csv.gz  split/<split>/{train,valid,test}.csv.gz
  .sparsetrain-dataset.json   what was fetched: source checksums, output sizes, counts

Nothing half-written: downloads go to ROOT/.downloads/NAME/FILE.part (resumed with an HTTP Range
request, checked against the pinned SHA-256 before anything is converted, deleted on a mismatch,
removed after a successful fetch); the graph is written into a temporary folder beside ROOT/NAME
and renamed at the end. A graph already fetched and intact is left alone (`--force` redoes it).

Exit status: 0 ok · 1 run failed (network, checksum mismatch, counts not as pinned) · 2 usage or
bad input (unknown name, a --from folder missing a file, a malformed pickle or archive) ·
3 environment (numpy or scipy missing) · 70 internal error · 130 interrupted (a .part is kept).
"""
import argparse
import contextlib
import datetime
import fcntl
import gzip
import hashlib
import http.client
import json
import os
import pickle
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Optional

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 1, 2, 3
EXIT_INTERNAL, EXIT_INTERRUPTED = 70, 130
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_ROOT = os.path.join(CHECKOUT, "data")
MARKER = ".sparsetrain-dataset.json"
MARKER_SCHEMA, MARKER_VERSION = "sparsetrain.dataset", 1
GZIP_LEVEL = 9  # as the converted graphs in ../shared/data (gzip header XFL = 2)
CHUNK = 1 << 20  # bytes per read while downloading and hashing
CONNECT_TIMEOUT_S = 30
PROGRESS_INTERVAL_S = 5.0
USER_AGENT = "sparsetrain-data-fetch/1"


class CliError(Exception):
    """A user-facing failure: one line, a hint, an exit status."""

    def __init__(self, code, message, hint):
        super().__init__(message)
        self.code, self.hint = code, hint


def usage_error(message, hint):
    return CliError(EXIT_USAGE, message, hint)


def run_error(message, hint):
    return CliError(EXIT_FAILED, message, hint)


# ---------------------------------------------------------------------------------------------
# The known datasets


@dataclass(frozen=True)
class SourceFile:
    name: str
    size: Optional[int]  # bytes; None where no trustworthy figure is known
    sha256: Optional[str]  # None: not published anywhere we could find (see the dataset's note)
    git_blob_sha1: Optional[str] = None  # sha1("blob <size>\0" + bytes), the git tree's own id


@dataclass(frozen=True)
class Counts:
    nodes: int
    edges: int  # lines of edge.csv.gz: undirected pairs once, or directed edges (directed=True)
    features: int
    classes: int
    train: int
    valid: int
    test: int


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: str  # "planetoid" (pickles converted) or "ogb" (an archive extracted)
    url_base: str
    files: tuple
    counts: Counts
    split: str  # the folder under split/
    directed: bool  # edge.csv.gz lists directed edges (pass --symmetrize to teddy/graph commands)
    licence: str
    source: str
    checksum_source: str
    archive_dir: str = ""  # ogb: the zip's top folder
    notes: tuple = field(default_factory=tuple)


PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data"
PLANETOID_CHECKSUMS = ("SHA-256 of the files in kimiyoung/planetoid at commit af6abf4 (the last "
                       "commit of master), computed from the repository's objects")
PLANETOID_LICENCE = ("MIT (the kimiyoung/planetoid repository, (c) 2016 Zhilin Yang); the "
                     "underlying corpus: {}")
OGB_URL = "http://snap.stanford.edu/ogb/data/nodeproppred"
PLANETOID_PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index")


def planetoid_files(name, sizes_and_sums):
    return tuple(SourceFile(f"ind.{name}.{part}", *sizes_and_sums[part])
                 for part in PLANETOID_PARTS)


DATASETS = {d.name: d for d in [
    Dataset(
        name="cora", kind="planetoid", url_base=PLANETOID_URL,
        files=planetoid_files("cora", {
            "x": (22119, "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab"),
            "y": (4054, "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1"),
            "tx": (148025, "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a"),
            "ty": (28135, "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad"),
            "allx": (257305, "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543"),
            "ally": (47959, "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71"),
            "graph": (59847, "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d"),
            "test.index": (5000,
                           "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875"),
        }),
        counts=Counts(2708, 5278, 1433, 7, 140, 500, 1000), split="public", directed=False,
        licence=PLANETOID_LICENCE.format("the Cora research-paper classification data of McCallum "
                                         "et al. (2000), published for research without a licence"),
        source="Planetoid (Yang, Cohen, Salakhutdinov, ICML 2016) version of Cora (McCallum et "
               "al. 2000; LINQS, Sen et al. 2008)",
        checksum_source=PLANETOID_CHECKSUMS),
    Dataset(
        name="citeseer", kind="planetoid", url_base=PLANETOID_URL,
        files=planetoid_files("citeseer", {
            "x": (31087, "d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6"),
            "y": (3014, "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924"),
            "tx": (260321, "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21"),
            "ty": (24135, "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce"),
            "allx": (595021, "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668"),
            "ally": (55623, "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95"),
            "graph": (61987, "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7"),
            "test.index": (5000,
                           "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4"),
        }),
        counts=Counts(3327, 4552, 3703, 6, 120, 500, 1000), split="public", directed=False,
        licence=PLANETOID_LICENCE.format("the CiteSeer document classification data (LINQS, Sen et "
                                         "al. 2008), published for research without a licence"),
        source="Planetoid version of CiteSeer (Giles et al. 1998; LINQS, Sen et al. 2008)",
        checksum_source=PLANETOID_CHECKSUMS,
        notes=("15 test-range nodes are missing from test.index: they keep all-zero features and "
               "label 0, as in PyG",)),
    Dataset(
        name="pubmed", kind="planetoid", url_base=PLANETOID_URL,
        files=planetoid_files("pubmed", {
            "x": (23172, "fbe9cb5c47200d1b7769a26e579be3b7130b556831f9d850e77c4c74f2599b33"),
            "y": (854, "e6c807633307a07ed659249006536a147c7999c797f11a2560752990181b41b3"),
            "tx": (405505, "4eb5f5d0f30f26497eb0ac6ac9719d09c67e284f1ed0385c93f3ef27a671da3d"),
            "ty": (12135, "ee2e0d4819d9fbcc403689c3bf2e49face401b605932f093bc58ab6461130fdd"),
            # Over the 4 MiB our repository snapshots carry: no SHA-256 could be computed, so the
            # file is checked against its git blob id from the repository's tree instead.
            "allx": (None, None, "3b86bccf08111c37c632a9dd8ab63db25ea76361"),
            "ally": (224739, "0c37bbe3b5014ec365e9d393cf4791925e5ed94fb194305d74f064a8d7b50f0e"),
            "graph": (471808, "5b89f0036ca22909471f1e6558eb42fa06e0c730a577bde5b058b40638f81dc9"),
            "test.index": (6000,
                           "b101d421688bbaecbd82e8a18f1e282378d6830f3a37666f28ebc47f844341b5"),
        }),
        counts=Counts(19717, 44324, 500, 3, 60, 500, 1000), split="public", directed=False,
        licence=PLANETOID_LICENCE.format("the PubMed Diabetes data (LINQS, Namata et al. 2012), "
                                         "published for research without a licence"),
        source="Planetoid version of PubMed Diabetes (Namata et al. 2012; LINQS)",
        checksum_source=PLANETOID_CHECKSUMS + "; ind.pubmed.allx (over 4 MiB, not in our "
                        "snapshots) by its git blob SHA-1 from the same tree"),
    Dataset(
        name="ogbn-arxiv", kind="ogb", url_base=OGB_URL, archive_dir="arxiv",
        files=(SourceFile("arxiv.zip", 83058288,
                          "49f85c801589ecdcc52cfaca99693aaea7b8af16a9ac3f41dd85a5f3193fe276"),),
        counts=Counts(169343, 1166243, 128, 40, 90941, 29799, 48603), split="time", directed=True,
        licence="ODC-BY (Open Data Commons Attribution), per OGB's documentation; the graph is "
                "derived from the Microsoft Academic Graph (Wang et al. 2020)",
        source="Open Graph Benchmark ogbn-arxiv, version 1 (Hu et al. 2020), from OGB's "
               "master.csv URL",
        checksum_source="not published by OGB; size and SHA-256 as pinned by several independent "
                        "public projects that downloaded the archive (they agree)",
        notes=("directed citations: pass --symmetrize to teddy/graph commands",
               "OGB's split is split/time (teddy run picks it)")),
    Dataset(
        name="ogbn-products", kind="ogb", url_base=OGB_URL, archive_dir="products",
        files=(SourceFile("products.zip", 1480993786,
                          "5ea0a112edaec2141c0a2a612dd4aed58df97ff3e1ab1a0ca8238f43cbbb50a8"),),
        counts=Counts(2449029, 61859140, 100, 47, 196615, 39323, 2213091), split="sales_ranking",
        directed=False,
        licence="Amazon licence (the Amazon product co-purchasing data; OGB links "
                "https://s3.amazonaws.com/amazon-reviews-pds/license.txt)",
        source="Open Graph Benchmark ogbn-products, version 1 (Hu et al. 2020; Amazon "
               "co-purchasing network, Bhatia et al. 2016), from OGB's master.csv URL",
        checksum_source="not published by OGB; size and SHA-256 as pinned by independent public "
                        "projects that downloaded the archive (they agree)",
        notes=("OGB's split is split/sales_ranking (teddy run picks it)",)),
]}


def find_dataset(name):
    if name not in DATASETS:
        raise usage_error(f"unknown dataset '{name}'",
                          f"known: {', '.join(DATASETS)} (see `data list`)")
    return DATASETS[name]


# ---------------------------------------------------------------------------------------------
# Checksums, sizes, progress


def human_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} GiB"


def file_digests(path):
    """(sha256, git blob sha1) of a file, read once."""
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha256.update(chunk)
            blob.update(chunk)
    return sha256.hexdigest(), blob.hexdigest()


@dataclass
class Expected:
    """What one source file must be: pinned, or overridden with --sha256 (then no size pin)."""
    size: Optional[int]
    sha256: Optional[str]
    git_blob_sha1: Optional[str]
    overridden: bool


def expectations(dataset, overrides):
    out = {}
    for f in dataset.files:
        if f.name in overrides:
            out[f.name] = Expected(None, overrides[f.name], None, True)
        else:
            out[f.name] = Expected(f.size, f.sha256, f.git_blob_sha1, False)
    return out


def verify_file(path, name, expected, downloaded):
    """Returns the file's SHA-256; raises run_error on a mismatch (the caller deletes a download,
    never a --from file)."""
    sha256, blob = file_digests(path)
    if downloaded:
        hint = ("the download was deleted; fetch again, and if a mirror really serves other bytes, "
                f"pass --sha256 {name}={sha256}")
    else:
        hint = (f"'{path}' is not the pinned release; use the original file, or pass --sha256 "
                f"{name}={sha256} if you trust this copy")
    if expected.sha256 is not None and sha256 != expected.sha256:
        raise run_error(f"checksum mismatch for {name}: SHA-256 {sha256}, expected "
                        f"{expected.sha256}", hint)
    if expected.sha256 is None and expected.git_blob_sha1 not in (None, blob):
        raise run_error(f"checksum mismatch for {name}: git blob SHA-1 {blob}, expected "
                        f"{expected.git_blob_sha1}", hint)
    if expected.sha256 is None and expected.git_blob_sha1 is None:
        say(f"{name}: no published checksum to check against; got SHA-256 {sha256} (recorded)")
    return sha256


class Progress:
    """Bytes, rate and ETA: a redrawn bar on a terminal (or --progress always), a plain line
    every PROGRESS_INTERVAL_S otherwise; nothing with --progress never."""

    def __init__(self, mode, label, total, start_at=0):
        self.label, self.total, self.done, self.start_at = label, total, start_at, start_at
        self.tty = mode == "always" or (mode == "auto" and sys.stderr.isatty())
        self.enabled = mode != "never"
        self.start = self.last = time.monotonic()

    def render(self, now):
        elapsed = max(now - self.start, 1e-9)
        rate = (self.done - self.start_at) / elapsed
        parts = [self.label]
        if self.total:
            frac = min(self.done / self.total, 1.0)
            if self.tty:
                filled = int(frac * 20)
                parts.append("[" + "#" * filled + "." * (20 - filled) + "]")
            parts += [f"{100 * frac:3.0f}%", f"{human_bytes(self.done)}/{human_bytes(self.total)}"]
        else:
            parts.append(human_bytes(self.done))
        parts.append(f"{human_bytes(rate)}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {max(self.total - self.done, 0) / rate:.0f} s")
        return "  ".join(parts)

    def advance(self, n):
        self.done += n
        now = time.monotonic()
        if not self.enabled:
            return
        if self.tty and now - self.last >= 0.1:
            sys.stderr.write("\r" + self.render(now) + "\033[K")
            sys.stderr.flush()
            self.last = now
        elif not self.tty and now - self.last >= PROGRESS_INTERVAL_S:
            say(self.render(now))
            self.last = now

    def finish(self):
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        got = self.done - self.start_at
        line = (f"{self.label}: {human_bytes(self.done)} in {elapsed:.1f} s "
                f"({human_bytes(got / max(elapsed, 1e-9))}/s)")
        if self.tty:
            sys.stderr.write("\r\033[K")
        say(line)


def say(message):
    print(f"[sparsetrain] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Downloading with resume


def open_url(url, offset):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset > 0:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416:  # the range starts at or past the end: the .part is already whole
            return None
        raise run_error(f"cannot download {url}: HTTP {e.code} {e.reason}",
                        "check the URL (--url-base) or try again later")
    except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise run_error(f"cannot download {url}: {reason}",
                        "check the network; or download the files yourself and pass --from DIR")


def download(url, part, expected_size, progress_mode):
    """Appends to `part` until the server's whole body is there. A server that ignores Range
    (HTTP 200) restarts the file; a short body (connection dropped) raises with the .part kept."""
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    if expected_size is not None and offset > expected_size:
        os.unlink(part)
        offset = 0
    if expected_size is not None and offset == expected_size:
        return
    response = open_url(url, offset)
    if response is None:
        return
    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None else None
        if status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise run_error(f"{url}: the server answered range {offset}- with "
                                f"'{content_range}'", "delete the .part file and fetch again")
            total = int(content_range.rsplit("/", 1)[1]) if "/" in content_range and \
                not content_range.endswith("/*") else None
            mode = "ab"
        else:
            offset, total, mode = 0, length, "wb"
        if expected_size is not None and total is not None and total != expected_size:
            raise run_error(f"{url} has {total} bytes, expected {expected_size}",
                            "the server holds another version of the file; pass --sha256 "
                            f"{os.path.basename(part)[:-5]}=HEX if you trust it")
        if offset:
            say(f"resuming {os.path.basename(part)[:-5]} at {human_bytes(offset)}")
        progress = Progress(progress_mode, os.path.basename(part)[:-5], total, start_at=offset)
        received = 0
        with open(part, mode) as out:
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    progress.advance(len(chunk))
            except (http.client.IncompleteRead, ConnectionError, socket.timeout) as e:
                raise run_error(f"download of {url} broke off after {offset + received} bytes: "
                                f"{e}", "run the same command again: it resumes from there")
            finally:
                out.flush()
                os.fsync(out.fileno())
        if length is not None and received < length:
            raise run_error(f"download of {url} broke off after {offset + received} of "
                            f"{offset + length} bytes", "run the same command again: it resumes "
                            "from there")
        progress.finish()


def gather_sources(dataset, expected, args, workdir):
    """Puts every source file, checked, at workdir/FILE.part (downloaded) or returns the paths in
    --from. Returns {file: (path, sha256)}."""
    found = {}
    if args.from_dir:
        if not os.path.isdir(args.from_dir):
            raise usage_error(f"--from '{args.from_dir}' is not a directory",
                              f"pass the folder that holds {dataset.files[0].name} and the rest")
        for f in dataset.files:
            path = os.path.join(args.from_dir, f.name)
            if not os.path.isfile(path):
                raise usage_error(f"--from '{args.from_dir}' has no {f.name}",
                                  f"{dataset.name} needs "
                                  f"{', '.join(g.name for g in dataset.files)} in that folder")
        for f in dataset.files:
            path = os.path.join(args.from_dir, f.name)
            found[f.name] = (path, verify_file(path, f.name, expected[f.name], False))
        return found
    base = (args.url_base or dataset.url_base).rstrip("/")
    for f in dataset.files:
        part = os.path.join(workdir, f.name + ".part")
        want = expected[f.name]
        have = os.path.getsize(part) if os.path.exists(part) else 0
        # An unknown size: a .part whose checksum already matches is whole (nothing to resume).
        whole = False
        if have and want.size is None and (want.sha256 or want.git_blob_sha1):
            try:
                sha = verify_file(part, f.name, want, True)
                whole = True
            except CliError:
                pass
        if not whole:
            download(f"{base}/{f.name}", part, want.size, args.progress)
            try:
                sha = verify_file(part, f.name, want, True)
            except CliError:
                os.unlink(part)
                raise
        found[f.name] = (part, sha)
    return found


# ---------------------------------------------------------------------------------------------
# Planetoid: pickles -> OGB raw


class PlanetoidUnpickler(pickle.Unpickler):
    """Only the classes the Planetoid pickles are made of: a file that names anything else is
    refused, so a foreign pickle runs no code."""

    def find_class(self, module, name):
        import numpy as np
        import scipy.sparse
        allowed = {
            ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
            ("collections", "defaultdict"): __import__("collections").defaultdict,
            ("collections", "OrderedDict"): __import__("collections").OrderedDict,
            ("__builtin__", "list"): list, ("builtins", "list"): list,
            ("__builtin__", "dict"): dict, ("builtins", "dict"): dict,
            ("__builtin__", "set"): set, ("builtins", "set"): set,
            ("__builtin__", "bytes"): bytes, ("builtins", "bytes"): bytes,
            ("_codecs", "encode"): __import__("codecs").encode,  # bytes in Python 3's protocol 2
        }
        for sparse_module in ("scipy.sparse.csr", "scipy.sparse._csr", "scipy.sparse"):
            allowed[(sparse_module, "csr_matrix")] = scipy.sparse.csr_matrix
        for sparse_module in ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse"):
            allowed[(sparse_module, "csc_matrix")] = scipy.sparse.csc_matrix
        if (module, name) in allowed:
            return allowed[(module, name)]
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and \
                name in ("_reconstruct", "scalar"):
            multiarray = getattr(getattr(np, "_core", None), "multiarray", None)
            if multiarray is None:
                multiarray = np.core.multiarray
            return getattr(multiarray, name)
        raise pickle.UnpicklingError(f"refusing global '{module}.{name}'")


def load_pickle(path):
    try:
        with open(path, "rb") as f:
            return PlanetoidUnpickler(f, encoding="latin1").load()
    except Exception as e:  # UnpicklingError, EOFError, ValueError, ...: all mean a bad file
        raise usage_error(f"'{path}' is not a Planetoid pickle: {type(e).__name__}: {e}",
                          "use the original ind.* files (github.com/kimiyoung/planetoid, data/)")


def dense(matrix, path):
    import numpy as np
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    array = np.asarray(matrix)
    if array.ndim != 2:
        raise usage_error(f"'{path}' holds a {array.ndim}-d array, not a matrix",
                          "use the original ind.* files")
    return array


def read_test_index(path):
    import numpy as np
    try:
        with open(path) as f:
            values = [int(line) for line in f if line.strip()]
    except (ValueError, UnicodeDecodeError) as e:
        raise usage_error(f"'{path}' is not one node id per line: {e}",
                          "use the original ind.*.test.index file")
    if not values:
        raise usage_error(f"'{path}' is empty", "use the original ind.*.test.index file")
    return np.array(values, dtype=np.int64)


def planetoid_graph(name, paths):
    """The arrays PyG's read_planetoid_data builds, from the eight files at `paths[part]`."""
    import numpy as np
    x, tx, allx = (dense(load_pickle(paths[p]), paths[p]).astype(np.float32)
                   for p in ("x", "tx", "allx"))
    y, ty, ally = (dense(load_pickle(paths[p]), paths[p]) for p in ("y", "ty", "ally"))
    graph = load_pickle(paths["graph"])
    test_index = read_test_index(paths["test.index"])
    if not isinstance(graph, dict):
        raise usage_error(f"'{paths['graph']}' holds a {type(graph).__name__}, not the "
                          "adjacency dict", "use the original ind.*.graph file")
    for a, b in ((x, y), (tx, ty), (allx, ally)):
        if a.shape[0] != b.shape[0]:
            raise usage_error(f"ind.{name}: {a.shape[0]} feature rows but {b.shape[0]} label rows",
                              "the files do not belong together")
    if not (x.shape[1] == tx.shape[1] == allx.shape[1]) or \
            not (y.shape[1] == ty.shape[1] == ally.shape[1]):
        raise usage_error(f"ind.{name}: the feature or label widths differ between files",
                          "the files do not belong together")
    sorted_test = np.sort(test_index)
    low, high = int(sorted_test[0]), int(sorted_test[-1])
    if len(np.unique(test_index)) != len(test_index) or low != allx.shape[0]:
        raise usage_error(f"ind.{name}.test.index does not follow allx (first id {low}, allx has "
                          f"{allx.shape[0]} rows) or repeats an id",
                          "the files do not belong together")
    if high - low + 1 != tx.shape[0]:
        # CiteSeer: some test-range nodes have no test row; they get all-zero rows (as PyG does).
        if tx.shape[0] != len(test_index) or high - low + 1 < tx.shape[0]:
            raise usage_error(f"ind.{name}: tx has {tx.shape[0]} rows for test ids {low}..{high}",
                              "the files do not belong together")
        tx_ext = np.zeros((high - low + 1, tx.shape[1]), dtype=tx.dtype)
        ty_ext = np.zeros((high - low + 1, ty.shape[1]), dtype=ty.dtype)
        tx_ext[sorted_test - low] = tx
        ty_ext[sorted_test - low] = ty
        tx, ty = tx_ext, ty_ext
    features = np.vstack([allx, tx])
    features[test_index] = features[sorted_test]
    labels = np.argmax(np.vstack([ally, ty]), axis=1).astype(np.int64)  # first max, as torch.max
    labels[test_index] = labels[sorted_test]
    num_nodes = features.shape[0]
    rows, cols = [], []
    try:
        for key, neighbours in graph.items():
            rows.extend([int(key)] * len(neighbours))
            cols.extend(int(v) for v in neighbours)
    except (TypeError, ValueError) as e:
        raise usage_error(f"'{paths['graph']}' is not a dict of node id -> neighbour ids: {e}",
                          "use the original ind.*.graph file")
    rows, cols = np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)
    if len(rows) and (min(rows.min(), cols.min()) < 0 or max(rows.max(), cols.max()) >= num_nodes):
        raise usage_error(f"'{paths['graph']}' has node ids outside 0..{num_nodes - 1}",
                          "the files do not belong together")
    keep = rows != cols  # remove_self_loops
    low_end, high_end = np.minimum(rows[keep], cols[keep]), np.maximum(rows[keep], cols[keep])
    pairs = np.unique(low_end * num_nodes + high_end)  # coalesce: sorted, duplicates merged
    edges = np.stack([pairs // num_nodes, pairs % num_nodes], axis=1)
    train = np.arange(y.shape[0], dtype=np.int64)
    valid = np.arange(y.shape[0], y.shape[0] + 500, dtype=np.int64)
    return {"features": features, "labels": labels, "edges": edges, "num_classes": ally.shape[1],
            "split": {"train": train, "valid": valid, "test": sorted_test}}


def gzip_bytes(text):
    """gzip member with a fixed header (no name, mtime 0, XFL 2 = best, OS 255 = unknown, as
    Python's GzipFile writes it), so the bytes do not depend on the Python version or the host."""
    data = text.encode("ascii")
    deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, 8,
                               zlib.Z_DEFAULT_STRATEGY)
    body = deflate.compress(data) + deflate.flush()
    header = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x02\xff"
    trailer = (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "little") + \
        (len(data) & 0xFFFFFFFF).to_bytes(4, "little")
    return header + body + trailer


def int_lines(values):
    return "".join(f"{int(v)}\n" for v in values)


def feature_lines(features):
    """One comma-separated row per node, each value the shortest decimal that reads back as the
    same float32 ('0', '1', '0.0123'). features: [num_nodes, num_features] float32, mostly 0."""
    import numpy as np
    stored = (features != 0) | np.signbit(features)  # -0.0 keeps its sign
    values, inverse = np.unique(features[stored], return_inverse=True)
    table = ["0"] + [np.format_float_positional(np.float32(v), unique=True, trim="-")
                     for v in values]
    index = np.zeros(features.shape, dtype=np.int64)
    index[stored] = inverse.reshape(-1) + 1
    if all(len(t) == 1 for t in table):  # 0/1 features (Cora, CiteSeer): one byte per value
        chars = np.frombuffer("".join(table).encode("ascii"), dtype=np.uint8)[index]
        out = np.full((features.shape[0], 2 * features.shape[1]), ord(","), dtype=np.uint8)
        out[:, 0::2] = chars
        out[:, -1] = ord("\n")
        return out.tobytes().decode("ascii")
    table = np.array(table, dtype=object)
    return "".join(",".join(row) + "\n" for row in table[index])


def planetoid_outputs(dataset, sources, staging):
    """Writes the converted graph's files into `staging`; returns the counts."""
    paths = {part: sources[f"ind.{dataset.name}.{part}"][0] for part in PLANETOID_PARTS}
    g = planetoid_graph(dataset.name, paths)
    n = g["features"].shape[0]
    files = {
        "raw/edge.csv.gz": "".join(f"{u},{v}\n" for u, v in g["edges"].tolist()),
        "raw/node-feat.csv.gz": feature_lines(g["features"]),
        "raw/node-label.csv.gz": int_lines(g["labels"]),
        "raw/num-node-list.csv.gz": f"{n}\n",
        "raw/num-edge-list.csv.gz": f"{len(g['edges'])}\n",
    }
    for part, ids in g["split"].items():
        files[f"split/{dataset.split}/{part}.csv.gz"] = int_lines(ids)
    for rel, text in files.items():
        path = os.path.join(staging, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(gzip_bytes(text))
    return Counts(n, len(g["edges"]), g["features"].shape[1], g["num_classes"],
                  *(len(g["split"][k]) for k in ("train", "valid", "test")))


# ---------------------------------------------------------------------------------------------
# OGB: archive -> OGB raw (extraction, the count files written where absent)


def gzip_line_count(path):
    count = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                count += chunk.count(b"\n")
    except (OSError, EOFError, zlib.error) as e:
        raise usage_error(f"'{path}' is not a whole gzip file: {e}", "fetch the archive again")
    return count


def read_single_int(path):
    try:
        with gzip.open(path, "rt") as f:
            return int(f.read().split()[0])
    except (OSError, EOFError, ValueError, IndexError, zlib.error) as e:
        raise usage_error(f"'{path}' is not one number: {e}", "fetch the archive again")


def ogb_outputs(dataset, sources, staging):
    archive = sources[dataset.files[0].name][0]
    top = dataset.archive_dir + "/"
    try:
        with zipfile.ZipFile(archive) as z:
            members = z.infolist()
            for m in members:
                parts = m.filename.replace("\\", "/").split("/")
                if m.filename.startswith("/") or ".." in parts:
                    raise usage_error(f"{dataset.files[0].name}: member '{m.filename}' would be "
                                      f"written outside {top}",
                                      "this is not OGB's archive; fetch it again")
            for m in members:
                if m.filename.startswith(top):  # anything beside it (__MACOSX/...) is not ours
                    z.extract(m, staging)  # CRC-checked while reading
    except zipfile.BadZipFile as e:
        raise usage_error(f"{dataset.files[0].name} is not a valid zip archive: {e}",
                          "fetch it again (--force)")
    extracted = os.path.join(staging, dataset.archive_dir)
    raw = os.path.join(extracted, "raw")
    need = ["raw/edge.csv.gz", "raw/node-feat.csv.gz", "raw/node-label.csv.gz"] + \
        [f"split/{dataset.split}/{p}.csv.gz" for p in ("train", "valid", "test")]
    for rel in need:
        if not os.path.isfile(os.path.join(extracted, rel)):
            raise usage_error(f"{dataset.files[0].name} has no {top}{rel}",
                              "this is not OGB's archive; fetch it again")
    nodes_file = os.path.join(raw, "num-node-list.csv.gz")
    edges_file = os.path.join(raw, "num-edge-list.csv.gz")
    if not os.path.exists(nodes_file):
        with open(nodes_file, "wb") as f:
            f.write(gzip_bytes(f"{gzip_line_count(os.path.join(raw, 'node-label.csv.gz'))}\n"))
    if not os.path.exists(edges_file):
        with open(edges_file, "wb") as f:
            f.write(gzip_bytes(f"{gzip_line_count(os.path.join(raw, 'edge.csv.gz'))}\n"))
    nodes, edges = read_single_int(nodes_file), read_single_int(edges_file)
    with gzip.open(os.path.join(raw, "node-feat.csv.gz"), "rt") as f:
        features = len(f.readline().split(","))
    splits = [gzip_line_count(os.path.join(extracted, f"split/{dataset.split}/{p}.csv.gz"))
              for p in ("train", "valid", "test")]
    # The folder the archive unpacked to becomes ROOT/NAME: move its content up one level.
    for entry in os.listdir(extracted):
        os.rename(os.path.join(extracted, entry), os.path.join(staging, entry))
    os.rmdir(extracted)
    return Counts(nodes, edges, features, dataset.counts.classes, *splits)


# ---------------------------------------------------------------------------------------------
# The dataset folder: marker, intact check, atomic replacement


def read_marker(target):
    try:
        with open(os.path.join(target, MARKER)) as f:
            marker = json.load(f)
        return marker if marker.get("schema") == MARKER_SCHEMA else None
    except (OSError, json.JSONDecodeError):
        return None


def check_intact(target, name):
    """'ok', 'absent', 'not ours' (a folder without our marker) or 'damaged: ...'."""
    if not os.path.exists(target):
        return "absent"
    marker = read_marker(target)
    if marker is None:
        return "not ours"
    if marker.get("name") != name:
        return f"damaged: the marker names '{marker.get('name')}'"
    for rel, info in marker.get("files", {}).items():
        path = os.path.join(target, rel)
        if not os.path.isfile(path):
            return f"damaged: {rel} is missing"
        if os.path.getsize(path) != info.get("bytes"):
            return f"damaged: {rel} has {os.path.getsize(path)} bytes, expected {info.get('bytes')}"
    return "ok"


def list_files(folder):
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in sorted(files):
            if f == MARKER:
                continue
            path = os.path.join(dirpath, f)
            out[os.path.relpath(path, folder)] = {"bytes": os.path.getsize(path)}
    return dict(sorted(out.items()))


def write_marker(staging, dataset, sources, counts, args, overrides):
    files = list_files(staging)
    if dataset.kind == "planetoid":  # small: hash them too (the ogb files are GBs)
        for rel in files:
            files[rel]["sha256"] = file_digests(os.path.join(staging, rel))[0]
    marker = {
        "schema": MARKER_SCHEMA, "schema_version": MARKER_VERSION, "name": dataset.name,
        "kind": dataset.kind, "split": dataset.split, "directed": dataset.directed,
        "counts": counts.__dict__,
        "sources": {name: {"sha256": sha, "bytes": os.path.getsize(path),
                           "checksum": "override" if name in overrides else "pinned"}
                    for name, (path, sha) in sources.items()},
        "from": os.path.abspath(args.from_dir) if args.from_dir else
        (args.url_base or dataset.url_base),
        "files": files, "licence": dataset.licence,
        "tool": "scripts/data_fetch.py",
        "fetched_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with open(os.path.join(staging, MARKER), "w") as f:
        json.dump(marker, f, indent=1)
        f.write("\n")


def replace_dir(staging, target):
    """Renames `staging` to `target`; an old `target` is moved aside first and removed after."""
    old = None
    if os.path.exists(target):
        old = os.path.join(os.path.dirname(target),
                           f".{os.path.basename(target)}.old-{os.getpid()}")
        os.rename(target, old)
    os.rename(staging, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def check_counts(dataset, counts, overridden):
    want = dataset.counts
    if counts == want:
        return
    got_text = ", ".join(f"{k} {v}" for k, v in counts.__dict__.items())
    want_text = ", ".join(f"{k} {v}" for k, v in want.__dict__.items())
    if overridden:
        say(f"{dataset.name}: counts differ from the pinned release ({want_text}); accepted "
            "because of --sha256")
        return
    raise run_error(f"{dataset.name}: the converted graph has {got_text}; expected {want_text}",
                    "report this: the pinned files convert to the pinned counts")


@contextlib.contextmanager
def root_lock(root):
    """One fetch at a time per ROOT (an advisory lock on the folder itself: nothing to clean up)."""
    fd = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another fetch in {root} to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_empty(workdir):
    """Removes ROOT/.downloads/NAME and ROOT/.downloads when nothing is left in them."""
    for folder in (workdir, os.path.dirname(workdir)):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def require_numpy_scipy():
    try:
        import numpy  # noqa: F401
        import scipy.sparse  # noqa: F401
    except ImportError as e:
        raise CliError(EXIT_ENVIRONMENT, f"the Planetoid conversion needs numpy and scipy: {e}",
                       "run with the project venv (.venv/bin/python; scripts/setup.sh installs "
                       "scripts/requirements.txt)")


def parse_overrides(items, dataset):
    names = {f.name for f in dataset.files}
    out = {}
    for item in items or []:
        file, sep, hex_digest = item.partition("=")
        hex_digest = hex_digest.strip().lower()
        if not sep or file not in names or len(hex_digest) != 64 or \
                any(c not in "0123456789abcdef" for c in hex_digest):
            raise usage_error(f"--sha256 '{item}' is not FILE=HEX for a file of {dataset.name}",
                              f"FILE is one of {', '.join(sorted(names))}; HEX 64 hex digits")
        out[file] = hex_digest
    return out


def fetch(args):
    dataset = find_dataset(args.name)
    overrides = parse_overrides(args.sha256, dataset)
    if args.url_base and args.from_dir:
        raise usage_error("--url-base and --from exclude each other",
                          "--from converts local files; --url-base picks a server to download "
                          "from")
    if dataset.kind == "planetoid":
        require_numpy_scipy()
    root = os.path.abspath(args.root)
    target = os.path.join(root, dataset.name)
    os.makedirs(root, exist_ok=True)
    status = check_intact(target, dataset.name)
    if status == "ok" and not args.force:
        c = read_marker(target)["counts"]
        say(f"{dataset.name}: already fetched and intact in {target} ({c['nodes']} nodes, "
            f"{c['edges']} edges); --force fetches it again")
        return
    if status == "not ours" and not args.force:
        raise usage_error(f"'{target}' exists and was not written by data fetch",
                          "move it away, pass another --root, or --force to replace it")
    if status.startswith("damaged"):
        say(f"{dataset.name}: {target} is {status}; fetching it again")
    with root_lock(root):
        workdir = os.path.join(root, ".downloads", dataset.name)
        if not args.from_dir:
            os.makedirs(workdir, exist_ok=True)
        expected = expectations(dataset, overrides)
        try:
            sources = gather_sources(dataset, expected, args, workdir)
        except BaseException:
            remove_empty(workdir)  # a .part stays (for resume); an empty folder does not
            raise
        for entry in os.listdir(root):  # left by a fetch that was killed (we hold the lock)
            if entry.startswith((f".{dataset.name}.tmp-", f".{dataset.name}.old-")):
                shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
        staging = os.path.join(root, f".{dataset.name}.tmp-{os.getpid()}")
        os.makedirs(staging)
        try:
            if dataset.kind == "planetoid":
                counts = planetoid_outputs(dataset, sources, staging)
            else:
                counts = ogb_outputs(dataset, sources, staging)
            check_counts(dataset, counts, bool(overrides))
            write_marker(staging, dataset, sources, counts, args, overrides)
            replace_dir(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if not args.from_dir:
            shutil.rmtree(workdir, ignore_errors=True)
            remove_empty(workdir)
    hints = "; ".join(dataset.notes)
    say(f"{dataset.name}: {counts.nodes} nodes, {counts.edges} "
        f"{'directed' if dataset.directed else 'undirected'} edges, {counts.features} features, "
        f"{counts.classes} classes, split/{dataset.split} {counts.train}/{counts.valid}/"
        f"{counts.test} -> {target}" + (f" ({hints})" if hints else ""))


# ---------------------------------------------------------------------------------------------
# list


def part_bytes(root, name):
    folder = os.path.join(root, ".downloads", name)
    if not os.path.isdir(folder):
        return 0
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
               if f.endswith(".part"))


def list_datasets(args):
    root = os.path.abspath(args.root)
    rows = []
    for d in DATASETS.values():
        target = os.path.join(root, d.name)
        rows.append({
            "name": d.name, "status": check_intact(target, d.name), "path": target,
            "partial_download_bytes": part_bytes(root, d.name),
            "download_bytes": sum(f.size or 0 for f in d.files),
            "download_bytes_complete": all(f.size is not None for f in d.files),
            "counts": d.counts.__dict__, "split": d.split, "directed": d.directed,
            "url": f"{d.url_base}/{d.files[0].name}" if len(d.files) == 1 else
            f"{d.url_base}/ind.{d.name}.*",
            "files": [{"name": f.name, "bytes": f.size, "sha256": f.sha256,
                       "git_blob_sha1": f.git_blob_sha1} for f in d.files],
            "checksum_source": d.checksum_source, "licence": d.licence, "source": d.source,
            "notes": list(d.notes),
        })
    others = []
    if os.path.isdir(root):
        for entry in sorted(os.listdir(root)):
            path = os.path.join(root, entry)
            if entry.startswith(".") or entry in DATASETS:
                continue
            if os.path.isfile(os.path.join(path, "raw", "num-node-list.csv.gz")):
                others.append(path)
    if args.json:
        json.dump({"schema": "sparsetrain.data_list", "schema_version": 1, "root": root,
                   "datasets": rows, "other_graphs": others}, sys.stdout, indent=1)
        print()
        return
    print(f"datasets under {root}:")
    print(f"  {'name':<14} {'status':<10} {'nodes':>9} {'edges':>10} {'feat':>5} {'cls':>4}  "
          f"{'download':>10}  licence")
    for r in rows:
        c = r["counts"]
        status = {"ok": "fetched", "absent": "-"}.get(r["status"], r["status"])
        size = human_bytes(r["download_bytes"]) + ("" if r["download_bytes_complete"] else "+")
        print(f"  {r['name']:<14} {status:<10} {c['nodes']:>9} {c['edges']:>10} "
              f"{c['features']:>5} {c['classes']:>4}  {size:>10}  {r['licence'].split(' (')[0]}")
        if r["partial_download_bytes"]:
            print(f"  {'':<14} partial download: {human_bytes(r['partial_download_bytes'])} "
                  "(fetch resumes it)")
    for path in others:
        print(f"  other graph on disk: {path}")
    print("fetch one with: sparsetrain data fetch NAME   (or --from DIR with its files; "
          "details: data list --json)")


# ---------------------------------------------------------------------------------------------
# Command line


EPILOG = """examples:
  sparsetrain data fetch cora
  sparsetrain data fetch citeseer --from ~/planetoid/data   # the ind.citeseer.* files, offline
  sparsetrain data fetch ogbn-arxiv --root /mnt/nvme/graphs
  sparsetrain data list --json

exit status: 0 ok, 1 run failed (network, checksum mismatch), 2 usage or bad input,
3 numpy/scipy missing, 130 interrupted (a partial download is kept and resumed next time)"""


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors in our one-line form (exit 2)."""

    def error(self, message):
        sys.exit(fail(EXIT_USAGE, message, f"see {self.prog} --help"))


def build_parser():
    parser = Parser(
        prog="sparsetrain data", description="Fetch public graphs into ROOT/NAME in the OGB raw "
        "layout, checked against pinned checksums.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{fetch,list}", parser_class=Parser)
    sub.required = True
    f = sub.add_parser("fetch", help="download (or take --from), check and convert one dataset",
                       description="Download NAME's files (resuming a partial download), check "
                       "each against its pinned SHA-256,\nconvert, and write ROOT/NAME. Already "
                       "fetched and intact: says so and does nothing.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("name", metavar="NAME", help=f"one of: {', '.join(DATASETS)}")
    where = f.add_argument_group("where")
    where.add_argument("--root", default=DEFAULT_ROOT,
                       help="folder that receives ROOT/NAME (default: data/ in the checkout)")
    where.add_argument("--from", dest="from_dir", metavar="DIR",
                       help="convert the files in DIR instead of downloading (ind.NAME.* for "
                            "Planetoid, the .zip for OGB); still checked against the pins")
    where.add_argument("--url-base", metavar="URL",
                       help="download URL/FILE instead of the dataset's own location (a mirror)")
    check = f.add_argument_group("checks and output")
    check.add_argument("--sha256", action="append", metavar="FILE=HEX",
                       help="accept FILE with this SHA-256 instead of the pinned one (for a mirror "
                            "that serves other bytes; the size pin is dropped and the counts are "
                            "only reported); repeatable")
    check.add_argument("--force", action="store_true",
                       help="fetch and convert again even when ROOT/NAME is intact, or replace "
                            "a folder data fetch did not write")
    check.add_argument("--progress", default="auto", choices=["auto", "always", "never"],
                       help="download progress: a bar on a terminal, a line every 5 s otherwise "
                            "(auto, the default), always the bar, or never")
    ls = sub.add_parser("list", help="the known datasets and what is on disk",
                        description="The known datasets (counts, download size, licence) and "
                        "their state under ROOT\n(fetched, -, damaged, not ours), with any other "
                        "graph folders found there.", epilog=EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.add_argument("--root", default=DEFAULT_ROOT,
                    help="folder to look in (default: data/ in the checkout)")
    ls.add_argument("--json", action="store_true",
                    help="JSON on stdout: every file's URL, size, checksum, licence and source")
    return parser


def fail(code, message, hint):
    print(f"sparsetrain: error: {message}", file=sys.stderr)
    if hint:
        print(f"  hint: {hint}", file=sys.stderr)
    return code


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.command == "fetch":
            fetch(args)
        else:
            list_datasets(args)
        return EXIT_OK
    except CliError as e:
        return fail(e.code, str(e), e.hint)
    except KeyboardInterrupt:
        return fail(EXIT_INTERRUPTED, "interrupted", "run the same command again: a partial "
                    "download resumes, nothing else was written")
    except OSError as e:  # disk full, permissions: the run failed, nothing half-written
        return fail(EXIT_FAILED, f"{e.filename or ''}: {e.strerror or e}".lstrip(": "),
                    "check the free space and permissions of --root")
    except Exception:  # a bug: say where
        import traceback
        traceback.print_exc()
        return fail(EXIT_INTERNAL, "internal error in scripts/data_fetch.py (traceback above)",
                    "please report it with the command line")


if __name__ == "__main__":
    sys.exit(main())
