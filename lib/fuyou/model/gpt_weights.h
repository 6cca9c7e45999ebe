// The weights of a GPT as plain tensors that the caller places (CPU, GPU, pinned, views into an
// SSD-backed buffer): token and position embeddings, one BlockWeights per transformer block, the
// final LayerNorm. The LM head is tied to the token embedding and has no tensor of its own.
// Names follow Hugging Face GPT-2 without the "transformer." prefix ("h.3.attn.c_attn.weight"),
// but linear weights are stored the torch way, [out, in]; hf_gpt2.h transposes Conv1D's [in, out].
// Not a torch::nn::Module: nothing here owns an optimizer or an autograd graph.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fuyou/model/model_config.h"

namespace sparsetrain::fuyou {

// Index of a tensor within a block (C = n_embd).
enum BlockTensor : int {
  kLn1Weight = 0,   // [C]
  kLn1Bias,         // [C]
  kAttnQkvWeight,   // [3C, C]  (q, k, v stacked along dim 0)
  kAttnQkvBias,     // [3C]
  kAttnProjWeight,  // [C, C]
  kAttnProjBias,    // [C]
  kLn2Weight,       // [C]
  kLn2Bias,         // [C]
  kMlpFcWeight,     // [4C, C]
  kMlpFcBias,       // [4C]
  kMlpProjWeight,   // [C, 4C]
  kMlpProjBias,     // [C]
  kBlockTensorCount
};

// "ln_1.weight", "attn.c_attn.weight", ... (the HF GPT-2 suffix after "h.N.").
const char* block_tensor_name(int index);
std::vector<std::int64_t> block_tensor_shape(const ModelConfig& config, int index);
// Whether AdamW's weight decay applies: matrices yes; biases and LayerNorm parameters no (GPT-2/3).
bool block_tensor_decays(int index);
// Whether HF GPT-2 stores it as a Conv1D weight, transposed to [in, out].
bool block_tensor_is_conv1d(int index);

struct BlockWeights {
  std::array<at::Tensor, kBlockTensorCount> tensors;
  at::Tensor& operator[](int index) { return tensors[static_cast<std::size_t>(index)]; }
  const at::Tensor& operator[](int index) const { return tensors[static_cast<std::size_t>(index)]; }
};

// One buffer that holds any one block piece (model_config.h: BlockPiece): per piece, its tensors
// as views of `flat` (at least max_block_piece_param_count() elements, any dtype and device), one
// after another from element 0; the other pieces' tensors undefined.
using BlockPieceViews = std::array<BlockWeights, kBlockPieces>;
BlockPieceViews block_piece_views(const ModelConfig& config, const at::Tensor& flat);

struct GptWeights {
  at::Tensor wte;  // [V, C] token embedding, also the LM head (logits = h · wteᵀ)
  at::Tensor wpe;  // [T_max, C] learned position embedding
  std::vector<BlockWeights> blocks;  // n_layer
  at::Tensor ln_f_weight;            // [C]
  at::Tensor ln_f_bias;              // [C]

  // Every tensor with its canonical name, in a fixed order: wte, wpe, h.0.* … h.{L-1}.*, ln_f.*.
  std::vector<std::pair<std::string, at::Tensor*>> named();
  std::vector<std::pair<std::string, const at::Tensor*>> named() const;
  std::int64_t numel() const;
};

// Whether a canonical name gets weight decay (wte yes, wpe yes, matrices yes; biases, LN no).
bool weight_decays(const std::string& canonical_name);

// GPT-2 initialisation: N(0, 0.02) for embeddings and matrices, N(0, 0.02/sqrt(2·n_layer)) for the
// two residual projections (attn.c_proj, mlp.c_proj), zero biases, LayerNorm 1 and 0. Drawn on the
// CPU in fp32 from `seed` (so every device gets the same numbers), then moved to `options`.
GptWeights init_gpt_weights(const ModelConfig& config, std::uint64_t seed,
                            const c10::TensorOptions& options);
// One weight at a time: its canonical name and tensor, in GptWeights::named() order.
using WeightVisitor = std::function<void(const std::string& name, const at::Tensor& tensor)>;
// init_gpt_weights one fp32 CPU tensor at a time (the same generator, order and numbers), so that a
// model larger than RAM can be initialised into an offloaded trainer (offload_trainer.h).
void for_each_init_gpt_weight(const ModelConfig& config, std::uint64_t seed,
                              const WeightVisitor& visit);
// Zero tensors of the same shapes, on `options` (gradient accumulators, Adam moments).
GptWeights zeros_like_weights(const GptWeights& like, const c10::TensorOptions& options);
// Copies of every tensor converted to `options` (device and dtype).
GptWeights weights_to(const GptWeights& weights, const c10::TensorOptions& options);
// Throws UsageError naming the tensor when a shape disagrees with `config`.
void check_weight_shapes(const ModelConfig& config, const GptWeights& weights);

}  // namespace sparsetrain::fuyou
