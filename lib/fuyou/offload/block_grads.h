// The compute thread's side of a step's gradients.
//  - StepGradients: one step's hand-over of final gradients to the optimizer thread, and the
//    global norm. Without clipping each unit goes to the optimizer as soon as its gradients are
//    final (overlapping the rest of the backward); with clipping every unit waits for the norm,
//    computed over every unit's squared-norm terms in unit order (the in-memory trainer's sum),
//    and then goes, scaled. So does every unit when the updates are deferred (the one-slot store:
//    a step's gradients are sealed in the store before its first update, step_journal.h).
//  - BlockGradients: where block l's gradients add up over the K micro-batches, chosen once from
//    the plan: ResidentBlockGrads (one fp32 buffer per block in the compute tier), PooledBlockGrads
//    (K = 1, no clipping: two buffers used by turns, each handed to the optimizer with its block),
//    DrainedBlockGrads (plan block_grads_in_cpu: every micro-batch's gradients leave through the
//    pool of two and add up on the CPU side, grad_accumulators.h; streamed in pieces, they leave
//    piece by piece through two buffers of one piece).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "common/timer.h"
#include "fuyou/model/gpt_model.h"
#include "fuyou/offload/cuda_transfer.h"

namespace sparsetrain::fuyou {

class GradAccumulators;
class OptimizerStage;
class RankReduction;

class StepGradients {
 public:
  // mark: a CudaMark on the compute stream (CUDA) or none; phases: the compute thread's, with
  // `backward` the open "backward" scope the pool waits step out of.
  // `defer`: every update waits for the end of the backward even without clipping.
  StepGradients(OptimizerStage& stage, std::size_t units, double grad_clip, bool defer,
                std::function<CudaMark()> mark, common::PhaseTimes& phases,
                std::unique_ptr<common::PhaseTimes::Scope>& backward);
  // Deferred updates: called in finish_backward with the norm and the clipping factor (`scaled`:
  // applied) before any update is handed over.
  using SealFn = std::function<void(double norm, double scale, bool scaled)>;
  void set_seal(SealFn seal) { seal_ = std::move(seal); }
  // Data parallel (train/data_parallel.h): every unit's final gradients are summed over `ranks`
  // before their norm terms are taken and before they go to the optimizer.
  void set_ranks(RankReduction* ranks) { ranks_ = ranks; }
  // Sums `grads` (defined ones) over the ranks, in place, outside the backward's time (phase
  // rank_sum); nothing without ranks. Every rank calls it for the same units in the same order.
  void sum_over_ranks(const std::vector<at::Tensor>& grads);
  double sum_over_ranks(double value);

  // Unit's final gradients in the compute tier (in `pool_slot` of the block pool, or -1).
  void finish(std::int64_t unit, std::vector<at::Tensor> grads, int pool_slot);
  // A drained block's final gradients (its CPU accumulator, or none: in the store); its norm
  // terms come through add_norm_terms / set_norm_terms.
  void finish_drained(std::int64_t unit, std::vector<at::Tensor> grads);
  void add_norm_terms(std::int64_t unit, const std::vector<at::Tensor>& grads);
  void set_norm_terms(std::int64_t unit, std::vector<at::Tensor> terms);
  // A block pool slot, waiting outside the backward's time (phase grad_slot_wait).
  int acquire_pool_slot();
  void drain(std::int64_t unit, std::vector<at::Tensor> grads, int pool_slot, bool first,
             bool norm);
  // Waits for `n` drains (phase drain_wait).
  void wait_drains(std::int64_t n);
  // After the backward: the global norm before clipping (a `like`-device double sum, in unit
  // order); with clipping or deferral, every unit then goes to the optimizer in `order` (scaled
  // when clipping asks).
  double finish_backward(const at::Tensor& like, const std::vector<std::int64_t>& order);

 private:
  // Runs `wait` in phase `phase`, with the open "backward" scope closed meanwhile.
  void outside_backward(const char* phase, const std::function<void()>& wait);

  OptimizerStage& stage_;
  const double grad_clip_;
  const bool defer_;  // clipping or deferral
  std::function<CudaMark()> mark_;
  SealFn seal_;
  RankReduction* ranks_ = nullptr;
  common::PhaseTimes& phases_;
  std::unique_ptr<common::PhaseTimes::Scope>& backward_;
  std::vector<std::vector<at::Tensor>> norm_terms_;  // by unit, in the order they came
  std::vector<std::vector<at::Tensor>> deferred_;    // clipping: by unit, its gradients
  std::vector<bool> drained_;                        // by unit
};

class BlockGradients {
 public:
  virtual ~BlockGradients() = default;
  virtual void start_step() {}
  // Block l's gradients of micro-batch k (`last`: the step's last), just computed: the whole
  // block's (piece = kWholeBlock, compute_blocks.h) or one piece's, pieces 3 … 0 in turn.
  virtual void take(std::int64_t l, std::int64_t k, bool last, int piece, const BlockWeights& grads,
                    StepGradients& step) = 0;
  // After the step's backward passes, before the norm.
  virtual void finish_backward(StepGradients& step) { (void)step; }
};

// `buffers` fp32 gradient buffers shaped like `config`'s blocks, made with `fp32` (the compute
// tier's device): n_layer resident, or a pool of 2.
std::unique_ptr<BlockGradients> make_resident_block_grads(const ModelConfig& config,
                                                          const at::TensorOptions& fp32);
std::unique_ptr<BlockGradients> make_pooled_block_grads(const ModelConfig& config,
                                                        const at::TensorOptions& fp32,
                                                        std::int64_t buffers);
// `accumulators` must outlive it; accum: K. With pieces_per_block > 1 the blocks' gradients come
// piece by piece and the pool's buffers hold the largest piece, not a block.
std::unique_ptr<BlockGradients> make_drained_block_grads(const ModelConfig& config,
                                                         const at::TensorOptions& fp32,
                                                         std::int64_t buffers, std::int64_t accum,
                                                         std::int64_t pieces_per_block,
                                                         GradAccumulators& accumulators);

}  // namespace sparsetrain::fuyou
