// OffloadStats as JSON (see offload_stats.h).
#include "fuyou/offload/offload_stats.h"

#include <nlohmann/json.hpp>

namespace sparsetrain::fuyou {

void to_json(nlohmann::json& j, const OffloadStats& stats) {
  j = {{"steps", stats.steps},
       {"step_seconds", stats.step_seconds},
       {"ssd_read_bytes", stats.ssd_read_bytes},
       {"ssd_write_bytes", stats.ssd_write_bytes},
       {"commits", stats.commits},
       {"stream_read_bytes", stats.stream_read_bytes},
       {"stream_wait_seconds", stats.stream_wait_seconds},
       {"input_bytes_written", stats.input_bytes_written},
       {"input_bytes_read", stats.input_bytes_read},
       {"activation_bytes_to_cpu", stats.activation_bytes_to_cpu},
       {"activation_bytes_from_cpu", stats.activation_bytes_from_cpu},
       {"activation_bytes_written", stats.activation_bytes_written},
       {"activation_bytes_read", stats.activation_bytes_read},
       {"recompute_flops", stats.recompute_flops},
       {"compute_peak_bytes", stats.compute_peak_bytes},
       {"units_updated_during_backward", stats.units_updated_during_backward},
       {"pcie_h2d_bytes", stats.pcie_h2d_bytes},
       {"pcie_d2h_bytes", stats.pcie_d2h_bytes}};
  for (const auto& [phase, seconds] : stats.compute_phases.all()) {
    j["compute_thread"][phase] = seconds;
  }
  for (const auto& [phase, seconds] : stats.optimizer_phases.all()) {
    j["optimizer_thread"][phase] = seconds;
  }
}

}  // namespace sparsetrain::fuyou
