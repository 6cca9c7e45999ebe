// Where a forward's block inputs (the activation checkpoints each block's backward recomputes
// from) wait for the backward, chosen once from the plan:
//  - in the compute tier (kept as the forward made them);
//  - in the store (plan inputs_in_store, CPU tier: input_stash.h, through a few slots);
//  - in pinned CPU memory (plan inputs_in_cpu, CUDA tier: cuda_transfer.h's CudaInputStash).
// Per micro-batch: push(0) … push(L-1) in the forward, pop(L-1) … pop(0) in the backward, then
// end_pass(). Every round trip is exact: the backward sees the very tensors the forward made.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>

namespace sparsetrain::fuyou {

class TensorStore;
struct OffloadStats;

class BlockInputs {
 public:
  virtual ~BlockInputs() = default;
  virtual void push(std::int64_t layer, const at::Tensor& input) = 0;
  // Block `layer`'s input, valid until the next pop or end_pass.
  virtual at::Tensor pop(std::int64_t layer) = 0;
  virtual void end_pass() = 0;
  // At the end of a run: the bytes it moved (OffloadStats::input_bytes_*, and the tier's total).
  virtual void add_stats(OffloadStats& stats) const = 0;
};

std::unique_ptr<BlockInputs> make_inputs_in_compute_tier();
// Defines the store's input tensors (one [B·T·C] fp32 per block) unless they exist; `store` must
// outlive the placement.
std::unique_ptr<BlockInputs> make_inputs_in_store(TensorStore& store, std::int64_t layers,
                                                  std::int64_t batch, std::int64_t seq,
                                                  std::int64_t hidden);
std::unique_ptr<BlockInputs> make_inputs_in_pinned_cpu(std::int64_t layers, std::int64_t batch,
                                                       std::int64_t seq, std::int64_t hidden);

}  // namespace sparsetrain::fuyou
