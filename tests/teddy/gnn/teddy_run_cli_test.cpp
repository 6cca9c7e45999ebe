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
