// The decoder computation, block by block, over weights the caller places (model_weights.h):
//   tokens [B, T] -> embed -> x0 [B, T, C] -> block 0 -> x1 -> … -> block L-1 -> xL
//   -> final norm -> logits = h · headᵀ [B, T, V] -> mean cross-entropy over the
//   targets a loss mask keeps (all B·T without one).
// These entry points are the one interface the trainers compute through, for either family
// (config.family): GPT-2 blocks here; Llama blocks (RMSNorm, rotary, GQA, SwiGLU) in
// llama_model.h, whose blocks keep only their inputs (no activation sets yet) and whose backward
// recomputes the block's forward but its last matmul. The rest of this comment is GPT-2's.
// Blocks are pre-LN GPT-2 blocks: x += proj(causal_attention(LN1(x))); x += mlp(LN2(x)), with
// scaled_dot_product_attention (scale 1/sqrt(head_dim)) and GELU, tanh approximation.
//
// Training runs with block-wise recompute (the API the offloaded trainer streams): the forward
// keeps each block's input and, where asked, some of its activations (block_activations.h); the
// backward walks the blocks in reverse, recomputes what was not kept and returns the gradients of
// each block's weights and of its input. The LM
// loss is chunked over rows of B·T so logits never take B·T·V memory at once (at most
// chunk_rows·V). Dropout is not implemented (fine-tuning at p = 0), so every step is deterministic
// on the CPU.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "fuyou/model/block_activations.h"
#include "fuyou/model/model_config.h"
#include "fuyou/model/model_weights.h"

namespace sparsetrain::fuyou {

// tokens: int64 [B, T] with T <= n_positions -> x0 [B, T, C] = wte[tokens] + wpe[0:T] (no wpe:
// Llama).
at::Tensor embed_forward(const ModelWeights& weights, const at::Tensor& tokens);
// Adds the embedding's gradients for x0's gradient `grad_x0` [B, T, C] into wte_grad [V, C] and
// wpe_grad [T_max, C] (any dtype and device of the accumulators; wpe_grad undefined: Llama).
void embed_backward(const at::Tensor& tokens, const at::Tensor& grad_x0, at::Tensor& wte_grad,
                    at::Tensor& wpe_grad);

// A block's kept activations (block_activations.h): tensors[a] holds activation a's tensors for
// each a in `set` — ln1 and ln2: {out [B, T, C], mean [B, T, 1], rstd [B, T, 1]}; attn: {out
// [B, T, C], log-sum-exp [B, H, T] fp32} on the CPU, {out} on CUDA; the others {out} (qkv
// [B, T, 3C], resid [B, T, C], fc and gelu [B, T, 4C]) — in the dtype and on the device of the
// block's weights. Empty for the others.
struct BlockActivations {
  ActivationSet set;
  std::array<std::vector<at::Tensor>, kBlockActivations> tensors;
};

// One transformer block: x [B, T, C] -> [B, T, C], in the dtype and on the device of the weights,
// without gradients. With `kept`, also the activations of `keep` (call under a NoGradGuard).
at::Tensor block_forward(const ModelConfig& config, const BlockWeights& block, const at::Tensor& x,
                         ActivationSet keep = {}, BlockActivations* kept = nullptr);

// Adds gradient `g` into accumulator `acc`, converting dtype and device (an undefined `g` adds
// nothing): both trainers' one operation on their accumulators, so they add the same bits.
void accumulate(at::Tensor& acc, const at::Tensor& g);

struct BlockGrads {
  at::Tensor input_grad;      // [B, T, C]: d(loss)/d(block input)
  BlockWeights weight_grads;  // same shapes, dtype and device as the weights
};
// The block's backward from its input and the activations its forward kept: recomputes the
// missing ones (block_activations.h: only what the backward reads), then backpropagates
// `output_grad` [B, T, C] piece by piece (3 … 0) with each operation's own backward (linear,
// GELU, LayerNorm and the attention kernel's; CUDA's attention through autograd). Whatever is
// kept, the backward reads the very same tensors, so every kept set gives the same bits. The
// weights, input and kept tensors are not modified and need not require grad.
BlockGrads block_backward(const ModelConfig& config, const BlockWeights& block,
                          const at::Tensor& input, const at::Tensor& output_grad,
                          const BlockActivations& kept = {});

// ---- A block in pieces (model_config.h: BlockPiece), for blocks streamed piece by piece --------

// Where a block's weights come from, one piece at a time: acquire(p) returns weights whose piece-p
// tensors (block_piece_tensors) stay valid until release(); the others may be undefined.
class BlockPieceSource {
 public:
  virtual ~BlockPieceSource() = default;
  virtual const BlockWeights& acquire(int piece) = 0;
  virtual void release() {}
};

// The whole block's weights for every piece.
class WholeBlockSource final : public BlockPieceSource {
 public:
  explicit WholeBlockSource(const BlockWeights& block) : block_(block) {}
  const BlockWeights& acquire(int) override { return block_; }

 private:
  const BlockWeights& block_;
};

// block_forward piece by piece, the same bits: each piece's weights acquired in turn and released
// after it.
at::Tensor block_forward_pieces(const ModelConfig& config, BlockPieceSource& source,
                                const at::Tensor& x, ActivationSet keep = {},
                                BlockActivations* kept = nullptr);

// Piece p's weight gradients (only its tensors set), as soon as its backward has made them.
using PieceGradsFn = std::function<void(int piece, const BlockWeights& grads)>;
// block_backward with only one piece's weights at a time: the recompute acquires the pieces it
// reads (block_activations.h: recompute_pieces, in order), then the backward pieces last … 0, each
// released before its gradients go to `take`; returns d(loss)/d(block input). Bit for bit
// block_backward's gradients.
at::Tensor block_backward_pieces(const ModelConfig& config, BlockPieceSource& source,
                                 const at::Tensor& input, const at::Tensor& output_grad,
                                 const BlockActivations& kept, const PieceGradsFn& take);

// Rows of B·T per logits chunk for `chunk_rows` = 0: at most 64 MiB of fp32 logits per chunk.
std::int64_t default_loss_chunk_rows(const ModelConfig& config);

// Mean cross-entropy of the LM head over the B·T positions of xL [B, T, C] against targets int64
// [B, T] that are not kIgnoredTarget (token_data.h: masked; 0 when every one is), in chunks of
// `chunk_rows` rows (0 = default). No gradients. Logits go to fp32 for the loss.
double lm_loss(const ModelConfig& config, const ModelWeights& weights, const at::Tensor& x_final,
               const at::Tensor& targets, std::int64_t chunk_rows = 0);

struct LmLossBackward {
  double loss = 0;                              // mean cross-entropy (unscaled)
  at::Tensor input_grad;                        // [B, T, C]: d(grad_scale·loss)/d(xL)
  at::Tensor ln_f_weight_grad, ln_f_bias_grad;  // [C]; the bias's undefined for Llama
};
// The gradient of rows [first, first + S) of ModelWeights::head() [V, C] (lm_head's, or the
// head's share of the tied embedding's): [S, C] in the head's dtype and device, each row once.
using HeadGradFn = std::function<void(std::int64_t first, const at::Tensor& grad)>;
// lm_loss and its gradients, scaled by `grad_scale` (e.g. 1/accum), the head's to `take_head`
// slice by slice: pass 1 over chunks of rows gives each row's log-sum-exp and the loss; pass 2
// over slices of the vocabulary (loss_vocab_slice_rows) recomputes the slice's logits for every
// row, so the head's gradient never exists whole ([V, C] would be 4 GiB of bf16 for Llama 405B)
// and each of its rows is one matmul over all rows (no accumulation in the compute dtype).
LmLossBackward lm_loss_backward(const ModelConfig& config, const ModelWeights& weights,
                                const at::Tensor& x_final, const at::Tensor& targets,
                                double grad_scale, const HeadGradFn& take_head,
                                std::int64_t chunk_rows = 0, std::int64_t vocab_slice_rows = 0);

// Forward and backward of the whole model with block-wise recompute: returns the mean loss and adds
// the gradients of grad_scale·loss into `grads` (accumulators shaped like `weights`, e.g. fp32
// zeros_like_weights). Peak activation memory: the L block inputs plus one block's internals plus
// one logits chunk.
// `embedding_scratch` (a buffer shaped and typed like grads.wte, or none): the micro-batch's wte
// gradient (the token rows, and a tied head's) is formed there from zero and added to grads.wte
// in one addition, so that over K micro-batches grads.wte is the sum of their gradients — the
// same additions as a data-parallel sum over ranks (train/data_parallel.h). Without it the rows
// add up token by token into the accumulator (the same up to rounding).
double gpt_forward_backward(const ModelConfig& config, const ModelWeights& weights,
                            const at::Tensor& tokens, const at::Tensor& targets, double grad_scale,
                            ModelWeights& grads, std::int64_t chunk_rows = 0,
                            at::Tensor* embedding_scratch = nullptr);

// Mean loss without gradients (validation), block by block, chunked.
double gpt_loss(const ModelConfig& config, const ModelWeights& weights, const at::Tensor& tokens,
                const at::Tensor& targets, std::int64_t chunk_rows = 0);

// Reference: the loss as one autograd graph over the whole model with full, unchunked logits
// (0-dim tensor). Set requires_grad on the weights and call backward() to get every gradient.
at::Tensor gpt_loss_full_graph(const ModelConfig& config, const ModelWeights& weights,
                               const at::Tensor& tokens, const at::Tensor& targets);

}  // namespace sparsetrain::fuyou
