// What the offloaded trainer's threads share (internal to offload/): the unit table, the
// placements chosen from the plan, the compute tier's gradient accumulators and the pinned slots.
// OffloadTrainer builds it once in its constructor; the compute thread (train), the optimizer
// thread (optimizer_stage.h) and the loader threads (compute_blocks.h, block_inputs.h) use it.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "common/io/aligned_buffer.h"
#include "fuyou/offload/block_grads.h"
#include "fuyou/offload/block_inputs.h"
#include "fuyou/offload/compute_blocks.h"
#include "fuyou/offload/grad_accumulators.h"
#include "fuyou/offload/kept_activations.h"
#include "fuyou/offload/offload_units.h"
#include "fuyou/offload/state_placement.h"

namespace sparsetrain::fuyou {

struct OffloadState {
  bool cuda = false;  // the compute tier is the GPU: chooses the optimizer's ComputeTierLink
  std::vector<UnitTensors> units;      // by unit id
  std::vector<std::int64_t> order;     // processing order: ln_f, blocks L-1 … 0, embeddings
  std::vector<UnitPiece> step_pieces;  // every unit's state pieces, in processing order
  std::int64_t piece_floats = 0;       // P, state_pieces.h

  std::int64_t step_drains = 0;  // drains per step with drained block gradients: K · L

  // Two slots of one state piece each, alternating by piece: CUDA's pinned fp32 gradients coming
  // down and bf16 weights going up. grad_slots also carry block gradients in the store (both
  // tiers; plain memory of one block piece on the CPU tier). Declared before the placements that
  // point into them, so they are destroyed after them.
  common::io::AlignedBuffer grad_slots[2], weight_slots[2];
  common::io::AlignedBuffer meta;    // train.state, int64 [kMetaLen]
  std::int64_t meta_len = kMetaLen;  // the words its commits write (a format-2 store's: fewer)

  // The placements. The threads that go through the store (blocks', inputs' and kept activations'
  // loaders) are stopped by the trainer before the store goes (its destructor, NewStoreGuard:
  // stop_loaders).
  std::unique_ptr<StatePlacement> states;
  std::unique_ptr<ComputeBlocks> blocks;
  std::unique_ptr<BlockInputs> inputs;
  std::unique_ptr<KeptActivations> kept;
  std::unique_ptr<GradAccumulators> accumulators;  // drained blocks (plan block_grads_in_cpu)
  std::unique_ptr<BlockGradients> block_grads;     // the compute thread's side
  // The gradient accumulators of the tensors outside the blocks (the embeddings, the final norm,
  // an untied head; `blocks` empty), fp32, compute tier.
  ModelWeights outside_grads;
  // K > 1: micro-batch k > 0's wte gradient, formed from zero and then added (gpt_model.h), beside
  // outside_grads.wte.
  at::Tensor embedding_scratch;
  std::function<CudaMark()> mark_compute;  // CUDA: a mark on the compute stream; CPU: none
  std::atomic<bool> in_backward{false};    // the compute thread is inside a step's backward passes
};

}  // namespace sparsetrain::fuyou
