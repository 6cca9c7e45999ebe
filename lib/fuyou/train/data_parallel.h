// The ranks of a data-parallel run, as both trainers see them: one interface, chosen once by the
// app (none: one process), implemented over torch's c10d by fuyou/dist (dist/rank_group.h).
//
// Each of R ranks runs K micro-batches of every step: rank r takes the step's micro-batches
// r·K … r·K + K - 1 of R·K (TrainOptions::ranks, ::rank; training_batch), with the gradient
// scale 1/(R·K); once a unit's gradients are final on every rank they are summed over the ranks,
// and the global norm, the clipping and the AdamW update then run on the sums. Every rank
// updates the same states with the same sums, so the replicas stay identical.
// Exactness: a step's gradient is the sum of its micro-batches' gradients, each formed from zero
// (gpt_model.h: gpt_forward_backward's embedding scratch), so with R = 2, K = 1 the sum over the
// ranks is the same addition as one process's K = 2 — equal bit for bit in fp32.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace sparsetrain::fuyou {

class RankReduction {
 public:
  virtual ~RankReduction() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Sums each tensor element-wise over the ranks, in place; blocks until done. Every rank calls
  // with tensors of the same shapes and dtypes, in the same order of calls (a collective).
  // Undefined tensors are skipped (on every rank alike).
  virtual void sum(const std::vector<at::Tensor>& tensors) = 0;
  // The sum of `value` over the ranks (a double: a step's loss sum).
  virtual double sum(double value) = 0;
};

}  // namespace sparsetrain::fuyou
