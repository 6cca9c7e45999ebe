// GPT model shapes: named presets (tiny test sizes, GPT-2, the GPT-3 family) and custom sizes, with
// what follows from a shape alone — parameter counts, training FLOPs per token and bytes of model
// states. No tensors here: the weights live in gpt_weights.h, the computation in gpt_model.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sparsetrain::fuyou {

struct ModelConfig {
  std::string name = "custom";
  std::int64_t n_layer = 2;
  std::int64_t n_embd = 64;        // hidden size C
  std::int64_t n_head = 4;         // C must be a multiple of n_head
  std::int64_t vocab = 256;        // V: token embedding rows, also the LM head's outputs (tied)
  std::int64_t n_positions = 128;  // T_max: rows of the learned position embedding
  double layer_norm_eps = 1e-5;

  std::int64_t head_dim() const { return n_embd / n_head; }
  // Throws UsageError naming the field when a size is non-positive or C % n_head != 0.
  void validate() const;

  // Parameters of one transformer block: 2 LayerNorms, qkv, attention out, MLP in and out, with
  // their biases.
  std::int64_t block_param_count() const;
  // Parameters of block piece `piece` (kBlockPieces below); the four add up to
  // block_param_count().
  std::int64_t block_piece_param_count(int piece) const;
  std::int64_t max_block_piece_param_count() const;  // the MLP-in piece's: 4·C² + 6·C
  // Where piece `piece` starts in the block's flat parameters (BlockTensor order).
  std::int64_t block_piece_first_param(int piece) const;
  // wte [V, C] + wpe [T_max, C] + blocks + final LayerNorm; the LM head is tied to wte (0 extra).
  std::int64_t param_count() const;
  // param_count() without wpe: the N of the FLOPs formula (wte counts: it is the LM head's matmul).
  std::int64_t flops_param_count() const;
  // Training FLOPs per token at sequence length `seq` (PaLM appendix B / nanoGPT's MFU):
  //   6·N + 12·n_layer·C·seq   (forward 2·N + 4·L·C·seq for QK^T and AV, backward twice that).
  double train_flops_per_token(std::int64_t seq) const;
  // The same with every block's forward recomputed in backward (block-wise recompute):
  //   8·N + 16·L·C·seq.
  double train_flops_per_token_recompute(std::int64_t seq) const;
  // Streaming in pieces: each block's backward recomputes its forward twice (the pieces' inputs,
  // without the MLP out piece, then each piece under autograd, gpt_model.h):
  //   10·N − 2·L·(4·C² + C) + 20·L·C·seq.
  double train_flops_per_token_piece_recompute(std::int64_t seq) const;
};

// A block's four pieces, in the order its forward runs them: one matmul each with the tensors
// around it, contiguous in BlockTensor order (gpt_weights.h). They are what a block streams in
// when a whole one does not fit the compute tier (offload_plan.h), and what gpt_model.h's block
// backward runs one at a time.
//   0 attention in  (ln_1, attn.c_attn)   x -> a = attention(qkv(LN1(x)))   [B, T, C]
//   1 attention out (attn.c_proj)         a -> proj(a); y = x + proj(a)
//   2 MLP in        (ln_2, mlp.c_fc)      y -> h = gelu(fc(LN2(y)))         [B, T, 4C]
//   3 MLP out       (mlp.c_proj)          h -> proj(h); z = y + proj(h)
enum BlockPiece : int { kAttnInPiece = 0, kAttnOutPiece, kMlpInPiece, kMlpOutPiece };
inline constexpr int kBlockPieces = 4;
// The BlockTensor indices [first, last) of a piece: 0-4, 4-6, 6-10, 10-12.
struct TensorRange {
  int first = 0, last = 0;
};
TensorRange block_piece_tensors(int piece);

// Bytes of model states per parameter in mixed-precision training as Fuyou/ZeRO count them:
// bf16 weights 2 + bf16 gradients 2 + fp32 master 4 + Adam m 4 + Adam v 4 = 16.
constexpr std::int64_t kMixedPrecisionStateBytesPerParam = 16;
// fp32 training (CPU path): weights 4 + gradients 4 + m 4 + v 4 = 16 as well, with no master copy.
constexpr std::int64_t kFp32StateBytesPerParam = 16;

// A named preset: "tiny", "small", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt3-125m",
// "gpt3-350m", "gpt3-760m", "gpt3-1.3b", "gpt3-2.7b", "gpt3-6.7b", "gpt3-13b", "gpt3-30b",
// "gpt3-66b", "gpt3-175b", or "custom:L=<layers>,C=<hidden>,H=<heads>[,V=<vocab>][,T=<positions>]".
// Throws UsageError listing the presets for an unknown name.
ModelConfig model_config_from_name(const std::string& name);
// Names of all presets, smallest first.
std::vector<std::string> model_preset_names();

}  // namespace sparsetrain::fuyou
