// Model shapes of two decoder families: GPT-2 (named presets: tiny test sizes, GPT-2, the GPT-3
// family; custom sizes) and Llama (the Llama 3.x, Mistral and Qwen2.5 presets with their published
// shapes; Hugging Face config.json files, hf_config.h), with what follows from a shape alone —
// parameter counts, training FLOPs per token and bytes of model states. No tensors here: the
// weights live in model_weights.h and llama_model.h, the computation in gpt_model.h and
// llama_model.h.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace sparsetrain::fuyou {

// GPT-2 blocks: LayerNorm (with bias), fused qkv with biases, GELU MLP of 4C, learned positions,
// the LM head tied to the token embedding. Llama blocks: RMSNorm, rotary positions, grouped-query
// attention, SwiGLU MLP, no biases (Qwen2: q, k, v biases), a tied or separate LM head.
enum class ModelFamily { kGpt2, kLlama };
const char* model_family_name(ModelFamily family);

// Rotary position embedding frequencies (Llama family), as transformers computes them
// (modeling_rope_utils.py): "default" 1 / theta^(2i/d); "llama3" (Llama 3.1+) scales the low
// frequencies by 1/factor, keeps the high ones and interpolates between (wavelengths against
// original_max_positions / low_freq_factor and / high_freq_factor); "linear" divides all by factor.
struct RopeScaling {
  std::string type = "default";  // "default", "linear", "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;
  std::int64_t original_max_positions = 8192;
};

struct ModelConfig {
  ModelFamily family = ModelFamily::kGpt2;
  std::string name = "custom";
  std::int64_t n_layer = 2;
  std::int64_t n_embd = 64;        // hidden size C
  std::int64_t n_head = 4;         // C must be a multiple of n_head
  std::int64_t vocab = 256;        // V: token embedding rows, also the LM head's outputs (tied)
  std::int64_t n_positions = 128;  // T_max: rows of the learned position embedding (Llama: the
                                   // longest context the config names; no tensor)
  double layer_norm_eps = 1e-5;    // Llama: the RMSNorm's eps

  // Llama family only.
  std::int64_t n_kv_head = 0;  // K and V heads (grouped-query attention); n_head % n_kv_head == 0
  std::int64_t head_size = 0;  // per head (0: C / H)
  std::int64_t intermediate = 0;  // SwiGLU width I: gate and up [I, C], down [C, I]
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool qkv_bias = false;             // Qwen2: biases on q, k and v
  bool tie_word_embeddings = false;  // the LM head is the token embedding

  bool llama() const { return family == ModelFamily::kLlama; }
  std::int64_t head_dim() const { return head_size > 0 ? head_size : n_embd / n_head; }
  // Throws UsageError naming the field when a size is non-positive or C % n_head != 0.
  void validate() const;

  // Parameters of one transformer block: GPT-2: 2 LayerNorms, qkv, attention out, MLP in and out,
  // with their biases; Llama: 2 RMSNorms, q [H·d, C], k and v [KV·d, C] (with Qwen2's biases),
  // o [C, H·d], gate and up [I, C], down [C, I].
  std::int64_t block_param_count() const;
  // A block's pieces (block_piece_tensors below): GPT-2 4, Llama 5.
  int block_piece_count() const;
  // Parameters of block piece `piece`; the pieces add up to block_param_count().
  std::int64_t block_piece_param_count(int piece) const;
  // The largest piece's: GPT-2's MLP in (4·C² + 6·C), Llama's gate, up or down (I·C, + C).
  std::int64_t max_block_piece_param_count() const;
  // Where piece `piece` starts in the block's flat parameters (block_tensors order).
  std::int64_t block_piece_first_param(int piece) const;
  // GPT-2: wte [V, C] + wpe [T_max, C] + blocks + final LayerNorm; the LM head is tied to wte
  // (0 extra). Llama: embed [V, C] + blocks + final RMSNorm + lm_head [V, C] unless tied.
  std::int64_t param_count() const;
  // The N of the FLOPs formula: the parameters a token's matmuls touch — GPT-2: without wpe (wte
  // counts: it is the LM head's matmul); Llama: without the embedding unless it is the head.
  std::int64_t flops_param_count() const;
  // Training FLOPs per token at sequence length `seq` (PaLM appendix B / nanoGPT's MFU):
  //   6·N + 12·n_layer·A·seq   (forward 2·N + 4·L·A·seq for QK^T and AV, backward twice that;
  //   A = H·d, the attention width: C for GPT-2).
  double train_flops_per_token(std::int64_t seq) const;
  // The same with every block's forward recomputed in backward (block-wise recompute), GPT-2:
  //   6·N + 12·L·C·seq + L·(16·C² + 4·C·seq); Llama: + L·(2·(block parameters − I·C) + 4·H·d·seq).
  // The last matmul (GPT-2's MLP out, Llama's down) is not recomputed: its output is the next
  // block's input. Whole blocks and pieces recompute the same (each piece's forward once).
  double train_flops_per_token_recompute(std::int64_t seq) const;
};

// A block's pieces, in the order its forward runs them: one or two matmuls each with the tensors
// around them, contiguous in block_tensors order (model_weights.h). They are what a block streams
// in when a whole one does not fit the compute tier (offload_plan.h), and what the block backward
// runs one at a time (gpt_model.h, llama_model.h). GPT-2, 4 pieces:
//   0 attention in  (ln_1, attn.c_attn)   x -> a = attention(qkv(LN1(x)))   [B, T, C]
//   1 attention out (attn.c_proj)         a -> proj(a); y = x + proj(a)
//   2 MLP in        (ln_2, mlp.c_fc)      y -> h = gelu(fc(LN2(y)))         [B, T, 4C]
//   3 MLP out       (mlp.c_proj)          h -> proj(h); z = y + proj(h)
// Llama, 5 pieces (its MLP's three matrices apart: each is as large as GPT-2's MLP in):
//   0 attention in  (input_layernorm, q, k, v[, biases])   x -> a = attention(rope(q, k), v)
//   1 attention out (o_proj)                               h = x + o(a)
//   2 MLP gate      (post_attention_layernorm, gate_proj)  n2 = RMSNorm(h), g = gate(n2) [B, T, I]
//   3 MLP up        (up_proj)                              m = silu(g) · up(n2)          [B, T, I]
//   4 MLP down      (down_proj)                            z = h + down(m)
enum BlockPiece : int { kAttnInPiece = 0, kAttnOutPiece, kMlpInPiece, kMlpOutPiece };
enum LlamaBlockPiece : int {
  kLlamaAttnInPiece = 0,
  kLlamaAttnOutPiece,
  kLlamaGatePiece,
  kLlamaUpPiece,
  kLlamaDownPiece
};
inline constexpr int kGpt2BlockPieces = 4, kLlamaBlockPieces = 5;
inline constexpr int kMaxBlockPieces = 5;  // of either family: the size of per-piece arrays
// One flag per piece (pieces past block_piece_count() false).
using PieceFlags = std::array<bool, kMaxBlockPieces>;
// The block_tensors indices [first, last) of a piece: GPT-2 0-4, 4-6, 6-10, 10-12; Llama
// 0-4, 4-5, 5-7, 7-8, 8-9 (with Qwen2's biases 0-7, 7-8, 8-10, 10-11, 11-12).
struct TensorRange {
  int first = 0, last = 0;
};
TensorRange block_piece_tensors(const ModelConfig& config, int piece);

// Vocabulary rows per slice of the LM loss backward's second pass (gpt_model.h: lm_loss_backward)
// for `rows` rows of B·T: at most 64 MiB of fp32 logits and 16 Mi elements of the head's
// gradient per slice.
std::int64_t loss_vocab_slice_rows(const ModelConfig& config, std::int64_t rows);

// Bytes of model states per parameter in mixed-precision training as Fuyou/ZeRO count them:
// bf16 weights 2 + bf16 gradients 2 + fp32 master 4 + Adam m 4 + Adam v 4 = 16.
constexpr std::int64_t kMixedPrecisionStateBytesPerParam = 16;
// fp32 training (CPU path): weights 4 + gradients 4 + m 4 + v 4 = 16 as well, with no master copy.
constexpr std::int64_t kFp32StateBytesPerParam = 16;

// A named preset: "tiny", "small", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt3-125m",
// "gpt3-350m", "gpt3-760m", "gpt3-1.3b", "gpt3-2.7b", "gpt3-6.7b", "gpt3-13b", "gpt3-30b",
// "gpt3-66b", "gpt3-175b", "llama3.2-1b", "llama3.2-3b", "llama3.1-8b", "llama3.1-70b",
// "llama3.1-405b", "mistral-7b-v0.3", "qwen2.5-7b", "qwen2.5-72b", or
// "custom:L=<layers>,C=<hidden>,H=<heads>[,V=<vocab>][,T=<positions>]" (GPT-2 blocks).
// Throws UsageError listing the presets for an unknown name.
ModelConfig model_config_from_name(const std::string& name);
// Names of all presets: the GPT-2 family smallest first, then the Llama family smallest first.
std::vector<std::string> model_preset_names();

}  // namespace sparsetrain::fuyou
