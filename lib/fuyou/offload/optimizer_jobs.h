// What the compute thread hands the optimizer thread (optimizer_stage.h), one job at a time in
// the order the backward finishes them: a unit's final gradients to update with, one
// micro-batch's gradients of a block to drain into its CPU-side accumulator (grad_accumulators.h),
// or the seal of a step whose updates wait for it (the one-slot store).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "fuyou/offload/cuda_transfer.h"
#include "fuyou/offload/step_journal.h"

namespace sparsetrain::fuyou {

struct UpdateJob {
  std::int64_t unit = 0;
  // In the unit's tensor order: the compute tier's accumulators (or pool slot), or, for a drained
  // block, its CPU accumulator (empty when the accumulators are in the store).
  std::vector<at::Tensor> grads;
  double scale = 1.0;  // clipping factor, applied when `scaled`
  bool scaled = false;
  int pool_slot = -1;    // block gradient pool slot to give back, or -1
  CudaMark ready;        // CUDA: the gradients are final once the compute stream reaches it
  bool drained = false;  // a drained block: the gradients are on the CPU side already
};

struct DrainJob {
  std::int64_t unit = 0;          // a block: 1 + l
  std::vector<at::Tensor> grads;  // a pool slot: one micro-batch's gradients of the block
  int pool_slot = -1;
  CudaMark ready;
  bool first = false;  // micro-batch 0: copy into the accumulator, else add
  bool norm = false;   // the last micro-batch with K > 1: then compute the block's norm terms
};

// The one-slot store (step_journal.h), after the backward and before the step's first update: write
// the gradients the store does not hold yet (the embeddings' and ln_f's, each store tensor's
// tensors one after another from byte 0), sync, and journal the step.
struct SealJob {
  SealedStep step;
  std::vector<std::pair<std::string, std::vector<at::Tensor>>> grads;  // store tensor, tensors
  CudaMark ready;  // CUDA: the gradients are final once the compute stream reaches it
};

using OptimizerJob = std::variant<UpdateJob, DrainJob, SealJob>;

}  // namespace sparsetrain::fuyou
