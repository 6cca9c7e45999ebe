// Hugging Face GPT-2 checkpoints <-> ModelWeights. HF names are "transformer.wte.weight",
// "transformer.h.N.attn.c_attn.weight", …, "transformer.ln_f.bias" (+ "lm_head.weight" tied to
// wte); the "transformer." prefix and lm_head.weight may be absent (GPT2Model checkpoints, tied
// heads). HF's Conv1D layers (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) store weights [in,
// out] (y = x·W + b); we store [out, in] and transpose on the way in and out. The causal-mask
// buffers "h.N.attn.bias" / "h.N.attn.masked_bias" of older checkpoints are ignored.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <map>
#include <string>

#include "fuyou/model/model_config.h"
#include "fuyou/model/model_weights.h"
#include "fuyou/model/safetensors.h"

namespace sparsetrain::fuyou {

// HF tensors -> weights converted to `options`. Throws UsageError naming the tensor for a missing,
// unknown or mis-shaped tensor, or an lm_head.weight that differs from wte (our head is tied).
ModelWeights gpt_weights_from_hf(const ModelConfig& config, const TensorMap& tensors,
                                 const c10::TensorOptions& options);
// Weights -> HF GPT2LMHeadModel names with the "transformer." prefix, Conv1D weights transposed,
// contiguous CPU tensors of `dtype`; no lm_head.weight (tied, as save_pretrained writes it).
TensorMap gpt_weights_to_hf(const ModelWeights& weights, at::ScalarType dtype);

// read_safetensors + gpt_weights_from_hf.
ModelWeights load_hf_gpt2(const ModelConfig& config, const std::string& path,
                          const c10::TensorOptions& options);
// load_hf_gpt2's weights one fp32 CPU tensor at a time, in ModelWeights::named() order, reading
// each from the file as it goes (SafetensorsReader): the same checks (from the header, before the
// first tensor; the tied-head check reads lm_head and wte) and the same numbers, without the whole
// model in memory: for an offloaded trainer's initial weights (offload_trainer.h).
void for_each_hf_gpt2_weight(const ModelConfig& config, const std::string& path,
                             const WeightVisitor& visit);
// Those checks alone (UsageError naming the problem), e.g. before a store is made for the weights.
void check_hf_gpt2(const ModelConfig& config, const std::string& path);
// gpt_weights_to_hf + write_safetensors (atomic), with metadata {"format": "pt", …}.
void export_hf_gpt2(const std::string& path, const ModelWeights& weights, at::ScalarType dtype,
                    const std::map<std::string, std::string>& metadata = {});

}  // namespace sparsetrain::fuyou
