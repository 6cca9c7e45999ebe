#include "common/run/run_record.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>

#include "common/atomic_file.h"

using namespace sparsetrain::common;

TEST_CASE("a run record carries schema, command, config, build, status, metrics and a run block") {
  RunRecord record("teddy prune", {"sparsetrain", "teddy", "prune"});
  record.config()["graph-sparsity"] = 0.2;
  record.metrics()["edges_after"] = 4222;
  { auto t = record.timings().scope("score"); }
  record.set_ok();
  const nlohmann::json doc = record.to_json();
  CHECK(doc["schema"] == "sparsetrain.run");
  CHECK(doc["schema_version"] == 1);
  CHECK(doc["command"] == "teddy prune");
  CHECK(doc["config"]["graph-sparsity"] == 0.2);
  CHECK(doc["status"] == "ok");
  CHECK(doc["metrics"]["edges_after"] == 4222);
  CHECK(doc["build"].contains("git_commit"));
  CHECK(doc["build"].contains("torch"));
  CHECK(doc["run"]["timings_s"].contains("score"));
  CHECK(doc["run"]["peak_rss_bytes"].get<std::uint64_t>() > 0);
  CHECK_FALSE(doc.contains("error"));
}

TEST_CASE("a failed run record says why and is still written") {
  RunRecord record("fuyou finetune", {});
  record.set_failed(RunError("disk full", "free space"));
  const std::string path =
      (std::filesystem::temp_directory_path() / ("st-record-" + std::to_string(::getpid())))
          .string();
  record.write(path);
  auto doc = nlohmann::json::parse(read_file(path));
  CHECK(doc["status"] == "failed");
  CHECK(doc["error"]["message"] == "disk full");
  CHECK(doc["error"]["hint"] == "free space");
  CHECK(doc["error"]["exit_code"] == 1);
  std::filesystem::remove(path);
}

TEST_CASE("a record that never reached set_ok reports failure") {
  RunRecord record("x", {});
  CHECK(record.to_json()["status"] == "failed");
}
