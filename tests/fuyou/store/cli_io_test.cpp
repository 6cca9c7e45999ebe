// `sparsetrain fuyou bench-io` and `sparsetrain fuyou store verify` as a user sees them: exit
// codes, one-line errors, and the run record's figures.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli/process.h"
#include "common/atomic_file.h"
#include "common/io/io_test_util.h"
#include "fuyou/store/tensor_store.h"

using sparsetrain::test::run_process;
using sparsetrain::test::TempDir;

TEST_CASE("bench-io on a small size exits 0 and records read and write bandwidth per directory") {
  TempDir root;
  const std::string out = root.path() + "/profile.json";
  const auto r = run_process(SPARSETRAIN_BINARY,
                             {"fuyou", "bench-io", "--ssd", root.sub("a") + "," + root.sub("b"),
                              "--size", "8MiB", "--block", "256KiB", "--qd", "8", "--out", out});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto record = nlohmann::json::parse(sparsetrain::common::read_file(out));
  const auto& m = record.at("metrics");
  CHECK(m.at("per_dir").size() == 2);
  CHECK(m.at("per_dir")[0].at("write").at("write_gbps").get<double>() > 0);
  CHECK(m.at("per_dir")[1].at("read").at("read_gbps").get<double>() > 0);
  CHECK(m.at("striped").at("read_write").at("write_gbps").get<double>() > 0);
  CHECK(m.at("block_bytes") == 256 * 1024);
  // The scratch files are gone.
  CHECK(std::filesystem::is_empty(root.path() + "/a"));
}

TEST_CASE("bench-io with a missing directory or a bad block size is a usage error (exit 2)") {
  TempDir root;
  auto r = run_process(SPARSETRAIN_BINARY,
                       {"fuyou", "bench-io", "--ssd", root.path() + "/missing", "--size", "1MiB"});
  CHECK(r.exit_code == 2);
  r = run_process(SPARSETRAIN_BINARY,
                  {"fuyou", "bench-io", "--ssd", root.path(), "--size", "1MiB", "--block", "1000"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("multiple of 4096") != std::string::npos);
}

TEST_CASE("store verify passes a good store (exit 0) and fails a corrupted one (exit 1)") {
  TempDir root;
  const std::string dir = root.sub("s");
  {
    auto store = sparsetrain::fuyou::TensorStore::create({dir});
    std::vector<unsigned char> data(10000);
    sparsetrain::test::fill_pattern(data.data(), data.size(), 1);
    store->define("w", sparsetrain::fuyou::StoreDType::kU8, {10000});
    store->write("w", data.data()).get();
    store->commit();
  }
  auto r = run_process(SPARSETRAIN_BINARY, {"fuyou", "store", "verify", dir});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("0 bad") != std::string::npos);
  {
    std::fstream f(dir + "/sparsetrain-store.0.dat",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4 * 1024 * 1024 + 17);  // slot 1 of extent 0: where the first write went
    f.put('\x7f');
  }
  r = run_process(SPARSETRAIN_BINARY, {"fuyou", "store", "verify", dir});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("failed verification") != std::string::npos);
  r = run_process(SPARSETRAIN_BINARY, {"fuyou", "store", "verify", root.sub("empty")});
  CHECK(r.exit_code == 2);
}
