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
// gpt_model.h's entry points (block_forward, block_backward, the LM loss) run these for Llama
// configs, so the trainers see one interface; the loss through one autograd graph here is the
// reference their block-wise paths are checked against (and transformers is its own).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fuyou/model/gpt_model.h"
#include "fuyou/model/model_config.h"
#include "fuyou/model/model_weights.h"

namespace sparsetrain::fuyou {

// A model directory's weights (model_weights.h names, Hugging Face's): model.safetensors, or the
// shards model.safetensors.index.json maps, bf16, fp16 or fp32 on disk. Everything is checked from
// the index and the safetensors headers before a tensor is read: UsageError naming the file and
// tensor for a missing shard or index entry, a tensor missing, unknown (the rotary inv_freq
// buffers of old checkpoints are skipped), of the wrong shape or of a dtype other than those.
void check_hf_llama(const ModelConfig& config, const std::string& model_dir);
// Those weights one fp32 CPU tensor at a time in ModelWeights::named() order, each read from its
// shard as it goes: an offloaded trainer's initial weights without the model in memory.
void for_each_hf_llama_weight(const ModelConfig& config, const std::string& model_dir,
                              const WeightVisitor& visit);
// All of them at once, converted to `options`.
ModelWeights load_hf_llama(const ModelConfig& config, const std::string& model_dir,
                           const c10::TensorOptions& options);

// The rotary inverse frequencies [d/2], fp32, as transformers' rope init functions give them.
at::Tensor rope_inverse_frequencies(const ModelConfig& config);

// transformers' LlamaRMSNorm: x / sqrt(mean(x²) + eps) in fp32, cast back, times the weight.
at::Tensor llama_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// Block `block` on x [B, T, C] (positions 0 … T-1), differentiable (autograd records it when
// enabled and the inputs require grad): the reference the backward below is checked against.
at::Tensor llama_block_forward(const ModelConfig& config, const BlockWeights& block,
                               const at::Tensor& x);
// The same, its five pieces (model_config.h: LlamaBlockPiece) acquired in turn: the same bits.
at::Tensor llama_block_forward_pieces(const ModelConfig& config, BlockPieceSource& source,
                                      const at::Tensor& x);

// The block's backward against `output_grad` [B, T, C]: its forward recomputed from `input` but
// the down projection (pieces 0 … 3, no gradients; the attention's graph recorded from leaves of
// q, k, v), then the pieces' backwards by hand, down … attention in (linear, SiLU·up, RMSNorm;
// the rotary, GQA and SDPA through that graph), one piece's weights acquired at a time, each
// piece's gradients to `take` after its release. Returns d(loss)/d(input). Deterministic on the
// CPU, so every placement of the same weights gives the same bits.
at::Tensor llama_block_backward_pieces(const ModelConfig& config, BlockPieceSource& source,
                                       const at::Tensor& input, const at::Tensor& output_grad,
                                       const PieceGradsFn& take);
// The same over a whole block: input_grad and one gradient per block tensor (block_tensors
// order), in the weights' dtype and device.
BlockGrads llama_block_backward(const ModelConfig& config, const BlockWeights& block,
                                const at::Tensor& input, const at::Tensor& output_grad);

// Reference: the mean loss (0-dim) over targets int64 [B, T] that are not kIgnoredTarget, as
// one autograd graph over the whole model with full logits; set requires_grad on the weights and
// call backward() for every gradient.
at::Tensor llama_loss_full_graph(const ModelConfig& config, const ModelWeights& weights,
                                 const at::Tensor& tokens, const at::Tensor& targets);

}  // namespace sparsetrain::fuyou
