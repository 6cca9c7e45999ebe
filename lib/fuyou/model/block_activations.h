// What a transformer block's forward can keep for its backward instead of recomputing it: the
// block's intermediate tensors, their sizes and what each costs to recompute. No tensors here
// (torch-free, for the planner): gpt_model.h's block_forward fills a BlockActivations with the
// kept ones and block_backward recomputes only the rest.
//
// A pre-LN GPT-2 block from its input x [B, T, C], in the order its forward makes them:
//   ln1   = LN1(x), with its mean and rstd [B, T, 1]          piece 0 (attention in)
//   qkv   = ln1 · W_qkvᵀ + b                    [B, T, 3C]    piece 0
//   attn  = causal_attention(qkv)               [B, T, C]     piece 0, no weights; on the CPU
//           with the attention's log-sum-exp [B, H, T] (its backward reads it)
//   resid = x + attn · W_projᵀ + b              [B, T, C]     piece 1 (attention out)
//   ln2   = LN2(resid), with its mean and rstd                piece 2 (MLP in)
//   fc    = ln2 · W_fcᵀ + b                     [B, T, 4C]    piece 2
//   gelu  = gelu_tanh(fc)                       [B, T, 4C]    piece 2, no weights
//   z     = resid + gelu · W_mlp_projᵀ + b                    piece 3 (MLP out): the next block's
//                                                             input, never needed by this backward
// The backward reads every one of them (besides x, which the block-input placement keeps): each
// is kept, or recomputed from the ones it depends on. So a block's recompute is the sum of its
// missing tensors' costs, each independent of the others: the cost model's additivity.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "fuyou/model/model_config.h"

namespace sparsetrain::fuyou {

enum BlockActivation : int {
  kLn1Out = 0,
  kQkv,
  kAttnOut,
  kAttnResidual,
  kLn2Out,
  kMlpPreGelu,
  kMlpHidden,
};
inline constexpr int kBlockActivations = 7;

// "ln1", "qkv", "attn", "resid", "ln2", "fc", "gelu" (the names of --activations lists).
const char* block_activation_name(int activation);

// A subset of a block's activations.
class ActivationSet {
 public:
  constexpr ActivationSet() = default;
  static ActivationSet all() { return ActivationSet((1u << kBlockActivations) - 1); }
  bool has(int activation) const { return (bits_ >> activation) & 1u; }
  ActivationSet with(int activation) const { return ActivationSet(bits_ | (1u << activation)); }
  bool empty() const { return bits_ == 0; }
  int count() const;
  std::uint32_t bits() const { return bits_; }
  bool operator==(const ActivationSet& o) const { return bits_ == o.bits_; }
  bool operator!=(const ActivationSet& o) const { return bits_ != o.bits_; }
  // "ln1,attn" in activation order; "none" for the empty set.
  std::string to_string() const;

 private:
  explicit constexpr ActivationSet(std::uint32_t bits) : bits_(bits) {}
  std::uint32_t bits_ = 0;
};

// "ln1,attn,fc" (names in any order), "all" or "none" -> the set. UsageError naming an unknown or
// repeated name, with the known names as the hint.
ActivationSet parse_activation_set(const std::string& text);

// fp32 floats per token of an activation's tensors: ln1 and ln2 C + 2 (out, mean, rstd), qkv 3C,
// attn C + H on the CPU (out, log-sum-exp) and C on CUDA, resid C, fc and gelu 4C each.
std::int64_t activation_floats_per_token(const ModelConfig& config, int activation, bool cuda);
// Elements per token of a kept set (the sum of the above).
std::int64_t activation_set_floats_per_token(const ModelConfig& config, ActivationSet set,
                                             bool cuda);

// FLOPs per token of one block that recomputing an activation costs, i.e. what keeping it saves:
// qkv 6·C², attn 4·C·T (QKᵀ and AV, counted whole as in 6N + 12LCT), resid 2·C², fc 8·C²; the
// LayerNorms and the GELU 0 (elementwise: memory time, not FLOPs).
double activation_recompute_flops_per_token(const ModelConfig& config, std::int64_t seq,
                                            int activation, bool cuda);
// One block's recompute FLOPs per token with `kept` kept: with nothing kept, 16·C² + 4·C·T (the
// block's forward but the MLP out projection, which the backward never needs). On CUDA the
// attention's backward runs through autograd, whose graph records the attention's forward once
// more whatever is kept: 4·C·T more.
double block_recompute_flops_per_token(const ModelConfig& config, std::int64_t seq,
                                       ActivationSet kept, bool cuda);

// The shapes of activation a's tensors for a micro-batch [B, T], in the order a kept set holds
// them (gpt_model.h: BlockActivations): ln1, ln2 {[B, T, C], mean [B, T, 1], rstd [B, T, 1]};
// attn {[B, T, C], log-sum-exp [B, H, T]} on the CPU, {[B, T, C]} on CUDA; qkv [B, T, 3C]; resid
// [B, T, C]; fc, gelu [B, T, 4C].
std::vector<std::vector<std::int64_t>> activation_shapes(const ModelConfig& config, int activation,
                                                         std::int64_t batch, std::int64_t seq,
                                                         bool cuda);

// Where kept tensors are copied one after the other (CPU memory, the store, pinned memory), each
// starts at this many bytes' boundary: on the CPU tier 64 (16 floats: a GEMM over a view then
// sees the same alignment in every tier, and rounds the same), on CUDA 256.
inline constexpr std::uint64_t kActivationAlignCpu = 64, kActivationAlignCuda = 256;
// Bytes of `set`'s tensors for a micro-batch [B, T] laid out so: fp32 on the CPU tier; on CUDA
// bf16, the LayerNorms' statistics fp32. What the planner counts and the tiers hold.
std::uint64_t activation_set_bytes(const ModelConfig& config, ActivationSet set, std::int64_t batch,
                                   std::int64_t seq, bool cuda);

// The pieces (model_config.h) whose weights the recompute of a block keeping `kept` reads, in
// the order it reads them: GPT-2 piece 0 for ln1 or qkv, piece 1 for resid, piece 2 for ln2 or
// fc; Llama (which keeps nothing) every piece but down_proj.
PieceFlags recompute_pieces(const ModelConfig& config, ActivationSet kept);

}  // namespace sparsetrain::fuyou
