// A streamed block's gradient accumulators on the CPU side (plan block_grads_in_cpu: with
// accumulation or clipping, when the compute tier holds only a pool of two block gradient
// buffers). Each micro-batch's gradients of block l leave the compute tier right after its
// backward and the optimizer thread drains them into the block's fp32 accumulator: copy at
// micro-batch 0, then add, per element ((g0 + g1) + g2) … — the in-memory trainer's own additions
// in its order, so the sum is bit for bit the same. Chosen once from the plan:
//  - AccumulatorsInRam: one fp32 BlockWeights per block (4 B per block parameter of --cpu-mem);
//  - AccumulatorsInStore (plan block_grads_in_store): one store tensor per block in state-piece
//    layout; the drain reads the stored sum while the piece comes down, adds, writes it back (one
//    write in flight), and the update reads it back piece by piece, prefetching.
// With K > 1 the last drain also computes the block's squared-norm terms (norm_terms), which the
// compute thread reads once every drain of the step is done (OptimizerStage::wait_drains).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "common/io/aligned_buffer.h"
#include "common/timer.h"
#include "fuyou/offload/offload_units.h"
#include "fuyou/offload/optimizer_jobs.h"

namespace sparsetrain::fuyou {

class ComputeTierLink;
class TensorStore;
struct OffloadStats;

class GradAccumulators {
 public:
  virtual ~GradAccumulators() = default;

  // Optimizer thread: adds job's micro-batch into block job.unit - 1's accumulator through
  // `link`, then gives its pool slot back through `release_slot` (as soon as the slot is free).
  virtual void drain(DrainJob& job, ComputeTierLink& link,
                     const std::function<void(int)>& release_slot, common::PhaseTimes& phases) = 0;
  // Compute thread, at a block's last micro-batch: what its update job carries as gradients.
  virtual std::vector<at::Tensor> update_grads(std::int64_t layer) = 0;
  // Optimizer thread, a step's updates over `pieces` (the processing order): before piece s's
  // AdamW (`last_piece` of its unit; `drains_done`: every drain of the step is done), then its
  // gradients (one view per span) for a drained block's update `job`.
  virtual void start_step(const std::vector<UnitPiece>& pieces) { (void)pieces; }
  virtual void prefetch(std::size_t s, bool last_piece, bool drains_done) {
    (void)s, (void)last_piece, (void)drains_done;
  }
  virtual std::vector<at::Tensor> piece_grads(const UpdateJob& job, std::size_t s,
                                              const std::vector<TensorSpan>& spans,
                                              common::PhaseTimes& phases) = 0;

  // Block l's squared-norm terms (per tensor, double) from its last drain (K > 1).
  std::vector<at::Tensor>& norm_terms(std::int64_t layer) {
    return norm_terms_[static_cast<std::size_t>(layer)];
  }

 protected:
  explicit GradAccumulators(std::int64_t layers) : norm_terms_(static_cast<std::size_t>(layers)) {}

 private:
  std::vector<std::vector<at::Tensor>> norm_terms_;
};

// `units`, `grad_slots` (two buffers of one block piece: pinned on CUDA, the CPU tier's own
// otherwise), `store` and `stats` must outlive the accumulators.
std::unique_ptr<GradAccumulators> make_accumulators_in_ram(const ModelConfig& config,
                                                           const std::vector<UnitTensors>& units,
                                                           common::io::AlignedBuffer* grad_slots);
std::unique_ptr<GradAccumulators> make_accumulators_in_store(
    const ModelConfig& config, const std::vector<UnitTensors>& units, std::int64_t piece_floats,
    common::io::AlignedBuffer* grad_slots, TensorStore& store, OffloadStats& stats);

}  // namespace sparsetrain::fuyou
