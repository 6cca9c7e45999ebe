// Helpers shared by the CLI tests of every library: a per-process scratch directory and reading a
// run record back (a parse failure fails the test).
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "process.h"

namespace sparsetrain::test {

// /tmp/<prefix>-<pid>/, emptied once per process.
inline std::filesystem::path scratch_dir(const std::string& prefix) {
  static const std::filesystem::path dir = [&prefix] {
    std::filesystem::path d =
        std::filesystem::temp_directory_path() / (prefix + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot read " << path);
  return nlohmann::json::parse(in);  // throws (fails the test) on invalid JSON
}

}  // namespace sparsetrain::test
