// The Llama family's decoder (model_config.h: ModelFamily::kLlama — Llama 3.x, Mistral, Qwen2)
// over plain tensors the caller places, as gpt_model.h is GPT-2's:
//   tokens [B, T] -> embed [V, C] -> x0 -> block 0 … block L-1 -> RMSNorm -> lm_head (or the
//   embedding, tied) -> mean cross-entropy over the unmasked targets (token_data.h).
// A block: h = x + o(attention(rope(q(n1)), rope(k(n1)), v(n1))), n1 = RMSNorm(x);
//          out = h + down(silu(gate(n2)) · up(n2)), n2 = RMSNorm(h);
// grouped-query attention (each K/V head serves n_head / n_kv_head query heads), causal, scale
// 1/sqrt(d); rotary embeddings on the halves of each head (transformers' rotate_half), their
// frequencies from rope_theta and rope_scaling as transformers computes them; RMSNorm in fp32,
// weight × normalised (cast back to the input dtype), eps from the config.
// Tensor names and layout are Hugging Face's (LlamaForCausalLM, Qwen2ForCausalLM,
// MistralForCausalLM): "model.layers.N.self_attn.q_proj.weight" [H·d, C], … — linear weights
// [out, in] as torch stores them, so checkpoints load without transposes.
// This is the model layer: the loss through one autograd graph (the reference the trainers'
// block-wise paths will be checked against). The trainers train GPT-2 blocks only so far.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fuyou/model/model_config.h"

namespace sparsetrain::fuyou {

// One tensor of a block: its name after "model.layers.N.", shape, and whether AdamW decays it
// (matrices yes; norms and biases no).
struct BlockTensorSpec {
  std::string name;
  std::vector<std::int64_t> shape;
  bool decays = true;
};
// A Llama block's tensors in their fixed order: input_layernorm, q, k, v (their biases for
// Qwen2), o, post_attention_layernorm, gate, up, down.
std::vector<BlockTensorSpec> llama_block_tensors(const ModelConfig& config);

struct LlamaWeights {
  at::Tensor embed;                          // [V, C] model.embed_tokens.weight
  std::vector<std::vector<at::Tensor>> blocks;  // n_layer × llama_block_tensors order
  at::Tensor norm;                           // [C] model.norm.weight
  at::Tensor lm_head;                        // [V, C] lm_head.weight; undefined when tied

  // Every tensor with its Hugging Face name: embed, the layers', norm, then lm_head unless tied.
  std::vector<std::pair<std::string, at::Tensor*>> named();
  std::vector<std::pair<std::string, const at::Tensor*>> named() const;
};

// A model directory's weights: model.safetensors, or the shards model.safetensors.index.json
// maps, read shard by shard (bf16, fp16 or fp32 on disk) and converted to `options`. UsageError
// naming the file and tensor for a missing shard or index entry, a tensor missing, unknown (the
// rotary inv_freq buffers of old checkpoints are skipped) or of the wrong shape.
LlamaWeights load_hf_llama(const ModelConfig& config, const std::string& model_dir,
                           const c10::TensorOptions& options);

// The rotary inverse frequencies [d/2], fp32, as transformers' rope init functions give them.
at::Tensor rope_inverse_frequencies(const ModelConfig& config);

// Block `block` on x [B, T, C] (positions 0 … T-1), differentiable.
at::Tensor llama_block_forward(const ModelConfig& config, const std::vector<at::Tensor>& block,
                               const at::Tensor& x);

// Reference: the mean loss (0-dim) over targets int64 [B, T] that are not kIgnoredTarget, as
// one autograd graph over the whole model with full logits; set requires_grad on the weights and
// call backward() for every gradient.
at::Tensor llama_loss_full_graph(const ModelConfig& config, const LlamaWeights& weights,
                                 const at::Tensor& tokens, const at::Tensor& targets);

}  // namespace sparsetrain::fuyou
