// Where the activations a block's forward keeps for its backward (block_activations.h: the
// policy's set per block, OffloadPlan::activations) wait for it, block by block in the tier the
// plan gives the block:
//  - the compute tier: as the forward made them;
//  - CPU memory (--cpu-mem): copied into a buffer of the block's as the forward makes them; on
//    CUDA a pinned one, down on a copy stream and back up into two GPU slots, the next block
//    prefetched (cuda_transfer.h: CudaActivationStash);
//  - the store: copied into one of two slots and written by an I/O thread as the forward makes
//    them, read back ahead of the backward in reverse order (input_stash.h; on CUDA pinned
//    staging buffers, down and up on the copy stream, CudaActivationStash again), one scratch
//    tensor per block (offload_units.h: activation_store_name).
// Per micro-batch: push(0) … push(L-1) in the forward, pop(L-1) … pop(0) in the backward, then
// end_pass(). Every round trip is exact (copies in the tensors' own dtypes): the backward reads
// the very tensors the forward made, so the tier changes no bit.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "fuyou/model/gpt_model.h"
#include "fuyou/offload/offload_plan.h"

namespace sparsetrain::fuyou {

class TensorStore;
struct OffloadStats;

class KeptActivations {
 public:
  // kept[l], tiers[l]: block l's set and tier (one per block). `store` (needed when a tier is
  // the store) must outlive this; its tensors are defined here unless they exist.
  KeptActivations(const ModelConfig& config, std::int64_t batch, std::int64_t seq, bool cuda,
                  std::vector<ActivationSet> kept, std::vector<ActivationTier> tiers,
                  TensorStore* store);
  ~KeptActivations();
  KeptActivations(const KeptActivations&) = delete;
  KeptActivations& operator=(const KeptActivations&) = delete;

  // Compute thread, forward order: block l's kept activations (its set's, as block_forward made
  // them).
  void push(std::int64_t l, BlockActivations kept);
  // Compute thread, reverse order: block l's, valid until the next pop or end_pass (a block that
  // keeps nothing: the empty set).
  const BlockActivations& pop(std::int64_t l);
  void end_pass();
  // At the end of a run: the bytes it moved to and from CPU memory and the store.
  void add_stats(OffloadStats& stats) const;

  class Shelf;  // one tier's keeping (kept_activations.cpp)

 private:
  const ModelConfig config_;
  const std::int64_t batch_, seq_;
  const bool cuda_;
  std::vector<ActivationSet> kept_;
  std::vector<ActivationTier> tiers_;
  std::vector<std::unique_ptr<Shelf>> shelves_;  // the tiers in use (CUDA: one for CPU + store)
  std::vector<Shelf*> by_tier_;                  // by ActivationTier: its shelf
  BlockActivations popped_;
};

}  // namespace sparsetrain::fuyou
