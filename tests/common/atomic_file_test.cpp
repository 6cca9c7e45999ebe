#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "common/atomic_file.h"
#include "common/error.h"

using namespace sparsetrain::common;
namespace fs = std::filesystem;

namespace {
fs::path fresh_dir(const char* name) {
  fs::path dir = fs::temp_directory_path() / (std::string("st-") + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}
}  // namespace

TEST_CASE("an atomic write replaces the whole file and leaves no temporary behind") {
  fs::path dir = fresh_dir("atomic");
  const std::string path = (dir / "out.json").string();
  write_file_atomic(path, "first");
  write_file_atomic(path, "second, longer");
  CHECK(read_file(path) == "second, longer");
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++entries;
  CHECK(entries == 1);
  fs::remove_all(dir);
}

TEST_CASE("writing into a missing directory is a usage error naming the path") {
  try {
    write_file_atomic("/nonexistent-dir-xyz/out.json", "x");
    FAIL("did not throw");
  } catch (const UsageError& e) {
    CHECK(std::string(e.what()).find("/nonexistent-dir-xyz/out.json") != std::string::npos);
  }
}

TEST_CASE("a failed write keeps the old content") {
  if (::geteuid() == 0) {
    // root ignores directory permissions; use a read-only path that is not a directory instead
    fs::path dir = fresh_dir("ro");
    const std::string path = (dir / "out.json").string();
    write_file_atomic(path, "old");
    CHECK_THROWS(write_file_atomic(path + "/child", "new"));
    CHECK(read_file(path) == "old");
    fs::remove_all(dir);
    return;
  }
  fs::path dir = fresh_dir("ro");
  const std::string path = (dir / "out.json").string();
  write_file_atomic(path, "old");
  fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec);
  CHECK_THROWS_AS(write_file_atomic(path, "new"), UsageError);
  fs::permissions(dir, fs::perms::owner_all);
  CHECK(read_file(path) == "old");
  fs::remove_all(dir);
}

TEST_CASE("reading a missing file names it") {
  CHECK_THROWS_WITH_AS(read_file("/no/such/input.csv"),
                       "cannot read '/no/such/input.csv': No such file or directory", UsageError);
}
