// The weights of a decoder (model_config.h: GPT-2 or Llama family) as plain tensors that the caller
// places (CPU, GPU, pinned, views into an SSD-backed buffer): the embeddings, one BlockWeights per
// block (a list of named tensors with shapes: block_tensors), the final norm, the LM head where it
// is not tied. GPT-2 names follow Hugging Face GPT-2 without the "transformer." prefix
// ("h.3.attn.c_attn.weight"), with linear weights stored the torch way, [out, in] (hf_gpt2.h
// transposes Conv1D's [in, out]); Llama names are Hugging Face's, unchanged (llama_model.h).
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

// Index of a tensor within a GPT-2 block (C = n_embd); Llama blocks are listed by block_tensors.
enum BlockTensor : int {
  kLn1Weight = 0,    // [C]
  kLn1Bias,          // [C]
  kAttnQkvWeight,    // [3C, C]  (q, k, v stacked along dim 0)
  kAttnQkvBias,      // [3C]
  kAttnProjWeight,   // [C, C]
  kAttnProjBias,     // [C]
  kLn2Weight,        // [C]
  kLn2Bias,          // [C]
  kMlpFcWeight,      // [4C, C]
  kMlpFcBias,        // [4C]
  kMlpProjWeight,    // [C, 4C]
  kMlpProjBias,      // [C]
  kBlockTensorCount  // GPT-2's 12
};

// One tensor of a block: its name after the layer prefix ("h.N." for GPT-2, "model.layers.N."
// for Llama), shape, and whether AdamW decays it (matrices yes; norms and biases no).
struct BlockTensorSpec {
  std::string name;
  std::vector<std::int64_t> shape;
  bool decays = true;
};
// A block's tensors in their fixed order, the one interface the trainers, planner, store and
// streams see a block through. GPT-2: BlockTensor order ("ln_1.weight", "attn.c_attn.weight", …).
// Llama: input_layernorm, q, k, v (their biases for Qwen2), o, post_attention_layernorm, gate,
// up, down (9 tensors; 12 with the biases).
std::vector<BlockTensorSpec> block_tensors(const ModelConfig& config);
int block_tensor_count(const ModelConfig& config);
std::vector<std::int64_t> block_tensor_shape(const ModelConfig& config, int index);
std::string block_tensor_name(const ModelConfig& config, int index);
// GPT-2's block_tensor_name for a BlockTensor index.
const char* gpt2_block_tensor_name(int index);
// Whether HF GPT-2 stores it as a Conv1D weight, transposed to [in, out] (GPT-2 index).
bool block_tensor_is_conv1d(int index);

// A block's tensors in block_tensors order (GPT-2's 12 unless sized otherwise).
struct BlockWeights {
  std::vector<at::Tensor> tensors;
  BlockWeights() : tensors(kBlockTensorCount) {}
  explicit BlockWeights(std::size_t count) : tensors(count) {}
  at::Tensor& operator[](int index) { return tensors[static_cast<std::size_t>(index)]; }
  const at::Tensor& operator[](int index) const { return tensors[static_cast<std::size_t>(index)]; }
  int size() const { return static_cast<int>(tensors.size()); }
};

// One buffer that holds any one block piece (model_config.h: BlockPiece, LlamaBlockPiece): per
// piece, its tensors as views of `flat` (at least max_block_piece_param_count() elements, any
// dtype and device), one after another from element 0; the other pieces' tensors undefined.
// Entries past config.block_piece_count() are empty.
using BlockPieceViews = std::array<BlockWeights, kMaxBlockPieces>;
BlockPieceViews block_piece_views(const ModelConfig& config, const at::Tensor& flat);

// The weights of a decoder of either family. Canonical names (named()): GPT-2 "wte.weight",
// "wpe.weight", "h.N.<block tensor>", "ln_f.weight", "ln_f.bias"; Llama Hugging Face's own
// "model.embed_tokens.weight", "model.layers.N.<block tensor>", "model.norm.weight",
// "lm_head.weight" (absent when tied).
struct ModelWeights {
  ModelFamily family = ModelFamily::kGpt2;
  at::Tensor wte;  // [V, C] token embedding; the LM head too unless lm_head is defined
  at::Tensor wpe;  // GPT-2: [T_max, C] learned position embedding; Llama: undefined (rotary)
  std::vector<BlockWeights> blocks;  // n_layer, each in block_tensors order
  at::Tensor ln_f_weight;            // [C] the final norm (GPT-2 LayerNorm, Llama RMSNorm)
  at::Tensor ln_f_bias;              // GPT-2: [C]; Llama: undefined
  at::Tensor lm_head;                // Llama with an untied head: [V, C]; else undefined

  // Every defined tensor with its canonical name, in a fixed order: the embeddings, block 0 …
  // L-1, the final norm, the head.
  std::vector<std::pair<std::string, at::Tensor*>> named();
  std::vector<std::pair<std::string, const at::Tensor*>> named() const;
  std::int64_t numel() const;
  // The LM head's matrix [V, C]: lm_head where it has one, else the (tied) token embedding.
  at::Tensor& head() { return lm_head.defined() ? lm_head : wte; }
  const at::Tensor& head() const { return lm_head.defined() ? lm_head : wte; }
};

// Whether a canonical name gets weight decay: embeddings, the head and block matrices yes; biases
// and norms (GPT-2's ln_*, Llama's *layernorm and norm) no.
bool weight_decays(const std::string& canonical_name);

// The family's layout with every tensor undefined: blocks sized, family set (for loaders).
ModelWeights empty_weights(const ModelConfig& config);
// The canonical names of a model's tensors, in named() order (lm_head.weight for an untied head).
std::vector<std::string> weight_names(const ModelConfig& config);

// Initialisation, drawn on the CPU in fp32 from `seed` (so every device gets the same numbers),
// then moved to `options`. GPT-2: N(0, 0.02) for embeddings and matrices, N(0,
// 0.02/sqrt(2·n_layer)) for the two residual projections (attn.c_proj, mlp.c_proj), zero biases,
// LayerNorm 1 and 0. Llama (transformers' _init_weights): N(0, 0.02) for the embedding, every
// matrix and the head, zero biases, norms 1.
ModelWeights init_model_weights(const ModelConfig& config, std::uint64_t seed,
                                const c10::TensorOptions& options);
// One weight at a time: its canonical name and tensor, in ModelWeights::named() order.
using WeightVisitor = std::function<void(const std::string& name, const at::Tensor& tensor)>;
// `visit` behind a check that each tensor is finite: a checkpoint's inf or NaN would train to a
// "loss became nan" at step 1. UsageError naming `source`, the tensor and its count of non-finite
// values. The checkpoint readers (hf_gpt2.h, llama_model.h) visit through it.
WeightVisitor finite_weights_only(const std::string& source, WeightVisitor visit);
// init_model_weights one fp32 CPU tensor at a time (the same generator, order and numbers), so
// that a model larger than RAM can be initialised into an offloaded trainer (offload_trainer.h).
void for_each_init_weight(const ModelConfig& config, std::uint64_t seed,
                          const WeightVisitor& visit);
// A model's weights from a producer that visits each of them once by canonical name, in any
// order (for_each_init_weight, for_each_hf_llama_weight, a checkpoint reader), each tensor kept as
// given. Asserts every name is visited exactly once (producers are ours, not user input).
using WeightProducer = std::function<void(const WeightVisitor& visit)>;
ModelWeights collect_weights(const ModelConfig& config, const WeightProducer& produce);
// Zero tensors of the same shapes, on `options` (gradient accumulators, Adam moments).
ModelWeights zeros_like_weights(const ModelWeights& like, const c10::TensorOptions& options);
// Copies of every tensor converted to `options` (device and dtype).
ModelWeights weights_to(const ModelWeights& weights, const c10::TensorOptions& options);
// Throws UsageError naming the tensor when a shape disagrees with `config`.
void check_weight_shapes(const ModelConfig& config, const ModelWeights& weights);

}  // namespace sparsetrain::fuyou
