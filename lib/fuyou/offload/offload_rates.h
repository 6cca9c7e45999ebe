// Throughputs measured on this machine for the planner's lower bound (offload_plan.h), each in
// well under a second: the compute tier's rate on one transformer block's forward + recompute
// backward at the run's shapes (not a bare GEMM: attention, LayerNorm and GELU run below GEMM
// speed, and a bound from GEMM peak would blame the pipeline for them), the fused CPU
// AdamW's parameters/s, pinned PCIe copies both ways, and the --ssd directories' O_DIRECT
// sequential write and read rates. What is not measured keeps `base`'s value.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "fuyou/model/model_config.h"
#include "fuyou/offload/offload_plan.h"
#include "fuyou/train/train_options.h"

namespace sparsetrain::fuyou {

// Compute: one fp32 block forward + backward on the CPU; cpu_adam: fp32 gradients, no weight
// output (about 0.3 s, more for a block that takes longer than that).
OffloadRates measure_cpu_rates(const ModelConfig& config, const TrainOptions& train,
                               OffloadRates base = {});

// Compute: one bf16 block forward + backward on the GPU; pcie_h2d / pcie_d2h: 256 MiB pinned
// copies; cpu_adam: fp32 gradients in, bf16 weights out (as the CUDA tier runs it); stream_convert:
// the streamed blocks' fp32 -> bf16 conversion over 64 M floats. EnvironmentError without a CUDA
// device.
OffloadRates measure_cuda_rates(const ModelConfig& config, const TrainOptions& train,
                                OffloadRates base = {});

// The rates measured on the H200 machine (16 cores, one NVMe SSD; GPT-3 1.3B, B = 8, T = 1024;
// bench/results/fuyou_h200/final/offload-store-states.json), for planning a CUDA run on a machine
// without a GPU (`--device cuda --dry-run`): its bound is that machine's, not this one's.
// stream_convert was not measured there (0: no such term).
OffloadRates reference_cuda_rates();

// ssd_write / ssd_read / ssd_mixed: common/io/ssd_probe.h's phases (as `fuyou bench-io` runs them)
// over one scratch file of `bytes_per_dir` (capped at an eighth of the free space) in every
// directory, striped in 4 MiB units as the store stripes: a write, a read back, then the first
// halves read while the second halves are written (what a step with the states in the store
// does; reads and writes together); the files are removed. The rates are totals over the
// directories. Reads without O_DIRECT (the page cache) keep `base`'s read and mixed rates; a
// directory that cannot take the probe keeps all of `base`'s, with a warning.
OffloadRates measure_ssd_rates(const std::vector<std::string>& dirs, OffloadRates base = {},
                               std::uint64_t bytes_per_dir = std::uint64_t{256} << 20);

// Every rate under its field's name (bytes/s, FLOP/s, parameters/s; 0 = not measured). OffloadRates
// itself is in offload_plan.h, the planner's input; its JSON lives here, with its measurement.
void to_json(nlohmann::json& j, const OffloadRates& rates);

}  // namespace sparsetrain::fuyou
