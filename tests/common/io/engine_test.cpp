// The I/O engine: byte-exact round trips across block boundaries, concurrent submitters, alignment
// and end-of-file errors, missing directories, and the tmpfs (no O_DIRECT) fallback. The backend is
// kAuto, so the ctest entry io_tests_fallback (SPARSETRAIN_IO_BACKEND=threads) reruns all of it on
// the pread/pwrite pool. Filesystems without O_DIRECT are in mount_test.cpp (they need a mount).
#include <doctest/doctest.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "common/io/aligned_buffer.h"
#include "common/io/io_engine.h"
#include "common/io/io_test_util.h"

namespace io = sparsetrain::common::io;
using sparsetrain::test::fill_pattern;
using sparsetrain::test::TempDir;

namespace {

io::IoOptions small_options() {
  io::IoOptions o;
  o.block_bytes = 64 * 1024;  // small blocks so a few hundred KiB span many of them
  o.queue_depth = 4;
  return o;
}

}  // namespace

TEST_CASE("the engine writes and reads back requests smaller than, equal to and spanning blocks") {
  TempDir dir;
  auto engine = io::IoEngine::create(small_options(), {dir.path()});
  const io::FileId f = engine->open_file(dir.path() + "/data", io::OpenMode::kCreate);
  CHECK(engine->is_direct(f));  // /tmp here is a disk filesystem
  const std::vector<std::size_t> sizes = {4096, 64 * 1024, 64 * 1024 + 4096, 5 * 64 * 1024 + 8192};
  std::uint64_t offset = 0;
  for (std::size_t n : sizes) {
    io::AlignedBuffer out(n), in(n);
    fill_pattern(out.data(), n, n);
    engine->run({{io::IoOp::kWrite, f, offset, out.data(), n}});
    engine->run({{io::IoOp::kRead, f, offset, in.data(), n}});
    CHECK(std::memcmp(out.data(), in.data(), n) == 0);
    offset += n;
  }
  CHECK(engine->file_size(f) == offset);
  const io::IoStats s = engine->stats();
  CHECK(s.bytes_written == offset);
  CHECK(s.bytes_read == offset);
  CHECK(s.blocks == 2 * (1 + 1 + 2 + 6));
}

TEST_CASE("a batch of many requests completes with every byte where it belongs") {
  TempDir dir;
  auto engine = io::IoEngine::create(small_options(), {dir.path()});
  const io::FileId f = engine->open_file(dir.path() + "/data", io::OpenMode::kCreate);
  constexpr std::size_t kPieces = 64, kPiece = 8192;
  io::AlignedBuffer out(kPieces * kPiece), in(kPieces * kPiece);
  fill_pattern(out.data(), out.size(), 11);
  std::vector<io::IoRequest> writes, reads;
  for (std::size_t i = 0; i < kPieces; ++i) {
    // Reverse order on disk: piece i of the buffer goes to slot kPieces-1-i of the file.
    const std::uint64_t at = (kPieces - 1 - i) * kPiece;
    writes.push_back({io::IoOp::kWrite, f, at, out.data() + i * kPiece, kPiece});
    reads.push_back({io::IoOp::kRead, f, at, in.data() + i * kPiece, kPiece});
  }
  engine->submit(writes).get();
  engine->submit(reads).get();
  CHECK(std::memcmp(out.data(), in.data(), out.size()) == 0);
}

TEST_CASE("concurrent submitters from several threads each get their own bytes back") {
  TempDir dir;
  auto engine = io::IoEngine::create(small_options(), {dir.path()});
  const io::FileId a = engine->open_file(dir.path() + "/a", io::OpenMode::kCreate);
  const io::FileId b = engine->open_file(dir.path() + "/b", io::OpenMode::kCreate);
  constexpr int kThreads = 4;
  constexpr std::size_t kBytes = 256 * 1024;
  std::vector<int> ok(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      io::AlignedBuffer out(kBytes), in(kBytes);
      const io::FileId f = t % 2 == 0 ? a : b;
      const std::uint64_t at = static_cast<std::uint64_t>(t / 2) * kBytes;
      int good = 1;
      for (int round = 0; round < 3; ++round) {
        fill_pattern(out.data(), kBytes, static_cast<std::uint64_t>(t * 10 + round));
        engine->run({{io::IoOp::kWrite, f, at, out.data(), kBytes}});
        engine->run({{io::IoOp::kRead, f, at, in.data(), kBytes}});
        good &= std::memcmp(out.data(), in.data(), kBytes) == 0 ? 1 : 0;
      }
      ok[t] = good;
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) CHECK(ok[t] == 1);
}

TEST_CASE("registered buffers are used as fixed buffers by the io_uring backend") {
  TempDir dir;
  auto engine = io::IoEngine::create(small_options(), {dir.path()});
  const io::FileId f = engine->open_file(dir.path() + "/data", io::OpenMode::kCreate);
  io::AlignedBuffer buf(256 * 1024);
  fill_pattern(buf.data(), buf.size(), 5);
  const bool registered = engine->register_buffer(buf.data(), buf.size());
  engine->run({{io::IoOp::kWrite, f, 0, buf.data(), buf.size()}});
  io::AlignedBuffer in(buf.size());
  engine->run({{io::IoOp::kRead, f, 0, in.data(), in.size()}});
  CHECK(std::memcmp(buf.data(), in.data(), buf.size()) == 0);
  if (engine->backend() == io::IoBackend::kUring) {
    CHECK(registered);
    CHECK(engine->stats().fixed_buffer_blocks ==
          4);  // the write's 4 blocks; `in` is not registered
  } else {
    CHECK_FALSE(registered);
  }
  engine->unregister_buffer(buf.data());
}

TEST_CASE("an unaligned O_DIRECT request is refused before any I/O with a usage error") {
  TempDir dir;
  auto engine = io::IoEngine::create(small_options(), {dir.path()});
  const io::FileId f = engine->open_file(dir.path() + "/data", io::OpenMode::kCreate);
  io::AlignedBuffer buf(8192);
  CHECK_THROWS_AS(engine->submit({{io::IoOp::kWrite, f, 100, buf.data(), 4096}}),
                  sparsetrain::common::UsageError);
  CHECK_THROWS_AS(engine->submit({{io::IoOp::kWrite, f, 0, buf.data(), 4095}}),
                  sparsetrain::common::UsageError);
  CHECK_THROWS_AS(engine->submit({{io::IoOp::kWrite, f, 0, buf.data() + 1, 4096}}),
                  sparsetrain::common::UsageError);
  CHECK(engine->stats().blocks == 0);
}

TEST_CASE("reading past the end of a file fails with an IoError naming the path") {
  TempDir dir;
  auto engine = io::IoEngine::create(small_options(), {dir.path()});
  const std::string path = dir.path() + "/short";
  const io::FileId f = engine->open_file(path, io::OpenMode::kCreate);
  io::AlignedBuffer buf(3 * 64 * 1024);
  engine->run({{io::IoOp::kWrite, f, 0, buf.data(), 4096}});
  try {
    engine->run({{io::IoOp::kRead, f, 0, buf.data(), buf.size()}});
    FAIL("expected an IoError");
  } catch (const io::IoError& e) {
    CHECK(e.path() == path);
    CHECK(std::string(e.what()).find(path) != std::string::npos);
  }
  // One block across EOF: the read returns 4096 bytes (short, requeued), then 0 (the error).
  const std::uint64_t before = engine->stats().requeued;
  CHECK_THROWS_AS(engine->run({{io::IoOp::kRead, f, 0, buf.data(), 64 * 1024}}), io::IoError);
  CHECK(engine->stats().requeued == before + 1);
  // The engine stays usable after a failed batch.
  engine->run({{io::IoOp::kRead, f, 0, buf.data(), 4096}});
}

TEST_CASE("a missing directory gives a usage error naming the path") {
  TempDir dir;
  auto engine = io::IoEngine::create(small_options(), {dir.path()});
  const std::string path = dir.path() + "/no/such/dir/file";
  try {
    engine->open_file(path, io::OpenMode::kCreate);
    FAIL("expected a UsageError");
  } catch (const sparsetrain::common::UsageError& e) {
    CHECK(std::string(e.what()).find(path) != std::string::npos);
    CHECK(std::string(e.what()).find("No such file or directory") != std::string::npos);
  }
}

TEST_CASE("the backend can be chosen explicitly and bad engine options are usage errors") {
  io::IoOptions o = small_options();
  o.backend = io::IoBackend::kThreads;
  CHECK(io::IoEngine::create(o)->backend() == io::IoBackend::kThreads);
  CHECK(io::parse_io_backend("uring") == io::IoBackend::kUring);
  CHECK_THROWS_AS(io::parse_io_backend("aio"), sparsetrain::common::UsageError);
  o.block_bytes = 1000;
  CHECK_THROWS_AS(io::IoEngine::create(o), sparsetrain::common::UsageError);
  o.block_bytes = 4096;
  o.queue_depth = 0;
  CHECK_THROWS_AS(io::IoEngine::create(o), sparsetrain::common::UsageError);
}

TEST_CASE(
    "aligned buffers are page-aligned, zero-filled and rounded up; large ones 2 MiB-aligned") {
  io::AlignedBuffer small(1);
  CHECK(reinterpret_cast<std::uintptr_t>(small.data()) % io::kIoAlignment == 0);
  CHECK(small.size() == 4096);
  CHECK(small.data()[4095] == std::byte{0});
  io::AlignedBuffer large((3u << 20) + 5);
  CHECK(reinterpret_cast<std::uintptr_t>(large.data()) % (2u << 20) == 0);
  CHECK(large.size() == (4u << 20));
  CHECK(large.data()[(3u << 20) + 4] == std::byte{0});
  io::AlignedBuffer moved = std::move(large);
  CHECK(large.data() == nullptr);
  CHECK(moved.size() == (4u << 20));
}
