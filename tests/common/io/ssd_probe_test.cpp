// The SSD bandwidth probe: its shape arithmetic (hand-worked), and one small run whose phases move
// exactly the bytes the shape says and leave no scratch file behind.
#include "common/io/ssd_probe.h"

#include <doctest/doctest.h>

#include <filesystem>

#include "common/io/io_test_util.h"

using namespace sparsetrain::common::io;
using sparsetrain::test::TempDir;

namespace {
constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
}

TEST_CASE("the probe shape rounds to whole blocks and stripe units, halves included") {
  // 8 MiB in 1 MiB blocks, 4 MiB units: two halves of one unit each.
  SsdProbeShape s = fit_ssd_probe(8 * kMiB, 4 * kMiB, kMiB);
  CHECK(s.file_bytes == 8 * kMiB);
  CHECK(s.half_bytes == 4 * kMiB);
  CHECK(s.stripe_bytes == 4 * kMiB);
  // 3 MiB in 512 KiB blocks, 5 MiB units: the half (1.5 MiB) caps the unit.
  s = fit_ssd_probe(3 * kMiB, 5 * kMiB, kMiB / 2);
  CHECK(s.stripe_bytes == 3 * kMiB / 2);
  CHECK(s.file_bytes == 3 * kMiB);
  // 9 MiB, 4 MiB units: a half of 4.5 MiB holds one whole unit.
  s = fit_ssd_probe(9 * kMiB, 4 * kMiB, kMiB);
  CHECK(s.half_bytes == 4 * kMiB);
  CHECK(s.file_bytes == 8 * kMiB);
  // A unit under one block, or a size under two blocks, does not fit.
  CHECK(fit_ssd_probe(8 * kMiB, 4096, 8192).stripe_bytes == 0);
  CHECK(fit_ssd_probe(kMiB, 4 * kMiB, kMiB).file_bytes == 0);
}

TEST_CASE("a probe over two directories moves the shape's bytes and removes its scratch files") {
  TempDir root;
  const std::vector<std::string> dirs = {root.sub("a"), root.sub("b")};
  IoOptions options;
  options.block_bytes = 256 * 1024;
  options.queue_depth = 4;
  auto engine = IoEngine::create(options, dirs);
  const SsdProbeShape shape = fit_ssd_probe(2 * kMiB, kMiB, options.block_bytes);
  std::vector<std::string> phases;
  {
    SsdProbe probe(*engine, dirs, shape, "probe-test");
    const std::vector<FileId> files = probe.create_files("");
    REQUIRE(files.size() == 2);
    const ProbeTargetRate rate = probe.run(
        files, [&](const std::string& phase, const ProbePhaseRate&) { phases.push_back(phase); });
    REQUIRE(rate.write.streams.size() == 1);
    CHECK(rate.write.streams[0].bytes == 2 * shape.file_bytes);
    CHECK(rate.read.streams[0].bytes == 2 * shape.file_bytes);
    REQUIRE(rate.read_write.streams.size() == 2);
    CHECK(rate.read_write.streams[0].bytes == 2 * shape.half_bytes);
    CHECK(rate.read_write.streams[1].bytes == 2 * shape.half_bytes);
    CHECK(rate.write.streams[0].gbps > 0);
    CHECK(rate.read_write.bytes_per_s() > 0);
    CHECK(!std::filesystem::is_empty(dirs[0]));
  }
  CHECK(phases == std::vector<std::string>{"write", "read", "read_write"});
  CHECK(std::filesystem::is_empty(dirs[0]));
  CHECK(std::filesystem::is_empty(dirs[1]));
}
