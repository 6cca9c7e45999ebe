// The compute tier's bytes, measured while a run trains, for the run record beside the plan's
// compute_total (which --gpu-mem bounds):
//  - CUDA: the caching allocator's peak of allocated bytes on the device (its statistics reset
//    when the meter starts), everything the process holds there;
//  - the CPU tier: our own count, through a counting allocator in front of LibTorch's CPU one while
//    the meter lives, of the bytes of the tensors allocated since it started, at their peak (any
//    thread). What existed before (the resident weights, the gradient buffers, which the plan
//    sizes exactly) and the placements' own slot buffers (not LibTorch's) are not in it: it is
//    the dynamic part — activations, kept activations, the recompute's tensors, logits chunks —
//    that the plan can only estimate (its block-input, recompute, logits and kept-activation
//    items).
// One meter at a time per process.
#pragma once

#include <cstdint>

namespace sparsetrain::fuyou {

class ComputeMeter {
 public:
  explicit ComputeMeter(bool cuda);
  ~ComputeMeter();
  ComputeMeter(const ComputeMeter&) = delete;
  ComputeMeter& operator=(const ComputeMeter&) = delete;

  std::uint64_t peak_bytes() const;

 private:
  const bool cuda_;
};

}  // namespace sparsetrain::fuyou
