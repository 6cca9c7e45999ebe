// Where the compute thread gets block l's compute weights, and so how finely a block's forward and
// backward run, chosen once from the plan (stream_slots, pieces_per_block):
//  - ResidentBlocks: every block in the compute tier, updated there by the optimizer;
//  - StreamedBlocks: whole blocks stream through plan().stream_slots slots from their fp32 master
//    (block_stream.h; on CUDA converted to bf16 and uploaded, cuda_transfer.h), in the order of
//    use: before each forward and again before each backward (recompute);
//  - StreamedPieces (CPU tier): each block streams as its four pieces (model_config.h) through
//    slots of the largest piece; the forward and the backward run piece by piece
//    (gpt_model.h: block_forward_pieces, block_backward_pieces), so the compute tier never holds
//    more than a piece per slot of weights, and the gradients come out piece by piece.
// Every placement gives the same bits: the pieces are block_backward's own arithmetic. Each
// placement also holds the run's activation policy (offload_plan.h: OffloadPlan::activations),
// what block l's forward keeps for its backward; the backward recomputes only the rest (the
// streamed pieces' sequence loads only the pieces that recompute reads).
// A pass is start_training(K) or start_forward(passes), then the pass's forward / backward calls
// in the order the trainer makes them (per micro-batch: forward 0 … L-1, backward L-1 … 0).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "fuyou/model/gpt_model.h"
#include "fuyou/model/model_config.h"
#include "fuyou/model/model_weights.h"

namespace sparsetrain::fuyou {

class StatePlacement;
struct OffloadStats;

// A block's weight gradients as its backward makes them: all of its tensors at once (piece =
// kWholeBlock) or one piece's (model_config.h: only that piece's tensors set).
inline constexpr int kWholeBlock = -1;
using BlockGradsFn = PieceGradsFn;  // gpt_model.h's, with kWholeBlock for a whole block

class ComputeBlocks {
 public:
  virtual ~ComputeBlocks() = default;
  // A step's K micro-batches of forward and backward, or `passes` forwards (validation).
  virtual void start_training(std::int64_t accum) = 0;
  virtual void start_forward(std::int64_t passes) = 0;
  // Block l's forward of x [B, T, C] (call without gradients): its output; with `kept`, the
  // activations the policy keeps of block l (a validation pass passes none).
  virtual at::Tensor forward(std::int64_t l, const at::Tensor& x,
                             BlockActivations* kept = nullptr) = 0;
  // Block l's backward: recomputes what `kept` lacks from `input`, backpropagates `output_grad`,
  // hands the weight gradients to `take` and returns d(loss)/d(input).
  virtual at::Tensor backward(std::int64_t l, const at::Tensor& input, const BlockActivations& kept,
                              const at::Tensor& output_grad, const BlockGradsFn& take) = 0;
  // FLOPs the backwards' recompute spent so far (block_activations.h's count, per token).
  virtual double recompute_flops() const = 0;
  // At the end of a run: the loads and waits it counted.
  virtual void add_stats(OffloadStats& stats) const = 0;
};

// What block l's forward keeps (kept[l], one per block) and the micro-batch's tokens B·T and
// sequence T (for the recompute's FLOPs count).
struct ActivationPolicy {
  std::vector<ActivationSet> kept;
  std::int64_t tokens = 0, seq = 0;
  bool cuda = false;
};

// Resident: `blocks` (the trainer's compute weights) must outlive it.
std::unique_ptr<ComputeBlocks> make_resident_blocks(const ModelConfig& config,
                                                    const std::vector<BlockWeights>& blocks,
                                                    ActivationPolicy policy);

// Streamed through `slots` slots from `states` (the block's master, in RAM or the store), fp32 on
// the CPU tier, bf16 on the GPU when `cuda`; whole blocks, or (pieces_per_block > 1, CPU tier
// only) the blocks' pieces. `states` must outlive it.
std::unique_ptr<ComputeBlocks> make_streamed_blocks(const ModelConfig& config, std::int64_t slots,
                                                    std::int64_t piece_floats, bool cuda,
                                                    std::int64_t pieces_per_block,
                                                    StatePlacement& states,
                                                    ActivationPolicy policy);

}  // namespace sparsetrain::fuyou
