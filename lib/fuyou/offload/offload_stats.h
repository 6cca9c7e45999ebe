// What the offloaded trainer measured over one run: bytes per tier, commits, the stream's loads
// and waits, the phases of its compute and optimizer threads. Volatile (depends on the machine):
// it goes to the run record's `run` block, never beside the metrics.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>

#include "common/timer.h"

namespace sparsetrain::fuyou {

// Measured over one run (volatile: depends on the machine).
struct OffloadStats {
  std::uint64_t ssd_read_bytes = 0;   // state reads (store → staging)
  std::uint64_t ssd_write_bytes = 0;  // state write-backs (staging or CPU states → store)
  std::uint64_t pcie_d2h_bytes = 0;   // CUDA: gradients down (fp32), drains included
  // CUDA: updated weights up (bf16), and streamed blocks' loads (validation passes included).
  std::uint64_t pcie_h2d_bytes = 0;
  std::uint64_t commits = 0;
  // Streamed blocks (plan().stream_slots > 0): weights loaded (store or RAM; counted in
  // ssd_read_bytes when from the store, validation passes included), and the compute thread's
  // waits for them (inside its forward and backward times).
  std::uint64_t stream_read_bytes = 0;
  double stream_wait_seconds = 0;
  // Block inputs through the store (plan().inputs_in_store), counted in ssd_*_bytes too; on CUDA
  // through pinned CPU memory (plan().inputs_in_cpu), counted in pcie_*_bytes instead.
  std::uint64_t input_bytes_written = 0, input_bytes_read = 0;
  // The activations the policy keeps (kept_activations.h): copied to and from CPU memory, and
  // through the store (counted in ssd_*_bytes too).
  std::uint64_t activation_bytes_to_cpu = 0, activation_bytes_from_cpu = 0;
  std::uint64_t activation_bytes_written = 0, activation_bytes_read = 0;
  // FLOPs the backwards' recompute spent (block_activations.h's count).
  double recompute_flops = 0;
  // The compute tier's peak while train() ran (compute_meter.h): on CUDA the device's allocated
  // bytes; on the CPU tier the tensors allocated during the run (the dynamic part of the plan's
  // compute tier: its resident weights and buffers existed before).
  std::uint64_t compute_peak_bytes = 0;
  // Units whose AdamW finished while the compute thread was still in that step's backward: the
  // overlap, counted (0 with --grad-clip, whose updates wait for the norm).
  std::uint64_t units_updated_during_backward = 0;
  std::int64_t steps = 0;               // steps this run took
  double step_seconds = 0;              // training seconds / steps (evaluation excluded)
  common::PhaseTimes compute_phases;    // compute thread: forward, backward, wait_*
  common::PhaseTimes optimizer_phases;  // optimizer thread: read_wait, adam, write_wait, commit
};

// Every field under its own name (bytes, counts, seconds), the phases as "compute_thread" and
// "optimizer_thread" objects {phase: seconds} (absent when empty): the run record's
// run.offload_measured, beside which the caller puts what needs the plan (the bound's ratio).
void to_json(nlohmann::json& j, const OffloadStats& stats);

}  // namespace sparsetrain::fuyou
