// Helpers shared by the fuyou tests: scratch directories, raw file writing, and checking that a
// call throws a UsageError whose message names what it should.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.h"

namespace fuyou_test {

namespace fs = std::filesystem;

// An empty directory under /tmp unique to this process and `name`.
inline fs::path fresh_dir(const std::string& name) {
  fs::path dir =
      fs::temp_directory_path() / ("st-fuyou-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

inline void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

// Runs fn, requires a UsageError, and checks that its message contains every string in `parts`.
template <typename Fn>
void check_usage_error(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    FAIL("no UsageError thrown; expected one mentioning " << parts.front());
  } catch (const sparsetrain::common::UsageError& e) {
    const std::string message = e.what();
    for (const auto& part : parts) {
      INFO("message: " << message);
      CHECK(message.find(part) != std::string::npos);
    }
  }
}

}  // namespace fuyou_test
