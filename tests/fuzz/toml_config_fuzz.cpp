// libFuzzer harness for the TOML --config file: the bytes are the file, parsed by CLI11 as
// sparsetrain parses it (set_config, extras refused, a subcommand's table), and a parse error is
// worded by cli::describe_parse_error (apps/sparsetrain/cli.h). The contract: the options parse,
// or CLI11 throws a CLI::ParseError that describe_parse_error turns into one line — never a
// crash, hang, sanitizer report or other exception. See run_fuzz.sh.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli.h"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path =
      (fs::temp_directory_path() / ("st-fuzz-config-" + std::to_string(::getpid()) + ".toml"))
          .string();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  CLI::App app("fuzz", "sparsetrain");
  app.set_config("--config", "", "TOML file");
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.fallthrough();
  std::uint64_t seed = 0;
  std::string log_level = "info";
  app.add_option("--seed", seed);
  app.add_option("--log-level", log_level)->check(CLI::IsMember({"info", "warn"}));
  CLI::App* teddy = app.add_subcommand("teddy");
  CLI::App* run = teddy->add_subcommand("run");
  std::vector<double> sparsity;
  int epochs = 200;
  std::string graph;
  run->add_option("--graph-sparsity", sparsity);
  run->add_option("--epochs", epochs)->check(CLI::Range(1, 100000));
  run->add_option("--graph", graph);
  sparsetrain::cli::refuse_empty_values(app);
  const std::vector<std::string> args = {"sparsetrain", "--config", path, "teddy", "run"};
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    const sparsetrain::cli::ParseErrorText text = sparsetrain::cli::describe_parse_error(e, args);
    if (text.message.empty()) std::abort();
  }
  return 0;
}
