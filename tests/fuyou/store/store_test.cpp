// The tensor store: round trips of awkward sizes and dtypes striped over directories, unaligned
// ranges against an in-memory reference, versions across reopen, checksum mismatches found, damaged
// stores refused, concurrent readers and writers, and a writer killed (fork + SIGKILL) mid-update.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "common/atomic_file.h"
#include "common/io/aligned_buffer.h"
#include "common/io/io_test_util.h"
#include "fuyou/store/tensor_store.h"

namespace io = sparsetrain::common::io;
using sparsetrain::fuyou::StoreDType;
using sparsetrain::fuyou::StoreOptions;
using sparsetrain::fuyou::TensorStore;
using sparsetrain::test::fill_pattern;
using sparsetrain::test::fill_pattern_fast;
using sparsetrain::test::TempDir;

namespace {

StoreOptions small_extents() {
  StoreOptions o;
  o.extent_bytes = 64 * 1024;  // many extents from small tensors: striping and edges get exercised
  o.io.block_bytes = 32 * 1024;
  o.io.queue_depth = 8;
  return o;
}

std::vector<std::string> two_dirs(const TempDir& root) { return {root.sub("a"), root.sub("b")}; }

}  // namespace

TEST_CASE(
    "tensors of awkward sizes and several dtypes round-trip byte for byte over 2 directories") {
  TempDir root;
  const auto dirs = two_dirs(root);
  struct Spec {
    std::string name;
    StoreDType dtype;
    std::vector<std::int64_t> shape;
    std::uint64_t bytes;
  };
  const std::vector<Spec> specs = {
      {"one_byte", StoreDType::kU8, {1}, 1},
      {"page_minus_one", StoreDType::kI8, {4095}, 4095},
      {"page_plus_one", StoreDType::kU8, {4097}, 4097},
      {"f32_matrix", StoreDType::kF32, {3, 5}, 60},
      {"bf16_vector", StoreDType::kBF16, {40001}, 80002},
      {"i64_extents", StoreDType::kI64, {3, 8192}, 196608},  // exactly 3 extents
      {"f16_odd", StoreDType::kF16, {65536 + 3}, 131078},    // 2 extents + 6 bytes
      {"bool_scalar", StoreDType::kBool, {}, 1},
      {"empty", StoreDType::kF64, {0, 4}, 0},
  };
  {
    auto store = TensorStore::create(dirs, small_extents());
    for (const Spec& s : specs) store->define(s.name, s.dtype, s.shape);
    std::vector<io::AlignedBuffer> data;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      data.emplace_back(specs[i].bytes);
      fill_pattern(data.back().data(), specs[i].bytes, i + 1);
      store->write(specs[i].name, data.back().data());
    }
    store->commit();
    CHECK(store->version() == 1);
  }
  auto store = TensorStore::open(dirs, small_extents());
  CHECK(store->version() == 1);
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const auto info = store->info(specs[i].name);
    CHECK(info.bytes == specs[i].bytes);
    CHECK(info.dtype == specs[i].dtype);
    CHECK(info.shape == specs[i].shape);
    std::vector<unsigned char> expect(specs[i].bytes);
    fill_pattern(expect.data(), expect.size(), i + 1);
    io::AlignedBuffer got(specs[i].bytes);
    store->read(specs[i].name, got.data(), 0, TensorStore::kWhole, /*verify=*/true).get();
    // (std::equal, not memcmp: a 0-byte tensor's buffers may be null, and memcmp(null, …, 0) is
    // undefined — UBSan's finding)
    CHECK_MESSAGE(std::equal(expect.begin(), expect.end(),
                             reinterpret_cast<const unsigned char*>(got.data())),
                  specs[i].name);
  }
  CHECK(store->verify().ok());
}

TEST_CASE("a tensor of 1 GiB + 1 byte round-trips (write, commit, reopen, read)") {
  TempDir root;
  const auto dirs = two_dirs(root);
  const std::uint64_t bytes = (std::uint64_t{1} << 30) + 1;
  io::AlignedBuffer data(bytes);
  fill_pattern_fast(data.data(), bytes, 77);
  {
    auto store = TensorStore::create(dirs);
    store->define("big", StoreDType::kU8, {static_cast<std::int64_t>(bytes)});
    store->write("big", data.data()).get();
    store->commit();
  }
  auto store = TensorStore::open(dirs);
  io::AlignedBuffer got(bytes);
  store->read("big", got.data()).get();
  CHECK(std::memcmp(got.data(), data.data(), bytes) == 0);
  CHECK(static_cast<unsigned char>(got.data()[bytes - 1]) ==
        static_cast<unsigned char>(data.data()[bytes - 1]));
  // Range read of the very last byte and of a span crossing an extent boundary (4 MiB extents).
  unsigned char last = 0;
  store->read("big", &last, bytes - 1, 1).get();
  CHECK(last == static_cast<unsigned char>(data.data()[bytes - 1]));
  std::vector<unsigned char> span(9000);
  store->read("big", span.data(), (4u << 20) - 4500, span.size()).get();
  CHECK(std::memcmp(span.data(), data.data() + (4u << 20) - 4500, span.size()) == 0);
}

TEST_CASE("unaligned range writes and reads match an in-memory reference across commits") {
  TempDir root;
  const auto dirs = two_dirs(root);
  const std::uint64_t bytes = 5 * 64 * 1024 + 777;
  std::vector<unsigned char> reference(bytes, 0);  // defined tensors read as zeros
  std::mt19937_64 rng(42);
  auto store = TensorStore::create(dirs, small_extents());
  store->define("t", StoreDType::kU8, {static_cast<std::int64_t>(bytes)});
  for (int round = 0; round < 12; ++round) {
    const std::uint64_t off = rng() % bytes;
    const std::uint64_t len = 1 + rng() % std::min<std::uint64_t>(bytes - off, 150000);
    std::vector<unsigned char> src(len + 1);  // +1: write from an unaligned address
    fill_pattern(src.data() + 1, len, 100 + round);
    store->write("t", src.data() + 1, off, len).get();
    std::memcpy(reference.data() + off, src.data() + 1, len);
    if (round % 3 == 2) store->commit();
    const std::uint64_t roff = rng() % bytes;
    const std::uint64_t rlen = 1 + rng() % (bytes - roff);
    std::vector<unsigned char> got(rlen + 3);
    store->read("t", got.data() + 3, roff, rlen).get();
    CHECK(std::memcmp(got.data() + 3, reference.data() + roff, rlen) == 0);
  }
  store->commit();
  auto reopened_version = store->version();
  store.reset();
  auto again = TensorStore::open(dirs, small_extents());
  CHECK(again->version() == reopened_version);
  std::vector<unsigned char> got(bytes);
  again->read("t", got.data(), 0, TensorStore::kWhole, /*verify=*/true).get();
  CHECK(got == reference);
  CHECK(again->verify().ok());
  CHECK_THROWS_AS(again->read("t", got.data(), bytes, 1), sparsetrain::common::UsageError);
  CHECK_THROWS_AS(again->read("nope", got.data()), sparsetrain::common::UsageError);
}

TEST_CASE("uncommitted writes are dropped at reopen and by rollback; the committed bytes stay") {
  TempDir root;
  const auto dirs = two_dirs(root);
  const std::uint64_t bytes = 3 * 64 * 1024 + 5;
  io::AlignedBuffer v1(bytes), v2(bytes), got(bytes);
  fill_pattern(v1.data(), bytes, 1);
  fill_pattern(v2.data(), bytes, 2);
  {
    auto store = TensorStore::create(dirs, small_extents());
    store->define("w", StoreDType::kU8, {static_cast<std::int64_t>(bytes)});
    store->write("w", v1.data()).get();
    store->commit();
    store->write("w", v2.data()).get();
    store->read("w", got.data()).get();
    CHECK(std::memcmp(got.data(), v2.data(), bytes) == 0);  // read-your-writes before commit
    store->rollback();
    store->read("w", got.data()).get();
    CHECK(std::memcmp(got.data(), v1.data(), bytes) == 0);
    store->write("w", v2.data()).get();  // staged, never committed
  }
  auto store = TensorStore::open(dirs, small_extents());
  CHECK(store->version() == 1);
  CHECK(store->info("w").version == 1);
  store->read("w", got.data()).get();
  CHECK(std::memcmp(got.data(), v1.data(), bytes) == 0);
}

TEST_CASE("keep_previous keeps the commit before the last, and open_previous opens it intact") {
  TempDir root;
  const auto dirs = two_dirs(root);
  const std::uint64_t bytes = 2 * 64 * 1024 + 7;
  io::AlignedBuffer v1(bytes), v2(bytes), got(bytes);
  fill_pattern(v1.data(), bytes, 1);
  fill_pattern(v2.data(), bytes, 2);
  StoreOptions keep = small_extents();
  keep.keep_previous = true;
  {
    auto store = TensorStore::create(dirs, keep);
    store->define("w", StoreDType::kU8, {static_cast<std::int64_t>(bytes)});
    store->write("w", v1.data()).get();
    store->commit();  // version 1
    store->write("w", v2.data()).get();
    store->commit();  // version 2: v2 in the other slots, v1's untouched
  }
  StoreOptions previous = keep;
  previous.open_previous = true;
  {
    auto store = TensorStore::open(dirs, previous);
    CHECK(store->version() == 1);
    store->read("w", got.data(), 0, bytes, /*verify=*/true).get();
    CHECK(std::memcmp(got.data(), v1.data(), bytes) == 0);
    CHECK(store->verify().problems.empty());
  }
  auto last = TensorStore::open(dirs, small_extents());  // the last commit is still there
  CHECK(last->version() == 2);
  last->read("w", got.data()).get();
  CHECK(std::memcmp(got.data(), v2.data(), bytes) == 0);
  last.reset();
  // A store that kept nothing says so.
  TempDir other;
  const auto plain = two_dirs(other);
  {
    auto store = TensorStore::create(plain, small_extents());
    store->define("w", StoreDType::kU8, {1});
    store->commit();
  }
  CHECK_THROWS_WITH_AS(TensorStore::open(plain, previous), doctest::Contains("no previous commit"),
                       sparsetrain::common::UsageError);
}

TEST_CASE("a flipped byte on disk is found by verify() and by read(verify)") {
  TempDir root;
  const auto dirs = two_dirs(root);
  const std::uint64_t bytes = 4 * 64 * 1024;
  io::AlignedBuffer data(bytes);
  fill_pattern(data.data(), bytes, 8);
  {
    auto store = TensorStore::create(dirs, small_extents());
    store->define("x", StoreDType::kF32, {static_cast<std::int64_t>(bytes / 4)});
    store->write("x", data.data()).get();
    store->commit();
  }
  // Find bytes 1000..1015 of extent 1 (on the second directory) by content, and flip one.
  std::vector<char> needle(reinterpret_cast<char*>(data.data()) + 64 * 1024 + 1000,
                           reinterpret_cast<char*>(data.data()) + 64 * 1024 + 1016);
  const std::string file = dirs[1] + "/sparsetrain-store.1.dat";
  std::string content = sparsetrain::common::read_file(file);
  const auto at = content.find(std::string(needle.begin(), needle.end()));
  REQUIRE(at != std::string::npos);
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(at));
    const char flipped = static_cast<char>(content[at] ^ 0x40);
    f.write(&flipped, 1);
  }
  auto store = TensorStore::open(dirs, small_extents());
  const auto report = store->verify();
  REQUIRE(report.problems.size() == 1);
  CHECK(report.problems[0].find("extent 1") != std::string::npos);
  CHECK(report.extents == 4);
  io::AlignedBuffer got(bytes);
  CHECK_THROWS_AS(store->read("x", got.data(), 0, TensorStore::kWhole, /*verify=*/true).get(),
                  sparsetrain::common::RunError);
  store->read("x", got.data(), 0, 64 * 1024, /*verify=*/true).get();  // extent 0 is intact
}

TEST_CASE("damaged or mismatched stores are refused with clear errors") {
  TempDir root;
  const auto dirs = two_dirs(root);
  {
    auto store = TensorStore::create(dirs, small_extents());
    store->define("y", StoreDType::kU8, {200000});
    store->commit();
  }
  CHECK_THROWS_AS(TensorStore::create(dirs, small_extents()), sparsetrain::common::UsageError);
  // Another first directory, the same second one: its data file would be overwritten.
  const std::vector<std::string> other = {root.sub("c"), dirs[1]};
  CHECK_THROWS_WITH_AS(
      TensorStore::create(other, small_extents()),
      doctest::Contains(
          ("data file already exists: '" + dirs[1] + "/sparsetrain-store.1.dat'").c_str()),
      sparsetrain::common::UsageError);
  CHECK(std::filesystem::file_size(dirs[1] + "/sparsetrain-store.1.dat") > 0);  // untouched
  CHECK_FALSE(std::filesystem::exists(other[0] + "/sparsetrain-store.json"));
  CHECK_THROWS_AS(TensorStore::open({dirs[0]}, small_extents()), sparsetrain::common::UsageError);
  CHECK_THROWS_AS(TensorStore::open({root.sub("empty")}), sparsetrain::common::UsageError);
  CHECK_THROWS_AS(TensorStore::open({root.path() + "/missing"}), sparsetrain::common::UsageError);
  // A truncated data file.
  REQUIRE(::truncate((dirs[1] + "/sparsetrain-store.1.dat").c_str(), 4096) == 0);
  CHECK_THROWS_WITH_AS(TensorStore::open(dirs, small_extents()),
                       doctest::Contains("has 4096 bytes but the manifest needs"),
                       sparsetrain::common::RunError);
  // A manifest that is not JSON.
  sparsetrain::common::write_file_atomic(dirs[0] + "/sparsetrain-store.json", "{ not json");
  CHECK_THROWS_WITH_AS(TensorStore::open(dirs, small_extents()), doctest::Contains("is invalid"),
                       sparsetrain::common::RunError);
}

TEST_CASE("concurrent readers and writers on different tensors see their own bytes") {
  TempDir root;
  const auto dirs = two_dirs(root);
  auto store = TensorStore::create(dirs, small_extents());
  constexpr int kThreads = 4;
  const std::uint64_t bytes = 3 * 64 * 1024 + 100;
  for (int t = 0; t < kThreads; ++t)
    store->define("t" + std::to_string(t), StoreDType::kU8, {static_cast<std::int64_t>(bytes)});
  store->commit();
  std::vector<int> ok(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      io::AlignedBuffer out(bytes), in(bytes);
      int good = 1;
      for (int round = 0; round < 4; ++round) {
        fill_pattern(out.data(), bytes, static_cast<std::uint64_t>(t * 100 + round));
        store->write("t" + std::to_string(t), out.data()).get();
        store->read("t" + std::to_string(t), in.data()).get();
        good &= std::memcmp(out.data(), in.data(), bytes) == 0 ? 1 : 0;
      }
      ok[t] = good;
    });
  }
  for (auto& th : threads) th.join();
  store->commit();
  for (int t = 0; t < kThreads; ++t) CHECK(ok[t] == 1);
  CHECK(store->verify().ok());
}

// The child rewrites every tensor with the pattern of version v and commits, for v = 1, 2, ...,
// reporting each commit on a pipe; the parent SIGKILLs it while it is writing version 4 and then
// checks the store opens at the last committed version with exactly that version's bytes.
TEST_CASE("a writer killed with SIGKILL mid-update leaves the store at its previous version") {
  TempDir root;
  const auto dirs = two_dirs(root);
  constexpr int kTensors = 3;
  const std::uint64_t bytes = 24 * 64 * 1024 + 123;  // 25 extents each
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // child: no doctest from here on
    ::close(pipe_fds[0]);
    try {
      auto store = TensorStore::create(dirs, small_extents());
      for (int t = 0; t < kTensors; ++t)
        store->define("p" + std::to_string(t), StoreDType::kU8, {static_cast<std::int64_t>(bytes)});
      io::AlignedBuffer data(bytes);
      for (std::uint64_t v = 1;; ++v) {
        for (int t = 0; t < kTensors; ++t) {
          fill_pattern_fast(data.data(), bytes, v * 10 + t);
          if (v >= 4) {  // tell the parent we are mid-update, then keep writing extent by extent
            const char c = 'w';
            if (t == 1) (void)!::write(pipe_fds[1], &c, 1);
            for (std::uint64_t off = 0; off < bytes; off += 64 * 1024) {
              store
                  ->write("p" + std::to_string(t), data.data() + off, off,
                          std::min<std::uint64_t>(64 * 1024, bytes - off))
                  .get();
            }
          } else {
            store->write("p" + std::to_string(t), data.data()).get();
          }
        }
        store->commit();
        const char c = 'c';
        (void)!::write(pipe_fds[1], &c, 1);
      }
    } catch (...) {
      ::_exit(3);
    }
  }
  ::close(pipe_fds[1]);
  int commits = 0;
  char c = 0;
  while (::read(pipe_fds[0], &c, 1) == 1) {
    if (c == 'c') ++commits;
    if (c == 'w') break;  // the child is now inside the update to version 4
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(pipe_fds[0]);
  REQUIRE(WIFSIGNALED(status));
  CHECK(commits == 3);

  auto store = TensorStore::open(dirs, small_extents());
  CHECK(store->version() == 3);
  std::vector<unsigned char> expect(bytes);
  io::AlignedBuffer got(bytes);
  for (int t = 0; t < kTensors; ++t) {
    fill_pattern_fast(expect.data(), bytes, 3 * 10 + t);
    store->read("p" + std::to_string(t), got.data()).get();
    CHECK_MESSAGE(std::memcmp(got.data(), expect.data(), bytes) == 0, "tensor p", t);
  }
  CHECK(store->verify().ok());
}

TEST_CASE("scratch tensors take one slot per extent, are written in place and are not verified") {
  TempDir root;
  const auto dirs = two_dirs(root);
  const std::uint64_t bytes = 4 * 64 * 1024 + 77;  // 5 extents, the last one short
  io::AlignedBuffer v1(bytes), v2(bytes), got(bytes);
  fill_pattern(v1.data(), bytes, 11);
  fill_pattern(v2.data(), bytes, 12);
  auto file_bytes = [&] {
    std::uintmax_t total = 0;
    for (std::size_t i = 0; i < dirs.size(); ++i)
      total += std::filesystem::file_size(dirs[i] + "/" + TensorStore::data_file_name(i));
    return total;
  };
  {
    auto store = TensorStore::create(dirs, small_extents());
    store->define("durable", StoreDType::kU8, {static_cast<std::int64_t>(bytes)});
    const std::uintmax_t durable = file_bytes();
    store->define("scratch", StoreDType::kU8, {static_cast<std::int64_t>(bytes)},
                  sparsetrain::fuyou::TensorKind::kScratch);
    // 5 extents of 64 KiB: two slots each for the durable tensor, one for the scratch one.
    CHECK(durable == 2 * 5 * 64 * 1024);
    CHECK(file_bytes() - durable == 5 * 64 * 1024);
    CHECK(store->info("scratch").scratch);
    CHECK_FALSE(store->info("durable").scratch);
    store->write("durable", v1.data()).get();
    store->write("scratch", v1.data()).get();
    store->commit();
    // After the commit, the scratch tensor is overwritten where it is (nothing else to go to):
    // a rollback keeps the durable tensor's committed bytes, not the scratch tensor's.
    store->write("durable", v2.data()).get();
    store->write("scratch", v2.data()).get();
    store->rollback();
    store->read("durable", got.data()).get();
    CHECK(std::memcmp(got.data(), v1.data(), bytes) == 0);
    store->read("scratch", got.data()).get();
    CHECK(std::memcmp(got.data(), v2.data(), bytes) == 0);
  }
  // Reopened: its kind and layout are in the manifest; verify() checks only durable tensors
  // (the scratch bytes no longer match their committed checksums, and need not).
  auto store = TensorStore::open(dirs, small_extents());
  CHECK(store->info("scratch").scratch);
  const auto report = store->verify();
  CHECK(report.ok());
  CHECK(report.tensors == 2);
  CHECK(report.scratch_tensors == 1);
  CHECK(report.extents == 5);
  store->write("scratch", v1.data()).get();
  store->commit();
  store->read("scratch", got.data(), 0, TensorStore::kWhole, /*verify=*/true).get();
  CHECK(std::memcmp(got.data(), v1.data(), bytes) == 0);
}

TEST_CASE("in-place tensors keep one slot and their checksums; a stopped writer's bytes adopted") {
  // The one-slot trainer's states (tensor_store.h: TensorKind::kInPlace): written in place like
  // scratch tensors, but verified against the last commit's checksums, until the caller that
  // journals its own updates adopts what a stopped writer left on disk.
  TempDir root;
  const auto dirs = two_dirs(root);
  const std::uint64_t extent = 64 * 1024;
  const std::uint64_t bytes = 4 * extent;  // extents 0 … 3
  io::AlignedBuffer v1(bytes), v2(bytes), got(bytes);
  fill_pattern(v1.data(), bytes, 21);
  fill_pattern(v2.data(), bytes, 22);
  {
    auto store = TensorStore::create(dirs, small_extents());
    store->define("ring", StoreDType::kU8, {static_cast<std::int64_t>(bytes)},
                  sparsetrain::fuyou::TensorKind::kInPlace);
    store->define("durable", StoreDType::kU8, {16});
    CHECK(store->info("ring").in_place);
    CHECK_FALSE(store->info("ring").scratch);
    store->write("ring", v1.data()).get();
    store->commit();
    // The stopped writer: extents 1 and 2 rewritten in place and synced, never committed.
    store->write("ring", v2.data() + extent, extent, 2 * extent).get();
    store->sync();
    CHECK_THROWS_AS(store->adopt_checksums("durable", 0, 16), sparsetrain::common::UsageError);
  }
  auto store = TensorStore::open(dirs, small_extents());
  CHECK(store->info("ring").in_place);
  // The new bytes are there, and no longer match the committed checksums: verify() says which
  // extents, and that the tensor is in place.
  store->read("ring", got.data()).get();
  CHECK(std::memcmp(got.data() + extent, v2.data() + extent, 2 * extent) == 0);
  CHECK(std::memcmp(got.data(), v1.data(), extent) == 0);
  auto report = store->verify();
  CHECK_FALSE(report.ok());
  REQUIRE(report.problems.size() == 2);
  CHECK(report.problems[0].find("an in-place tensor") != std::string::npos);
  CHECK_THROWS_AS(store->read("ring", got.data(), extent, extent, /*verify=*/true).get(),
                  sparsetrain::common::RunError);
  // Adopted (staged until the commit): read(verify) passes, and the commit makes it last.
  store->adopt_checksums("ring", extent + 5, 2 * extent - 10);  // touches extents 1 and 2 only
  store->read("ring", got.data(), 0, bytes, /*verify=*/true).get();
  store->commit();
  report = store->verify();
  CHECK(report.ok());
  CHECK(report.extents == 5);
  store.reset();
  store = TensorStore::open(dirs, small_extents());
  CHECK(store->verify().ok());
}

TEST_CASE("one process per store: a second open or create is refused naming the holder's pid") {
  TempDir root;
  const auto dirs = two_dirs(root);
  const std::string self = "is in use by process " + std::to_string(::getpid());
  {
    auto store = TensorStore::create(dirs, small_extents());
    store->define("w", StoreDType::kF32, {1000});
    store->commit();
    // In this process too: a second object would write the same slots.
    CHECK_THROWS_WITH_AS(TensorStore::open(dirs, small_extents()), doctest::Contains(self.c_str()),
                         sparsetrain::common::UsageError);
    CHECK_THROWS_WITH_AS(TensorStore::create(dirs, small_extents()),
                         doctest::Contains(self.c_str()), sparsetrain::common::UsageError);
  }
  // Another process holds it until it exits, however it exits.
  int ready[2], release[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(release) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // child: no doctest from here on
    try {
      auto store = TensorStore::open(dirs, small_extents());
      char c = 1;
      if (::write(ready[1], &c, 1) != 1) ::_exit(2);
      if (::read(release[0], &c, 1) < 0) ::_exit(2);  // returns when the parent kills us
    } catch (...) {
      ::_exit(1);
    }
    ::_exit(0);
  }
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  const std::string other = "is in use by process " + std::to_string(pid);
  CHECK_THROWS_WITH_AS(TensorStore::open(dirs, small_extents()), doctest::Contains(other.c_str()),
                       sparsetrain::common::UsageError);
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK(WIFSIGNALED(status));
  auto reopened = TensorStore::open(dirs, small_extents());  // the kernel dropped the lock
  CHECK(reopened->version() == 1);
}

TEST_CASE("a killed commit's manifest temp file is removed at the next open") {
  TempDir root;
  const auto dirs = two_dirs(root);
  { TensorStore::create(dirs, small_extents())->commit(); }
  // What a process killed between writing the temp manifest and renaming it leaves.
  const std::string stale = dirs[0] + "/sparsetrain-store.json.tmp.4242";
  std::ofstream(stale) << "{ half a manifest";
  REQUIRE(std::filesystem::exists(stale));
  auto store = TensorStore::open(dirs, small_extents());
  CHECK_FALSE(std::filesystem::exists(stale));
  CHECK(std::filesystem::exists(dirs[0] + "/sparsetrain-store.json"));
}

TEST_CASE("an empty store (stopped before its first commit) is replaced by create; others stay") {
  TempDir root;
  const auto dirs = two_dirs(root);
  { TensorStore::create(dirs, small_extents()); }  // version 0, no tensors
  {
    auto store = TensorStore::create(dirs, small_extents());
    store->define("w", StoreDType::kU8, {100});
    store->commit();
  }
  CHECK_THROWS_WITH_AS(TensorStore::create(dirs, small_extents()),
                       doctest::Contains("already exists"), sparsetrain::common::UsageError);
  CHECK(TensorStore::open(dirs, small_extents())->contains("w"));
  // An empty store over other directories is not this one's to replace.
  const auto first_only = std::vector<std::string>{root.sub("c")};
  { TensorStore::create({first_only[0], root.sub("d")}, small_extents()); }
  CHECK_THROWS_AS(TensorStore::create(first_only, small_extents()),
                  sparsetrain::common::UsageError);
}
