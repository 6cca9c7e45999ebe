// Helpers shared by the CLI tests of every library: a per-process scratch directory, reading a
// run record (a parse failure fails the test) or a file back, argument lists joined, and waiting
// for a tensor store's commit.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

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

inline std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Argument lists joined: `base + std::vector<std::string>{"--resume"}` (with `using`).
inline std::vector<std::string> operator+(std::vector<std::string> a,
                                          const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Waits up to `seconds` until the tensor store whose manifest is `manifest` (fuyou/store,
// sparsetrain-store.json) has committed `version`; false when it did not.
inline bool wait_for_store_version(const std::filesystem::path& manifest, int version,
                                   double seconds = 60) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!std::filesystem::exists(manifest)) continue;
    try {
      std::ifstream in(manifest);
      if (nlohmann::json::parse(in)["version"].get<int>() >= version) return true;
    } catch (const nlohmann::json::exception&) {  // mid-rename: try again
    }
  }
  return false;
}

}  // namespace sparsetrain::test
