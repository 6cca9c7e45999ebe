// The Llama family's decoder (see llama_model.h).
#include "fuyou/model/llama_model.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"
#include "fuyou/model/safetensors.h"
#include "fuyou/model/token_data.h"

namespace sparsetrain::fuyou {

namespace fs = std::filesystem;

namespace {

constexpr double kPi = 3.14159265358979323846;

// transformers' LlamaRMSNorm: fp32 statistics, the weight times the result in the input dtype.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor x32 = x.to(at::kFloat);
  const at::Tensor normed = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

// [..., d] -> [-x2, x1] for halves x1, x2 (transformers' rotate_half).
at::Tensor rotate_half(const at::Tensor& x) {
  const std::int64_t half = x.size(-1) / 2;
  return at::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

// cos, sin [T, d] for positions 0 … T-1, in `dtype` (computed in fp32).
std::pair<at::Tensor, at::Tensor> rotary_tables(const ModelConfig& config, std::int64_t t,
                                                at::ScalarType dtype, const at::Device& device) {
  const at::Tensor inv_freq = rope_inverse_frequencies(config).to(device);
  const at::Tensor positions = at::arange(t, at::TensorOptions().dtype(at::kFloat).device(device));
  const at::Tensor freqs = at::outer(positions, inv_freq);  // [T, d/2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1);       // [T, d]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

// Where each tensor of a block sits in llama_block_tensors' order.
struct BlockLayout {
  int ln1 = 0, q = 1, k = 2, v = 3, q_bias = -1, k_bias = -1, v_bias = -1, o = 4, ln2 = 5,
      gate = 6, up = 7, down = 8;
};
BlockLayout block_layout(const ModelConfig& config) {
  BlockLayout at;
  if (config.qkv_bias) {
    at.q_bias = 4;
    at.k_bias = 5;
    at.v_bias = 6;
    at.o = 7;
    at.ln2 = 8;
    at.gate = 9;
    at.up = 10;
    at.down = 11;
  }
  return at;
}

at::Tensor project(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b = {}) {
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

std::string layer_prefix(std::int64_t l) { return "model.layers." + std::to_string(l) + "."; }

}  // namespace

std::vector<BlockTensorSpec> llama_block_tensors(const ModelConfig& config) {
  const std::int64_t c = config.n_embd, q = config.n_head * config.head_dim(),
                     kv = config.n_kv_head * config.head_dim(), i = config.intermediate;
  std::vector<BlockTensorSpec> specs = {{"input_layernorm.weight", {c}, false},
                                        {"self_attn.q_proj.weight", {q, c}, true},
                                        {"self_attn.k_proj.weight", {kv, c}, true},
                                        {"self_attn.v_proj.weight", {kv, c}, true}};
  if (config.qkv_bias) {
    specs.push_back({"self_attn.q_proj.bias", {q}, false});
    specs.push_back({"self_attn.k_proj.bias", {kv}, false});
    specs.push_back({"self_attn.v_proj.bias", {kv}, false});
  }
  specs.push_back({"self_attn.o_proj.weight", {c, q}, true});
  specs.push_back({"post_attention_layernorm.weight", {c}, false});
  specs.push_back({"mlp.gate_proj.weight", {i, c}, true});
  specs.push_back({"mlp.up_proj.weight", {i, c}, true});
  specs.push_back({"mlp.down_proj.weight", {c, i}, true});
  return specs;
}

std::vector<std::pair<std::string, at::Tensor*>> LlamaWeights::named() {
  std::vector<std::pair<std::string, at::Tensor*>> out;
  for (const auto& [name, t] : std::as_const(*this).named()) {
    out.emplace_back(name, const_cast<at::Tensor*>(t));
  }
  return out;
}

std::vector<std::pair<std::string, const at::Tensor*>> LlamaWeights::named() const {
  std::vector<std::pair<std::string, const at::Tensor*>> out{{"model.embed_tokens.weight", &embed}};
  // The names need the config's specs; blocks hold them in that order, so name by index here.
  static const char* const kNoBias[] = {
      "input_layernorm.weight",          "self_attn.q_proj.weight", "self_attn.k_proj.weight",
      "self_attn.v_proj.weight",         "self_attn.o_proj.weight", "post_attention_layernorm.weight",
      "mlp.gate_proj.weight",            "mlp.up_proj.weight",      "mlp.down_proj.weight"};
  static const char* const kBias[] = {"input_layernorm.weight",
                                      "self_attn.q_proj.weight",
                                      "self_attn.k_proj.weight",
                                      "self_attn.v_proj.weight",
                                      "self_attn.q_proj.bias",
                                      "self_attn.k_proj.bias",
                                      "self_attn.v_proj.bias",
                                      "self_attn.o_proj.weight",
                                      "post_attention_layernorm.weight",
                                      "mlp.gate_proj.weight",
                                      "mlp.up_proj.weight",
                                      "mlp.down_proj.weight"};
  for (std::size_t l = 0; l < blocks.size(); ++l) {
    const bool bias = blocks[l].size() == 12;
    ST_ASSERT(bias || blocks[l].size() == 9, "a Llama block has 9 or 12 tensors");
    for (std::size_t j = 0; j < blocks[l].size(); ++j) {
      out.emplace_back(layer_prefix(static_cast<std::int64_t>(l)) + (bias ? kBias : kNoBias)[j],
                       &blocks[l][j]);
    }
  }
  out.emplace_back("model.norm.weight", &norm);
  if (lm_head.defined()) out.emplace_back("lm_head.weight", &lm_head);
  return out;
}

LlamaWeights load_hf_llama(const ModelConfig& config, const std::string& model_dir,
                           const c10::TensorOptions& options) {
  ST_ASSERT(config.llama(), "load_hf_llama: model '" + config.name + "' is not Llama-family");
  const fs::path dir(model_dir);
  const fs::path single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
  const std::string hint = "pass the model directory the checkpoint was saved to (config.json, "
                           "model.safetensors or its shards and index)";
  // Tensor name -> the shard file that holds it.
  std::map<std::string, std::string> where;
  if (fs::is_regular_file(index)) {
    std::ifstream in(index);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
      throw common::UsageError("checkpoint index '" + index.string() + "' is not JSON: " + e.what(),
                               hint);
    }
    if (!j.is_object() || !j.contains("weight_map") || !j.at("weight_map").is_object()) {
      throw common::UsageError("checkpoint index '" + index.string() + "' has no weight_map",
                               hint);
    }
    for (const auto& [name, file] : j.at("weight_map").items()) {
      if (!file.is_string()) {
        throw common::UsageError("checkpoint index '" + index.string() + "' maps '" + name +
                                     "' to " + file.dump() + ", not a file name",
                                 hint);
      }
      const fs::path shard = dir / file.get<std::string>();
      if (!fs::is_regular_file(shard)) {
        throw common::UsageError("checkpoint index '" + index.string() + "' maps '" + name +
                                     "' to shard '" + shard.string() + "', which is not there",
                                 "download every shard the index names");
      }
      where[name] = shard.string();
    }
  } else if (fs::is_regular_file(single)) {
    for (const auto& info : SafetensorsReader(single.string()).tensors()) {
      where[info.name] = single.string();
    }
  } else {
    throw common::UsageError("no model.safetensors or model.safetensors.index.json in '" +
                                 dir.string() + "'",
                             hint);
  }

  LlamaWeights weights;
  const std::vector<BlockTensorSpec> specs = llama_block_tensors(config);
  weights.blocks.assign(static_cast<std::size_t>(config.n_layer),
                        std::vector<at::Tensor>(specs.size()));
  // What must be there, with its shape.
  std::map<std::string, std::pair<at::Tensor*, std::vector<std::int64_t>>> wanted;
  wanted["model.embed_tokens.weight"] = {&weights.embed, {config.vocab, config.n_embd}};
  for (std::int64_t l = 0; l < config.n_layer; ++l) {
    for (std::size_t j = 0; j < specs.size(); ++j) {
      wanted[layer_prefix(l) + specs[j].name] = {&weights.blocks[static_cast<std::size_t>(l)][j],
                                                 specs[j].shape};
    }
  }
  wanted["model.norm.weight"] = {&weights.norm, {config.n_embd}};
  if (!config.tie_word_embeddings) {
    wanted["lm_head.weight"] = {&weights.lm_head, {config.vocab, config.n_embd}};
  }
  for (const auto& [name, file] : where) {
    const bool rotary_buffer = name.size() > 9 && name.rfind(".inv_freq") == name.size() - 9;
    const bool tied_head = name == "lm_head.weight" && config.tie_word_embeddings;
    if (!wanted.count(name) && !rotary_buffer && !tied_head) {
      throw common::UsageError("checkpoint tensor '" + name + "' (in '" + file +
                                   "') is not part of model '" + config.name + "'",
                               "check that config.json belongs to these weights");
    }
  }
  for (const auto& [name, slot] : wanted) {
    if (!where.count(name)) {
      throw common::UsageError("checkpoint in '" + dir.string() + "' lacks tensor '" + name + "'",
                               hint);
    }
  }
  // Shard by shard: each file opened once, its tensors read one at a time.
  std::map<std::string, std::vector<std::string>> by_file;
  for (const auto& [name, file] : where) {
    if (wanted.count(name)) by_file[file].push_back(name);
  }
  for (const auto& [file, names] : by_file) {
    const SafetensorsReader reader(file);
    for (const std::string& name : names) {
      const auto& [slot, shape] = wanted.at(name);
      const at::Tensor t = reader.read(name);
      if (t.sizes().vec() != shape) {
        throw common::UsageError("checkpoint tensor '" + name + "' (in '" + file +
                                     "') has shape " + c10::str(t.sizes()) + " but model '" +
                                     config.name + "' needs " + c10::str(at::IntArrayRef(shape)),
                                 "check that config.json belongs to these weights");
      }
      *slot = t.to(options, /*non_blocking=*/false, /*copy=*/true).contiguous();
    }
  }
  return weights;
}

at::Tensor rope_inverse_frequencies(const ModelConfig& config) {
  const std::int64_t d = config.head_dim();
  // 1 / theta^(2i/d), the exponent in fp32 as transformers does (int64 arange -> float / dim).
  const at::Tensor exponent = at::arange(0, d, 2, at::kLong).to(at::kFloat) / static_cast<double>(d);
  at::Tensor inv_freq = 1.0 / at::pow(config.rope_theta, exponent);
  const RopeScaling& s = config.rope_scaling;
  if (s.type == "linear") return inv_freq / s.factor;
  if (s.type != "llama3") return inv_freq;
  const double old_context = static_cast<double>(s.original_max_positions);
  const double low_freq_wavelen = old_context / s.low_freq_factor;
  const double high_freq_wavelen = old_context / s.high_freq_factor;
  const at::Tensor wavelen = 2 * kPi / inv_freq;
  at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  const at::Tensor smooth =
      (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  const at::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  const at::Tensor medium = (wavelen < high_freq_wavelen).logical_not() &
                            (wavelen > low_freq_wavelen).logical_not();
  return at::where(medium, smoothed, scaled);
}

at::Tensor llama_block_forward(const ModelConfig& config, const std::vector<at::Tensor>& block,
                               const at::Tensor& x) {
  const BlockLayout at = block_layout(config);
  const std::int64_t b = x.size(0), t = x.size(1), h = config.n_head, kvh = config.n_kv_head,
                     d = config.head_dim();
  const auto [cos, sin] = rotary_tables(config, t, x.scalar_type(), x.device());  // [T, d]
  const at::Tensor n1 = rms_norm(x, block[at.ln1], config.layer_norm_eps);
  const auto bias = [&](int index) { return index >= 0 ? block[index] : at::Tensor(); };
  // [B, heads, T, d]
  at::Tensor q = project(n1, block[at.q], bias(at.q_bias)).view({b, t, h, d}).transpose(1, 2);
  at::Tensor k = project(n1, block[at.k], bias(at.k_bias)).view({b, t, kvh, d}).transpose(1, 2);
  at::Tensor v = project(n1, block[at.v], bias(at.v_bias)).view({b, t, kvh, d}).transpose(1, 2);
  q = q * cos + rotate_half(q) * sin;
  k = k * cos + rotate_half(k) * sin;
  if (kvh != h) {  // each K/V head serves h / kvh query heads (transformers' repeat_kv)
    k = k.repeat_interleave(h / kvh, 1);
    v = v.repeat_interleave(h / kvh, 1);
  }
  const at::Tensor a = at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
  const at::Tensor hidden =
      x + project(a.transpose(1, 2).reshape({b, t, h * d}), block[at.o]);
  const at::Tensor n2 = rms_norm(hidden, block[at.ln2], config.layer_norm_eps);
  return hidden +
         project(at::silu(project(n2, block[at.gate])) * project(n2, block[at.up]), block[at.down]);
}

at::Tensor llama_loss_full_graph(const ModelConfig& config, const LlamaWeights& weights,
                                 const at::Tensor& tokens, const at::Tensor& targets) {
  TORCH_CHECK(tokens.dim() == 2 && tokens.scalar_type() == at::kLong,
              "tokens must be int64 [B, T], got ", tokens.sizes());
  at::Tensor x = at::embedding(weights.embed, tokens);
  for (const auto& block : weights.blocks) x = llama_block_forward(config, block, x);
  x = rms_norm(x, weights.norm, config.layer_norm_eps);
  const at::Tensor& head = weights.lm_head.defined() ? weights.lm_head : weights.embed;
  const at::Tensor logits = at::linear(x, head).to(at::kFloat);  // [B, T, V]
  return at::cross_entropy_loss(logits.reshape({-1, config.vocab}),
                                targets.reshape({-1}).to(logits.device()), {},
                                at::Reduction::Mean, kIgnoredTarget);
}

}  // namespace sparsetrain::fuyou
