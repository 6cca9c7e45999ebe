#include "common/run/run_record.h"

#include <unistd.h>

#include <ctime>

#include "common/atomic_file.h"
#include "common/run/build_info.h"
#include "common/run/system_info.h"

namespace sparsetrain::common {

namespace {

std::string utc_now_iso8601() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

nlohmann::json environment_json() {
  const CpuInfo cpu = cpu_info();
  const CudaInfo cuda = cuda_info();
  nlohmann::json devices = nlohmann::json::array();
  for (std::size_t i = 0; i < cuda.devices.size(); ++i) {
    devices.push_back({{"name", cuda.devices[i]}, {"memory_bytes", cuda.device_bytes[i]}});
  }
  return {{"cpu",
           {{"model", cpu.model},
            {"logical_cores", cpu.logical_cores},
            {"avx2", cpu.avx2},
            {"avx512f", cpu.avx512f},
            {"avx512bf16", cpu.avx512bf16}}},
          {"memory_bytes", total_memory_bytes()},
          {"cuda_driver_version", cuda.driver_version},
          {"cuda_devices", devices}};
}

}  // namespace

nlohmann::json build_json() {
  const BuildInfo& b = build_info();
  const CudaInfo cuda = cuda_info();
  return {
      {"version", b.version},           {"git_commit", b.git_commit},
      {"torch", b.torch_version},       {"cuda_runtime", cuda.compiled ? cuda.runtime_version : 0},
      {"liburing", b.liburing_version}, {"compiler", b.compiler},
      {"build_type", b.build_type},     {"sanitize", b.sanitize}};
}

RunRecord::RunRecord(std::string command, std::vector<std::string> argv)
    : command_(std::move(command)), argv_(std::move(argv)), started_at_(utc_now_iso8601()) {}

void RunRecord::set_failed(const Error& error) {
  set_failed(error.code(), error.what(), error.hint());
}

void RunRecord::set_failed(ExitCode code, const std::string& message, const std::string& hint) {
  status_ = code == ExitCode::kInterrupted ? "interrupted" : "failed";
  error_ = {{"message", message}, {"exit_code", static_cast<int>(code)}};
  if (!hint.empty()) error_["hint"] = hint;
}

nlohmann::json RunRecord::to_json() const {
  nlohmann::json doc;
  doc["schema"] = kSchema;
  doc["schema_version"] = kSchemaVersion;
  doc["command"] = command_;
  doc["config"] = config_;
  doc["build"] = build_json();
  doc["status"] = status_;
  if (!error_.is_null()) doc["error"] = error_;
  doc["metrics"] = metrics_;
  nlohmann::json run = {{"argv", argv_},
                        {"host", host_name()},
                        {"pid", static_cast<long>(::getpid())},
                        {"started_at", started_at_},
                        {"wall_s", wall_.seconds()},
                        {"timings_s", timings_.all()},
                        {"peak_rss_bytes", peak_rss_bytes()},
                        {"environment", environment_json()}};
  run.update(run_extra_);
  doc["run"] = std::move(run);
  return doc;
}

void RunRecord::write(const std::string& path) const {
  write_file_atomic(path,
                    to_json().dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace sparsetrain::common
