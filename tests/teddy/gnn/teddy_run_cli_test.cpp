// `sparsetrain teddy run` as a user sees it: a short run on the embedded dataset writes a record
// with the requested levels; bad input exits 2 with a one-line error and a hint.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/process.h"

using sparsetrain::test::run_process;

TEST_CASE("teddy run on the embedded dataset reports each level against dense") {
  const auto r = run_process(
      SPARSETRAIN_BINARY, {"teddy", "run", "--epochs", "3", "--hidden", "16", "--graph-sparsity",
                           "0.1", "--weight-sparsity", "0.5", "--progress", "never", "--out", "-"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto rec = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  const auto& m = rec["metrics"];
  CHECK(m["method"] == "teddy");
  REQUIRE(m["levels"].size() == 1);
  const double edges = m["edges"].get<double>();
  CHECK(m["levels"][0]["graph_sparsity"].get<double>() ==
        doctest::Approx(std::floor(0.1 * edges) / edges));
  CHECK(m["levels"][0]["weight_sparsity"].get<double>() == doctest::Approx(0.5).epsilon(1e-4));
  CHECK(m["levels"][0]["macs_vs_dense"].get<double>() < 1.0);
  CHECK(r.out.find("dense") != std::string::npos);
}

TEST_CASE("teddy run refuses unpaired sparsities, mixed level flags and graphs without features") {
  auto r = run_process(SPARSETRAIN_BINARY, {"teddy", "run", "--graph-sparsity", "0.1"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("hint:") != std::string::npos);
  r = run_process(SPARSETRAIN_BINARY, {"teddy", "run", "--levels", "5", "--graph-sparsity", "0.1",
                                       "--weight-sparsity", "0.1"});
  CHECK(r.exit_code == 2);
  r = run_process(SPARSETRAIN_BINARY, {"teddy", "run", "--levels", "5,x"});
  CHECK(r.exit_code == 2);
  // CLI11 reads '' as 0 for a number: an empty value is refused, not run as sparsity 0.
  r = run_process(SPARSETRAIN_BINARY,
                  {"teddy", "run", "--graph-sparsity", "", "--weight-sparsity", "0"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--graph-sparsity: an empty value") != std::string::npos);
  const std::string pubmed = std::string(SPARSETRAIN_SHARED_DATA) + "/pubmed";
  if (std::filesystem::exists(pubmed)) {
    r = run_process(SPARSETRAIN_BINARY, {"teddy", "run", "--graph", pubmed, "--levels", "1"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("feature") != std::string::npos);
  }
}

TEST_CASE("teddy run refuses a split that trains on test nodes or on nothing, before training") {
  const std::string cora = std::string(SPARSETRAIN_SHARED_DATA) + "/cora";
  if (!std::filesystem::exists(cora)) {
    MESSAGE("skipped: no " << cora);
    return;
  }
  namespace fs = std::filesystem;
  const fs::path root = fs::temp_directory_path() / ("st-split-" + std::to_string(::getpid()));
  struct Case {
    std::string name, command, expect;
  };
  const std::vector<Case> cases = {
      {"overlap", "zcat train.csv.gz | gzip > test.csv.gz", "puts node"},
      {"empty", "printf '' | gzip > train.csv.gz", "has an empty train part"},
      {"twice", "(zcat valid.csv.gz; zcat valid.csv.gz | head -1) | gzip > v && mv v valid.csv.gz",
       "twice in valid"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const fs::path dir = root / c.name;
    fs::remove_all(dir);
    fs::create_directories(root);
    fs::copy(cora, dir, fs::copy_options::recursive);
    for (const auto& entry : fs::recursive_directory_iterator(dir))
      fs::permissions(entry.path(), fs::perms::owner_write, fs::perm_options::add);
    const std::string edit = "cd '" + (dir / "split" / "public").string() + "' && " + c.command;
    REQUIRE(std::system(edit.c_str()) == 0);
    auto r =
        run_process(SPARSETRAIN_BINARY, {"teddy", "run", "--graph", dir.string(), "--epochs", "1"});
    CAPTURE(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("split 'public' ") != std::string::npos);
    CHECK(r.err.find(c.expect) != std::string::npos);
    CHECK(r.err.find(" runs") == std::string::npos);  // no progress bar: nothing trained
  }
  fs::remove_all(root);
}

namespace {

// A tiny ogbn-arxiv as OGB's NodePropPredDataset leaves it on disk (ROOT/ogbn_arxiv: raw/ with
// directed citations and node_year, split/time, processed/, mapping/, RELEASE_v1.txt), written
// with gzip(1) as OGB's files are. 12 nodes, 2 classes, 4 features; 14 citations, two pairs of
// which cite each other (0↔1, 3↔4).
std::filesystem::path write_ogb_arxiv(const std::filesystem::path& root) {
  namespace fs = std::filesystem;
  const fs::path d = root / "ogbn_arxiv";
  fs::remove_all(d);
  for (const char* sub : {"raw", "split/time", "processed", "mapping"})
    fs::create_directories(d / sub);
  auto gz = [](const fs::path& path, const std::string& text) {
    const std::string plain = path.string().substr(0, path.string().size() - 3);
    FILE* f = std::fopen(plain.c_str(), "w");
    std::fputs(text.c_str(), f);
    std::fclose(f);
    REQUIRE(std::system(("gzip -nf '" + plain + "'").c_str()) == 0);
  };
  gz(d / "raw/edge.csv.gz",
     "1,0\n2,0\n2,1\n3,2\n4,3\n5,4\n6,5\n7,6\n8,7\n9,8\n10,9\n0,1\n3,4\n11,10\n");
  gz(d / "raw/num-node-list.csv.gz", "12\n");
  gz(d / "raw/num-edge-list.csv.gz", "14\n");
  std::string feat, label, year;
  for (int v = 0; v < 12; ++v) {
    feat += std::to_string(v % 3) + ",0.5," + std::to_string(v % 2) + ",1\n";
    label += std::to_string(v % 2) + "\n";
    year += std::to_string(2010 + v) + "\n";
  }
  gz(d / "raw/node-feat.csv.gz", feat);
  gz(d / "raw/node-label.csv.gz", label);
  gz(d / "raw/node_year.csv.gz", year);
  gz(d / "split/time/train.csv.gz", "0\n1\n2\n3\n4\n5\n");
  gz(d / "split/time/valid.csv.gz", "6\n7\n8\n");
  gz(d / "split/time/test.csv.gz", "9\n10\n11\n");
  std::fclose(std::fopen((d / "RELEASE_v1.txt").c_str(), "w"));
  std::fclose(std::fopen((d / "processed/geometric_data_processed.pt").c_str(), "w"));
  return d;
}

}  // namespace

TEST_CASE(
    "an ogbn-arxiv directory as OGB leaves it trains with --symmetrize on its time split, "
    "and without it stops naming the edges that lack their reverse") {
  const auto root =
      std::filesystem::temp_directory_path() / ("st-ogb-" + std::to_string(::getpid()));
  const std::string dir = write_ogb_arxiv(root).string();
  auto r = run_process(SPARSETRAIN_BINARY, {"teddy", "run", "--graph", dir, "--epochs", "2"});
  INFO(r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("lists directed edges (ogbn-arxiv: OGB's add_inverse_edge is False): 10 of its "
                   "14 edges have no reverse") != std::string::npos);
  CHECK(r.err.find("--symmetrize") != std::string::npos);
  r = run_process(SPARSETRAIN_BINARY,
                  {"teddy", "run", "--graph", dir, "--symmetrize", "--epochs", "3", "--hidden", "8",
                   "--model", "sage", "--levels", "1", "--progress", "never", "--out", "-"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto rec = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  CHECK(rec["metrics"]["split"] == "time");
  CHECK(rec["metrics"]["edges"] == 14 - 2);  // two citations answered: 0↔1 and 3↔4 merge
  std::filesystem::remove_all(root);
}
