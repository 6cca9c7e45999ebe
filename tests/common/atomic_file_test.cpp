#include "common/atomic_file.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "common/error.h"
#include "common/fault_injection.h"
#include "common/file_fault_sweep.h"

using namespace sparsetrain::common;
namespace fs = std::filesystem;

namespace {
fs::path fresh_dir(const char* name) {
  fs::path dir =
      fs::temp_directory_path() / (std::string("st-") + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

int count_entries(const fs::path& dir) {
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++entries;
  return entries;
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

TEST_CASE("a streamed atomic file appears whole on commit, and not at all before") {
  fs::path dir = fresh_dir("stream");
  const std::string path = (dir / "out.bin").string();
  write_file_atomic(path, "old");
  {
    AtomicFile file(path);
    file.write("new ");
    const unsigned char bytes[3] = {'a', 0, 'b'};
    file.write(bytes, sizeof bytes);
    CHECK(read_file(path) == "old");  // readers see the old content until the rename
    file.commit();
  }
  CHECK(read_file(path) == std::string("new a\0b", 7));
  CHECK(count_entries(dir) == 1);
  fs::remove_all(dir);
}

TEST_CASE("an atomic file dropped without commit leaves the old content and no temporary") {
  fs::path dir = fresh_dir("drop");
  const std::string path = (dir / "out.bin").string();
  write_file_atomic(path, "old");
  {
    AtomicFile file(path);
    file.write("half of it");
  }
  CHECK(read_file(path) == "old");
  CHECK(count_entries(dir) == 1);
  fs::remove_all(dir);
}

TEST_CASE("an atomic directory replaces the old tree on commit and leaves nothing without it") {
  fs::path dir = fresh_dir("tree");
  const fs::path target = dir / "graph";
  fs::create_directories(target / "raw");
  write_file_atomic((target / "raw" / "old.txt").string(), "old");
  {
    AtomicDirectory out(target.string());
    CHECK(out.temp_path() == target.string() + ".tmp." + std::to_string(::getpid()));
    fs::create_directories(fs::path(out.temp_path()) / "raw");
    write_file_atomic((fs::path(out.temp_path()) / "raw" / "half.txt").string(), "x");
  }  // not committed: the temporary tree goes, the old one stays
  CHECK(read_file((target / "raw" / "old.txt").string()) == "old");
  CHECK_FALSE(fs::exists(target.string() + ".tmp." + std::to_string(::getpid())));
  {
    AtomicDirectory out(target.string());
    fs::create_directories(fs::path(out.temp_path()) / "raw");
    write_file_atomic((fs::path(out.temp_path()) / "raw" / "new.txt").string(), "new");
    out.commit();
  }
  CHECK(read_file((target / "raw" / "new.txt").string()) == "new");
  CHECK_FALSE(fs::exists(target / "raw" / "old.txt"));
  CHECK(count_entries(dir) == 1);
  fs::remove_all(dir);
}

TEST_CASE("an injected write, sync or rename fault leaves the old file or the new one, whole") {
  fs::path dir = fresh_dir("faults");
  const std::string path = (dir / "record.json").string();
  const std::string old_content = "old record", new_content(100000, 'n');
  write_file_atomic(path, old_content);
  const auto write = [&] {
    AtomicFile file(path);
    file.write(new_content.substr(0, 60000));  // two write calls, so a torn one can be the second
    file.write(std::string_view(new_content).substr(60000));
    file.commit();
  };
  const int tried = sparsetrain::test::sweep_file_faults(write, [&](bool failed) {
    const std::string now = read_file(path);
    // The parent directory's fsync comes after the rename: its failure leaves the new file.
    CHECK((now == old_content || (now == new_content)));
    if (!failed) CHECK(now == new_content);
    CHECK(count_entries(dir) == 1);  // no temporary left behind
    write_file_atomic(path, old_content);
  });
  CHECK(tried == 2 * 3 + 2 * 2 + 2 * 1);  // 2 writes, 2 syncs (file, directory), 1 rename
  fs::remove_all(dir);
}

TEST_CASE("an injected fault while replacing a directory tree leaves the old tree or the new one") {
  fs::path dir = fresh_dir("tree-faults");
  const fs::path target = dir / "graph";
  const auto tree_text = [&] {
    return read_file((target / "raw" / "a.txt").string()) + "|" +
           read_file((target / "raw" / "b.txt").string());
  };
  const auto write_tree = [&](const std::string& text) {
    AtomicDirectory out(target.string());
    fs::create_directories(fs::path(out.temp_path()) / "raw");
    write_file_atomic((fs::path(out.temp_path()) / "raw" / "a.txt").string(), text + "-a");
    write_file_atomic((fs::path(out.temp_path()) / "raw" / "b.txt").string(), text + "-b");
    out.commit();
  };
  write_tree("old");
  const int tried =
      sparsetrain::test::sweep_file_faults([&] { write_tree("new"); },
                                           [&](bool failed) {
                                             REQUIRE(fs::exists(target));  // never neither
                                             const std::string now = tree_text();
                                             CHECK((now == "old-a|old-b" || now == "new-a|new-b"));
                                             if (!failed) CHECK(now == "new-a|new-b");
                                             CHECK(count_entries(dir) == 1);  // no .tmp, no .old
                                             set_io_fault({});
                                             write_tree("old");
                                           });
  // 2 file writes, 5 syncs (2 files, their directory twice, the tree's parent), 4 renames (2
  // files, the old tree aside, the new one in)
  CHECK(tried == 2 * 3 + 5 * 2 + 4 * 2);
  fs::remove_all(dir);
}
