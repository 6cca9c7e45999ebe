// `sparsetrain teddy run` as a user sees it: a short run on the embedded dataset writes a record
// with the requested levels; bad input exits 2 with a one-line error and a hint.
#include <doctest/doctest.h>

#include <cmath>
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
  const std::string pubmed = std::string(SPARSETRAIN_SHARED_DATA) + "/pubmed";
  if (std::filesystem::exists(pubmed)) {
    r = run_process(SPARSETRAIN_BINARY, {"teddy", "run", "--graph", pubmed, "--levels", "1"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("feature") != std::string::npos);
  }
}
