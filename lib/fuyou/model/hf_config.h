// A Hugging Face model directory's config.json -> ModelConfig: the architectures
// LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM (Llama blocks) and GPT2LMHeadModel,
// with the fields transformers reads (hidden_size, num_attention_heads, num_key_value_heads,
// head_dim, intermediate_size, rms_norm_eps, rope_theta and rope_scaling — or transformers 5's
// rope_parameters —, tie_word_embeddings; GPT-2's n_layer, n_embd, …).
#pragma once

#include <string>
#include <vector>

#include "fuyou/model/model_config.h"

namespace sparsetrain::fuyou {

// The architectures read (config.json "architectures"[0]).
std::vector<std::string> supported_hf_architectures();

// `path`: a config.json file or a directory holding one; the config is named after the directory.
// UsageError naming the file and field for a missing file, malformed JSON, an architecture not
// supported (naming those that are), a missing or non-positive size, an unsupported rope scaling
// (linear and llama3 are), a sliding window that is on, or a shape validate() refuses.
ModelConfig model_config_from_hf(const std::string& path);

// The config.json text transformers reads back to `config` (model_config_from_hf(it) == config in
// every field it reads): GPT2LMHeadModel; for Llama blocks Qwen2ForCausalLM where q, k, v have
// biases, MistralForCausalLM for a "mistral*" name, else LlamaForCausalLM. `dtype`: the weights'
// torch dtype name ("bfloat16", "float16", "float32").
std::string hf_config_json(const ModelConfig& config, const std::string& dtype);

}  // namespace sparsetrain::fuyou
