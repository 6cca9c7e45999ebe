// What a user sees from `graph generate`, `graph stats` and `teddy prune`: reproducible records,
// exact pruned counts, and malformed input answered by exit 2 and a one-line error.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/cli_support.h"

using sparsetrain::test::run_sparsetrain;
namespace fs = std::filesystem;
using sparsetrain::test::read_bytes;
using sparsetrain::test::read_json;

namespace {

fs::path scratch() { return sparsetrain::test::scratch_dir("st-teddy-cli"); }

void write_gz(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, text.data(), static_cast<unsigned>(text.size()));
  gzclose(f);
}

}  // namespace

TEST_CASE(
    "graph generate with the same seed twice gives the same record (without 'run') and bytes") {
  const fs::path dir = scratch() / "csbm";
  std::vector<std::string> args = {"graph",  "generate",    "csbm",        "--feature-dim",
                                   "8",      "--overwrite", "--out-graph", dir.string(),
                                   "--seed", "5",           "--out"};
  auto a = run_sparsetrain([&] {
    auto v = args;
    v.push_back((scratch() / "a.json").string());
    return v;
  }());
  REQUIRE(a.exit_code == 0);
  const std::string edges_a = read_bytes(dir / "raw" / "edge.csv.gz");
  const std::string feat_a = read_bytes(dir / "raw" / "node-feat.csv.gz");
  auto b = run_sparsetrain([&] {
    auto v = args;
    v.push_back((scratch() / "b.json").string());
    return v;
  }());
  REQUIRE(b.exit_code == 0);
  auto ra = read_json(scratch() / "a.json");
  auto rb = read_json(scratch() / "b.json");
  CHECK(ra["metrics"]["graph"]["edges"] == 5278);
  ra.erase("run");
  rb.erase("run");
  CHECK(ra.dump() == rb.dump());
  CHECK(read_bytes(dir / "raw" / "edge.csv.gz") == edges_a);
  CHECK(read_bytes(dir / "raw" / "node-feat.csv.gz") == feat_a);
  // A different seed gives a different graph.
  args[args.size() - 2] = "6";
  auto c = run_sparsetrain([&] {
    auto v = args;
    v.push_back((scratch() / "c.json").string());
    return v;
  }());
  REQUIRE(c.exit_code == 0);
  CHECK(read_bytes(dir / "raw" / "edge.csv.gz") != edges_a);
}

TEST_CASE("teddy prune --levels paper writes 20 nested levels with exact edge counts") {
  const fs::path g = scratch() / "pl";
  REQUIRE(run_sparsetrain({"graph", "generate", "powerlaw", "--edges", "20000", "--out-graph",
                           g.string(), "--seed", "1"})
              .exit_code == 0);
  const fs::path out = scratch() / "pl-levels";
  auto r =
      run_sparsetrain({"teddy", "prune", "--graph", g.string(), "--levels", "paper", "--out-graph",
                       out.string(), "--out", (scratch() / "prune.json").string()});
  CHECK(r.exit_code == 0);
  const auto rec = read_json(scratch() / "prune.json");
  REQUIRE(rec["metrics"]["levels"].size() == 20);
  for (int k = 1; k <= 20; ++k) {
    const auto& level = rec["metrics"]["levels"][k - 1];
    const auto pruned = static_cast<std::uint64_t>(std::floor((1 - std::pow(0.95, k)) * 20000));
    CAPTURE(k);
    CHECK(level["edges_pruned"].get<std::uint64_t>() == pruned);
    CHECK(level["edges_after"].get<std::uint64_t>() == 20000 - pruned);
  }
  CHECK(fs::exists(out / "level-20" / "raw" / "edge.csv.gz"));
  auto s = run_sparsetrain(
      {"graph", "stats", (out / "level-01").string(), "--out", (scratch() / "s.json").string()});
  CHECK(s.exit_code == 0);
  CHECK(read_json(scratch() / "s.json")["metrics"]["graph"]["edges"] ==
        rec["metrics"]["levels"][0]["edges_after"]);
}

TEST_CASE("malformed graph input exits 2 with a one-line error naming file and line") {
  const fs::path g = scratch() / "bad";
  write_gz(g / "raw" / "num-node-list.csv.gz", "3\n");
  write_gz(g / "raw" / "edge.csv.gz", "0,1\n1,two\n");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"graph", "stats", g.string()},
        std::vector<std::string>{"teddy", "prune", "--graph", g.string(), "--graph-sparsity",
                                 "0.5"}}) {
    auto r = run_sparsetrain(args);
    CHECK(r.exit_code == 2);
    CHECK(r.err.rfind("sparsetrain: error: ", 0) == 0);
    CHECK(r.err.find("edge.csv.gz:2") != std::string::npos);
    CHECK(r.err.find("hint: ") != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 2);  // error line + hint line
    CHECK(r.out.empty());
  }
  auto r = run_sparsetrain({"teddy", "prune", "--graph", g.string()});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--graph-sparsity") != std::string::npos);
}

TEST_CASE("pruning the shared Cora graph to 30 % removes exactly floor(0.3 * 5278) pairs") {
  const std::string cora = std::string(SPARSETRAIN_SHARED_DATA) + "/cora";
  if (!fs::exists(cora + "/raw/edge.csv.gz")) return;
  const fs::path out = scratch() / "cora30";
  auto r =
      run_sparsetrain({"teddy", "prune", "--graph", cora, "--graph-sparsity", "0.3", "--out-graph",
                       out.string(), "--out", (scratch() / "cora.json").string()});
  REQUIRE(r.exit_code == 0);
  const auto rec = read_json(scratch() / "cora.json");
  CHECK(rec["metrics"]["edges_before"] == 5278);
  CHECK(rec["metrics"]["edges_after"] == 5278 - 1583);
  CHECK(rec["metrics"]["before"]["connected_components"] == 78);
  CHECK(fs::exists(out / "raw" / "node-feat.csv.gz"));
  CHECK(fs::exists(out / "split" / "public" / "train.csv.gz"));
}

TEST_CASE("a disk fault while writing --out-graph or the record: one line, exit 1, nothing half") {
  // SPARSETRAIN_IO_FAULT (common/fault_injection.h) through the CLI; the sweep over every index
  // is graph_io_test's and atomic_file_test's.
  const std::string cora = std::string(SPARSETRAIN_SHARED_DATA) + "/cora";
  if (!fs::exists(cora + "/raw/edge.csv.gz")) return;
  const fs::path dir = scratch() / "faulty";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path out = dir / "cora30", record = dir / "prune.json";
  std::ofstream(record) << "the previous record";
  const std::vector<std::string> args = {
      "teddy", "prune",       "--graph",    cora,    "--graph-sparsity",
      "0.3",   "--out-graph", out.string(), "--out", record.string()};
  ::setenv("SPARSETRAIN_IO_FAULT", "file-write:2:enospc", 1);  // the graph's second file
  const auto graph_failed = run_sparsetrain(args);
  std::ofstream(record) << "the previous record";  // the failed run wrote its record over it
  ::setenv("SPARSETRAIN_IO_FAULT", "file-write:1:short", 1);  // without --out-graph: the record
  std::vector<std::string> record_only(args.begin(), args.begin() + 6);
  record_only.insert(record_only.end(), {"--out", record.string()});
  const auto record_failed = run_sparsetrain(record_only);
  ::unsetenv("SPARSETRAIN_IO_FAULT");
  INFO(graph_failed.err);
  CHECK(graph_failed.exit_code == 1);
  CHECK(graph_failed.err.find("error: cannot write '" + out.string() + ".tmp.") !=
        std::string::npos);
  CHECK(graph_failed.err.find(std::strerror(ENOSPC)) != std::string::npos);
  CHECK(graph_failed.err.find("error:") == graph_failed.err.rfind("error:"));  // one error line
  CHECK_FALSE(fs::exists(out));
  INFO(record_failed.err);
  CHECK(record_failed.exit_code == 1);
  CHECK(record_failed.err.find("cannot write '" + record.string() + "'") != std::string::npos);
  CHECK(read_bytes(record) == "the previous record");
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++entries;
  CHECK(entries == 1);  // the old record only: no temporary file or tree
}

TEST_CASE(
    "--mem picks the out-of-core prune when memory would not fit, with the same edges; a "
    "--mem too small even for it is exit 2 with nothing written") {
  const fs::path dir = scratch() / "mem";
  fs::remove_all(dir);
  fs::create_directories(dir);
  REQUIRE(run_sparsetrain({"graph", "generate", "powerlaw", "--edges", "200000", "--out-graph",
                           (dir / "g").string()})
              .exit_code == 0);
  const std::vector<std::string> prune = {
      "teddy", "prune", "--graph", (dir / "g").string(), "--graph-sparsity", "0.4"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = prune;
    args.insert(args.end(), extra.begin(), extra.end());
    return run_sparsetrain(args);
  };
  REQUIRE(with({"--out-graph", (dir / "mem").string()}).exit_code == 0);
  const auto streamed = with(
      {"--out-graph", (dir / "ooc").string(), "--mem", "4MiB", "--out", (dir / "r.json").string()});
  INFO(streamed.err);
  REQUIRE(streamed.exit_code == 0);
  CHECK(streamed.err.find("pruning out of core") != std::string::npos);
  CHECK(read_json(dir / "r.json")["metrics"]["mode"] == "out-of-core");
  CHECK(read_bytes(dir / "mem/raw/edge.csv.gz") == read_bytes(dir / "ooc/raw/edge.csv.gz"));
  const auto tiny = with({"--out-graph", (dir / "none").string(), "--mem", "64KiB"});
  CHECK(tiny.exit_code == 2);
  CHECK(tiny.err.find("too small even for the out-of-core prune") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "none"));
  const auto sym = with({"--out-of-core", "--symmetrize"});
  CHECK(sym.exit_code == 2);
  CHECK(sym.err.find("--symmetrize needs the in-memory prune") != std::string::npos);
}
