// How the optimizer thread reaches the compute tier, chosen once from the plan (the device):
//  - CPU tier: gradients are read where the backward left them, and AdamW writes the new compute
//    weights in place (fp32: they are the master's very bits);
//  - CUDA tier: gradients come down piece by piece into a pinned fp32 slot on a copy stream of
//    the optimizer thread's own, and AdamW writes bf16 weights into one of two pinned slots that
//    go up on that stream, one piece's upload overlapping the next piece's update.
// Slots alternate by the step's piece index s (s % 2). Optimizer thread only.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "common/io/aligned_buffer.h"
#include "common/timer.h"
#include "fuyou/offload/cuda_transfer.h"
#include "fuyou/offload/offload_units.h"

namespace sparsetrain::fuyou {

struct OffloadStats;

class ComputeTierLink {
 public:
  virtual ~ComputeTierLink() = default;
  // Copies gradients `src` (compute-tier views) into `dst` (CPU views of the same sizes) once the
  // compute stream reaches `ready`. Blocking.
  virtual void copy(const std::vector<at::Tensor>& src, std::vector<at::Tensor>& dst,
                    const CudaMark& ready) = 0;
  // A piece's gradients `grads` (views, one per span) made readable on the CPU: left as they are
  // (returns false: they alias the CPU tier's compute memory, or CPU memory already), or
  // downloaded from the GPU into `slot`
  // (one piece of floats) and replaced by views of it (returns true: the compute tier's buffer is
  // free of them). `phases`, when given, times the download.
  virtual bool fetch(std::vector<at::Tensor>& grads, const std::vector<TensorSpan>& spans,
                     float* slot, const CudaMark& ready, common::PhaseTimes* phases) = 0;
  // Where AdamW writes piece s's new compute weights, one view per span.
  virtual std::vector<at::Tensor> outputs(const UnitTensors& unit,
                                          const std::vector<TensorSpan>& spans, std::size_t s,
                                          common::PhaseTimes& phases) = 0;
  // After AdamW: puts piece s's outputs into the compute weights.
  virtual void publish(const UnitTensors& unit, const std::vector<TensorSpan>& spans,
                       std::vector<at::Tensor>& outs, std::size_t s) = 0;
  // End of a step: every new weight is in the compute tier (the next forward must see them all).
  virtual void finish_step(common::PhaseTimes& phases) = 0;
};

std::unique_ptr<ComputeTierLink> make_cpu_link();
// weight_slots: the two pinned bf16 weight slots (one piece each); `stats` counts PCIe bytes.
// Both must outlive the link.
std::unique_ptr<ComputeTierLink> make_cuda_link(common::io::AlignedBuffer (&weight_slots)[2],
                                                OffloadStats& stats);

}  // namespace sparsetrain::fuyou
