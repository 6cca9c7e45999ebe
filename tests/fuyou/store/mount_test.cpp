// Filesystems we mount for the occasion (needs root and a kernel that lets us mount; otherwise the
// whole binary skips with exit 77 and says why): a small tmpfs to fill up (ENOSPC), a read-only
// tmpfs, and a ramfs, which rejects O_DIRECT (tmpfs accepts it since Linux 6.6) and so exercises
// the documented fallback.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

#include "common/io/aligned_buffer.h"
#include "common/io/io_engine.h"
#include "common/io/io_test_util.h"
#include "fuyou/store/tensor_store.h"

namespace io = sparsetrain::common::io;
using sparsetrain::fuyou::StoreDType;
using sparsetrain::fuyou::StoreOptions;
using sparsetrain::fuyou::TensorStore;
using sparsetrain::test::fill_pattern;
using sparsetrain::test::TempDir;

namespace {

// A tmpfs mounted on a fresh directory for the scope; `ok()` false when mount was refused.
class TmpfsMount {
 public:
  explicit TmpfsMount(const char* options, unsigned long flags = 0, const char* type = "tmpfs") {
    if (::mount(type, dir_.path().c_str(), type, flags, options) == 0)
      mounted_ = true;
    else
      error_ = std::strerror(errno);
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  bool ok() const { return mounted_; }
  const std::string& error() const { return error_; }
  const std::string& path() const { return dir_.path(); }

 private:
  TempDir dir_;
  bool mounted_ = false;
  std::string error_;
};

StoreOptions small() {
  StoreOptions o;
  o.extent_bytes = 64 * 1024;
  return o;
}

}  // namespace

TEST_CASE(
    "a full disk fails define and commit with ENOSPC and the store stays at its last version") {
  TmpfsMount fs("size=2m");
  REQUIRE(fs.ok());
  const std::vector<std::string> dirs = {fs.path()};
  const std::uint64_t bytes = 200 * 1024;
  io::AlignedBuffer v1(bytes), v2(bytes), got(bytes);
  fill_pattern(v1.data(), bytes, 1);
  fill_pattern(v2.data(), bytes, 2);
  auto store = TensorStore::create(dirs, small());
  store->define("a", StoreDType::kU8, {static_cast<std::int64_t>(bytes)});
  store->write("a", v1.data()).get();
  store->commit();

  // 1. Reserving space for a tensor larger than the disk fails up front, naming ENOSPC.
  try {
    store->define("huge", StoreDType::kF32, {4 << 20});
    FAIL("expected ENOSPC");
  } catch (const io::IoError& e) {
    CHECK(e.err() == ENOSPC);
    CHECK(std::string(e.what()).find("No space left on device") != std::string::npos);
  }
  CHECK_FALSE(store->contains("huge"));

  // 2. Fill the rest of the disk; the data write lands in reserved space but the manifest cannot
  //    be written: commit throws and the store stays at version 1.
  {
    std::ofstream filler(fs.path() + "/filler", std::ios::binary);
    std::vector<char> chunk(64 * 1024, 'x');
    while (filler.write(chunk.data(), static_cast<std::streamsize>(chunk.size()))) {
    }
  }
  store->write("a", v2.data()).get();
  CHECK_THROWS_WITH_AS(store->commit(), doctest::Contains("No space left"),
                       sparsetrain::common::RunError);
  CHECK(store->version() == 1);
  store.reset();
  auto reopened = TensorStore::open(dirs, small());
  CHECK(reopened->version() == 1);
  reopened->read("a", got.data()).get();
  CHECK(std::memcmp(got.data(), v1.data(), bytes) == 0);
  CHECK(reopened->verify().ok());
}

TEST_CASE("a read-only directory gives a one-line usage error naming the path") {
  TmpfsMount fs("size=1m", MS_RDONLY);
  REQUIRE(fs.ok());
  try {
    TensorStore::create({fs.path()}, small());
    FAIL("expected a UsageError");
  } catch (const sparsetrain::common::UsageError& e) {
    const std::string what = e.what();
    CHECK(what.find(fs.path()) != std::string::npos);
    CHECK(what.find("Read-only file system") != std::string::npos);
    CHECK(what.find('\n') == std::string::npos);
  }
}

TEST_CASE(
    "on ramfs (no O_DIRECT) auto picks the fallback with buffered I/O, and require_direct "
    "refuses") {
  TmpfsMount fs("", 0, "ramfs");
  REQUIRE(fs.ok());
  io::IoOptions options;
  options.backend = io::IoBackend::kAuto;
  auto engine = io::IoEngine::create(options, {fs.path()});
  if (io::io_backend_from_env() == io::IoBackend::kAuto)
    CHECK(engine->backend() == io::IoBackend::kThreads);
  const io::FileId f = engine->open_file(fs.path() + "/data", io::OpenMode::kCreate);
  CHECK_FALSE(engine->is_direct(f));
  std::vector<unsigned char> out(10001), in(10001);  // any size, any alignment when buffered
  fill_pattern(out.data(), out.size(), 9);
  engine->run({{io::IoOp::kWrite, f, 3, out.data(), out.size()}});
  engine->run({{io::IoOp::kRead, f, 3, in.data(), in.size()}});
  CHECK(out == in);

  // The store works there too, through the fallback, with awkward sizes.
  {
    auto store = TensorStore::create({fs.path()}, small());
    std::vector<unsigned char> t(4097), back(4097);
    fill_pattern(t.data(), t.size(), 4);
    store->define("t", StoreDType::kU8, {4097});
    store->write("t", t.data()).get();
    store->commit();
    store->read("t", back.data(), 0, TensorStore::kWhole, /*verify=*/true).get();
    CHECK(t == back);
  }

  io::IoOptions strict;
  strict.require_direct = true;
  auto strict_engine = io::IoEngine::create(strict, {fs.path()});
  CHECK_THROWS_WITH_AS(strict_engine->open_file(fs.path() + "/strict", io::OpenMode::kCreate),
                       doctest::Contains("O_DIRECT"), sparsetrain::common::EnvironmentError);
}

int main(int argc, char** argv) {
  TmpfsMount probe("size=64k");
  if (!probe.ok()) {
    std::fprintf(stderr, "skipped: cannot mount a tmpfs here (%s); ENOSPC is not simulated\n",
                 probe.error().c_str());
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
