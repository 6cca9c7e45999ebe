// The run record: one JSON document per run, the thing sweeps and plots consume.
//
//   { "schema": "sparsetrain.run", "schema_version": 1,
//     "command": "teddy prune",
//     "config":  { resolved options that influence results: flags > --config file > defaults },
//     "build":   { version, git_commit, torch, cuda, liburing, compiler, build_type },
//     "status":  "ok" | "failed" | "interrupted",
//     "error":   { "message", "hint", "exit_code" }            (only when not ok)
//     "metrics": { command-specific results },
//     "run":     { volatile: argv, host, started_at, wall_s, timings{phase: s}, peak_rss_bytes,
//                  environment{cpu, memory, cuda devices}, output plumbing (--out, --jsonl, …) } }
//
// Everything outside "run" is a function of (build, config, seed): two runs that agree there must
// produce byte-identical documents once "run" is removed (tested in tests/cli).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/timer.h"

namespace sparsetrain::common {

class RunRecord {
 public:
  static constexpr const char* kSchema = "sparsetrain.run";
  static constexpr int kSchemaVersion = 1;

  RunRecord(std::string command, std::vector<std::string> argv);

  nlohmann::json& config() { return config_; }
  nlohmann::json& metrics() { return metrics_; }
  // Extra volatile fields (merged into "run").
  nlohmann::json& run_extra() { return run_extra_; }
  PhaseTimes& timings() { return timings_; }

  void set_ok() { status_ = "ok"; }
  void set_failed(const Error& error);
  void set_failed(ExitCode code, const std::string& message, const std::string& hint);
  const std::string& status() const { return status_; }

  // The whole document, with "run" filled in at the time of the call.
  nlohmann::json to_json() const;
  // Atomically writes to_json() (2-space indent) to `path`; '-' = stdout.
  void write(const std::string& path) const;

 private:
  std::string command_;
  std::vector<std::string> argv_;
  std::string started_at_;  // ISO 8601 UTC
  Timer wall_;
  std::string status_ = "failed";  // until set_ok(): a crash mid-run is never reported as ok
  nlohmann::json error_;
  nlohmann::json config_ = nlohmann::json::object();
  nlohmann::json metrics_ = nlohmann::json::object();
  nlohmann::json run_extra_ = nlohmann::json::object();
  PhaseTimes timings_;
};

// The "build" block, also printed by --version.
nlohmann::json build_json();

}  // namespace sparsetrain::common
