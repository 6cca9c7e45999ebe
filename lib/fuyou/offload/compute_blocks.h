// Where the compute thread gets block l's compute weights, chosen once from the plan
// (stream_slots):
//  - ResidentBlocks: every block in the compute tier, updated there by the optimizer;
//  - StreamedBlocks: the blocks stream through plan().stream_slots slots from their fp32 master
//    (block_stream.h; on CUDA converted to bf16 and uploaded, cuda_transfer.h), in the order of
//    use: before each forward and again before each backward (recompute).
// A pass is start(sequence), then acquire(l) / release() per use in that sequence.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "fuyou/model/gpt_weights.h"
#include "fuyou/model/model_config.h"

namespace sparsetrain::fuyou {

class StatePlacement;
struct OffloadStats;

class ComputeBlocks {
 public:
  virtual ~ComputeBlocks() = default;
  // The order of the pass's uses (BlockStream::training_sequence / forward_sequence).
  virtual void start(std::vector<std::int64_t> sequence) = 0;
  // Block l's weights, for the compute thread until release().
  virtual const BlockWeights& acquire(std::int64_t l) = 0;
  virtual void release() = 0;
  // At the end of a run: the loads and waits it counted.
  virtual void add_stats(OffloadStats& stats) const = 0;
};

// Resident: `blocks` (the trainer's compute weights) must outlive it.
std::unique_ptr<ComputeBlocks> make_resident_blocks(const std::vector<BlockWeights>& blocks);

// Streamed through `slots` slots from `states` (the block's master, in RAM or the store), fp32 on
// the CPU tier, bf16 on the GPU when `cuda`; `states` must outlive it.
std::unique_ptr<ComputeBlocks> make_streamed_blocks(const ModelConfig& config, std::int64_t slots,
                                                    std::int64_t piece_floats, bool cuda,
                                                    StatePlacement& states);

}  // namespace sparsetrain::fuyou
