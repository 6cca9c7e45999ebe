#include "common/input_file.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "common/atomic_file.h"
#include "common/error.h"

using namespace sparsetrain::common;
namespace fs = std::filesystem;

TEST_CASE("an input file reads exact byte ranges and refuses reads past its end") {
  const fs::path path = fs::temp_directory_path() / ("st-input-" + std::to_string(::getpid()));
  write_file_atomic(path.string(), "0123456789");
  InputFile file(path.string());
  CHECK(file.size() == 10);
  char got[4] = {};
  file.read_exact(3, got, 4);
  CHECK(std::string(got, 4) == "3456");
  CHECK_THROWS_WITH_AS(file.read_exact(8, got, 4),
                       doctest::Contains("ended after 10 bytes while reading 4 bytes at offset 8"),
                       RunError);
  fs::remove(path);
}

TEST_CASE("an input file names a missing path and refuses a directory") {
  CHECK_THROWS_WITH_AS(InputFile("/no/such/tokens.bin"),
                       "cannot open '/no/such/tokens.bin': No such file or directory", UsageError);
  CHECK_THROWS_WITH_AS(InputFile(fs::temp_directory_path().string()),
                       doctest::Contains("is not a regular file"), UsageError);
}
