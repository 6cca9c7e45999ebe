// What a user sees from the command line: help, version, exit codes, --config with flag override,
// and run records that are valid JSON and reproducible.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/cli_support.h"

using sparsetrain::test::run_sparsetrain;
namespace fs = std::filesystem;
using sparsetrain::test::read_json;

namespace {

fs::path scratch_dir() { return sparsetrain::test::scratch_dir("st-cli"); }

}  // namespace

TEST_CASE("help lists the command groups, the global flags and the exit codes") {
  auto r = run_sparsetrain({"--help"});
  CHECK(r.exit_code == 0);
  for (const char* word : {"teddy", "fuyou", "graph", "env", "--seed", "--out", "--jsonl",
                           "--config", "--log-level", "--progress", "--dry-run", "Exit codes"}) {
    CAPTURE(word);
    CHECK(r.out.find(word) != std::string::npos);
  }
}

TEST_CASE("version names sparsetrain, the commit, torch, CUDA and liburing") {
  auto r = run_sparsetrain({"--version"});
  CHECK(r.exit_code == 0);
  for (const char* word : {"sparsetrain ", "commit ", "torch ", "CUDA ", "liburing "}) {
    CAPTURE(word);
    CHECK(r.out.find(word) != std::string::npos);
  }
}

TEST_CASE("an unknown flag exits 2 with a one-line error and a hint") {
  auto r = run_sparsetrain({"env", "--no-such-flag"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.rfind("sparsetrain: error: ", 0) == 0);
  CHECK(r.err.find("--no-such-flag") != std::string::npos);
  CHECK(r.err.find("hint: ") != std::string::npos);
  CHECK(r.out.empty());
}

TEST_CASE("bad values exit 2") {
  CHECK(run_sparsetrain({"env", "--seed", "many"}).exit_code == 2);
  CHECK(run_sparsetrain({"env", "--progress", "sometimes"}).exit_code == 2);
  CHECK(run_sparsetrain({"env", "--dir", "/no/such/dir"}).exit_code == 2);
  CHECK(run_sparsetrain({}).exit_code == 2);
  CHECK(run_sparsetrain({"--config", "/no/such/config.toml", "env"}).exit_code == 2);
}

TEST_CASE("a group without its subcommand exits 2 and points at its help") {
  auto r = run_sparsetrain({"teddy"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("teddy") != std::string::npos);
}

TEST_CASE("a config file sets options and command-line flags override it") {
  const fs::path config = scratch_dir() / "config.toml";
  std::ofstream(config) << "seed = 5\nlog-level = \"warn\"\n";
  const fs::path out1 = scratch_dir() / "from-config.json";
  auto r1 = run_sparsetrain({"--config", config.string(), "env", "--out", out1.string()});
  REQUIRE(r1.exit_code == 0);
  CHECK(read_json(out1)["config"]["seed"] == 5);

  const fs::path out2 = scratch_dir() / "flag-wins.json";
  auto r2 =
      run_sparsetrain({"--config", config.string(), "env", "--seed", "7", "--out", out2.string()});
  REQUIRE(r2.exit_code == 0);
  CHECK(read_json(out2)["config"]["seed"] == 7);
}

TEST_CASE("an unknown key in the config file exits 2") {
  const fs::path config = scratch_dir() / "bad.toml";
  std::ofstream(config) << "sead = 5\n";
  auto r = run_sparsetrain({"--config", config.string(), "env"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("sead") != std::string::npos);
}

TEST_CASE("a malformed TOML config names TOML, the file and the line") {
  struct Case {
    std::string text, expect;
  };
  const std::vector<Case> cases = {
      {"seed = 3\n[teddy.run\nepochs = 2\n", "line 2: '[teddy.run' is not an option"},
      {"seed = 3\n\nsead = 4\n", "line 3: 'sead' is not an option"},
      {"seed = \"x\n", "line 1: bad value in 'seed = \"x'"},
  };
  for (const Case& c : cases) {
    const fs::path config = scratch_dir() / "malformed.toml";
    std::ofstream(config) << c.text;
    auto r = run_sparsetrain({"--config", config.string(), "env"});
    CAPTURE(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("TOML config '" + config.string() + "' " + c.expect) != std::string::npos);
    CHECK(r.err.find("INI") == std::string::npos);
  }
  auto missing = run_sparsetrain({"--config", (scratch_dir() / "none.toml").string(), "env"});
  CHECK(missing.exit_code == 2);
  CHECK(missing.err.find("cannot be read") != std::string::npos);
}

TEST_CASE("run records are valid JSON and identical across seeded runs once 'run' is removed") {
  const fs::path a = scratch_dir() / "a.json";
  const fs::path b = scratch_dir() / "b.json";
  REQUIRE(run_sparsetrain({"env", "--seed", "3", "--out", a.string()}).exit_code == 0);
  REQUIRE(run_sparsetrain({"env", "--seed", "3", "--out", b.string()}).exit_code == 0);
  nlohmann::json ja = read_json(a);
  nlohmann::json jb = read_json(b);
  CHECK(ja["schema"] == "sparsetrain.run");
  CHECK(ja["status"] == "ok");
  CHECK(ja["run"].contains("wall_s"));
  ja.erase("run");
  jb.erase("run");
  CHECK(ja.dump() == jb.dump());
}

TEST_CASE("--out - writes the record to stdout and --jsonl streams typed events") {
  const fs::path events = scratch_dir() / "events.jsonl";
  auto r = run_sparsetrain({"env", "--out", "-", "--log-level", "off", "--jsonl", events.string()});
  REQUIRE(r.exit_code == 0);
  // stdout holds the human report, then the JSON document
  const auto brace = r.out.find("\n{");
  REQUIRE(brace != std::string::npos);
  CHECK(nlohmann::json::parse(r.out.substr(brace + 1))["command"] == "env");
}

TEST_CASE("an unwritable --out fails with a one-line error naming the path") {
  auto r = run_sparsetrain({"env", "--out", "/no/such/dir/run.json"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("/no/such/dir/run.json") != std::string::npos);
}
