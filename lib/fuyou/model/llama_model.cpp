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
  int ln1 = 0, q = 1, k = 2, v = 3, q_bias = -1, k_bias = -1, v_bias = -1, o = 4, ln2 = 5, gate = 6,
      up = 7, down = 8;
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

}  // namespace

at::Tensor llama_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor x32 = x.to(at::kFloat);
  const at::Tensor normed = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

namespace {

// A checkpoint's tensors, checked from its index and headers: where each of ours is.
struct CheckpointIndex {
  std::map<std::string, std::string> file_of;  // our tensor name -> its shard
};

CheckpointIndex index_checkpoint(const ModelConfig& config, const std::string& model_dir) {
  ST_ASSERT(config.llama(), "a Llama checkpoint for model '" + config.name + "', not Llama-family");
  const fs::path dir(model_dir);
  const fs::path single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
  const std::string hint =
      "pass the model directory the checkpoint was saved to (config.json, "
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
      throw common::UsageError("checkpoint index '" + index.string() + "' has no weight_map", hint);
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
    const SafetensorsReader reader(single.string());  // alive while its tensors() are read
    for (const auto& info : reader.tensors()) {
      where[info.name] = single.string();
    }
  } else {
    throw common::UsageError(
        "no model.safetensors or model.safetensors.index.json in '" + dir.string() + "'", hint);
  }

  // What must be there, with its shape: every tensor of ours.
  std::map<std::string, std::vector<std::int64_t>> wanted;
  {
    ModelWeights shapes = empty_weights(config);
    const std::vector<BlockTensorSpec> specs = block_tensors(config);
    for (BlockWeights& block : shapes.blocks) {
      for (std::size_t j = 0; j < specs.size(); ++j)
        block.tensors[j] = at::empty(specs[j].shape, at::TensorOptions().device(at::kMeta));
    }
    const auto vc = at::TensorOptions().device(at::kMeta);
    shapes.wte = at::empty({config.vocab, config.n_embd}, vc);
    shapes.ln_f_weight = at::empty({config.n_embd}, vc);
    if (!config.tie_word_embeddings) shapes.lm_head = at::empty({config.vocab, config.n_embd}, vc);
    for (const auto& [name, t] : shapes.named()) wanted[name] = t->sizes().vec();
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
  CheckpointIndex out;
  for (const auto& [name, shape] : wanted) {
    if (!where.count(name)) {
      throw common::UsageError("checkpoint in '" + dir.string() + "' lacks tensor '" + name + "'",
                               hint);
    }
    out.file_of[name] = where.at(name);
  }
  // Shapes from the headers (each shard's header read once; read_safetensors' dtype and layout
  // checks run as it opens).
  std::map<std::string, std::vector<std::string>> by_file;
  for (const auto& [name, file] : out.file_of) by_file[file].push_back(name);
  for (const auto& [file, names] : by_file) {
    const SafetensorsReader reader(file);
    std::map<std::string, std::vector<std::int64_t>> shape_in_file;
    for (const auto& info : reader.tensors()) shape_in_file[info.name] = info.shape;
    for (const std::string& name : names) {
      if (!shape_in_file.count(name)) {
        throw common::UsageError(
            "checkpoint index maps '" + name + "' to '" + file + "', which does not hold it",
            "download the checkpoint again: its index and shards disagree");
      }
      const std::vector<std::int64_t>& shape = shape_in_file.at(name);
      if (shape != wanted.at(name)) {
        throw common::UsageError("checkpoint tensor '" + name + "' (in '" + file + "') has shape " +
                                     c10::str(at::IntArrayRef(shape)) + " but model '" +
                                     config.name + "' needs " +
                                     c10::str(at::IntArrayRef(wanted.at(name))),
                                 "check that config.json belongs to these weights");
      }
    }
  }
  return out;
}

}  // namespace

void check_hf_llama(const ModelConfig& config, const std::string& model_dir) {
  index_checkpoint(config, model_dir);
}

void for_each_hf_llama_weight(const ModelConfig& config, const std::string& model_dir,
                              const WeightVisitor& visit) {
  const CheckpointIndex index = index_checkpoint(config, model_dir);
  std::map<std::string, std::unique_ptr<SafetensorsReader>> readers;  // by shard, opened once
  for (const std::string& name : weight_names(config)) {
    const std::string& file = index.file_of.at(name);
    auto& reader = readers[file];
    if (!reader) reader = std::make_unique<SafetensorsReader>(file);
    visit(name, reader->read(name).to(at::kFloat).contiguous());
  }
}

ModelWeights load_hf_llama(const ModelConfig& config, const std::string& model_dir,
                           const c10::TensorOptions& options) {
  ModelWeights weights = empty_weights(config);
  if (!config.tie_word_embeddings) weights.lm_head = at::empty({0});  // named() lists it
  std::map<std::string, at::Tensor*> slots;
  for (auto& [name, t] : weights.named()) slots[name] = t;
  for_each_hf_llama_weight(config, model_dir, [&](const std::string& name, const at::Tensor& t) {
    *slots.at(name) = t.to(options, /*non_blocking=*/false, /*copy=*/true).contiguous();
  });
  return weights;
}

at::Tensor rope_inverse_frequencies(const ModelConfig& config) {
  const std::int64_t d = config.head_dim();
  // 1 / theta^(2i/d), the exponent in fp32 as transformers does (int64 arange -> float / dim).
  const at::Tensor exponent =
      at::arange(0, d, 2, at::kLong).to(at::kFloat) / static_cast<double>(d);
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
  const at::Tensor medium =
      (wavelen < high_freq_wavelen).logical_not() & (wavelen > low_freq_wavelen).logical_not();
  return at::where(medium, smoothed, scaled);
}

at::Tensor llama_block_forward(const ModelConfig& config, const BlockWeights& block,
                               const at::Tensor& x) {
  const BlockLayout at = block_layout(config);
  const std::int64_t b = x.size(0), t = x.size(1), h = config.n_head, kvh = config.n_kv_head,
                     d = config.head_dim();
  const auto [cos, sin] = rotary_tables(config, t, x.scalar_type(), x.device());  // [T, d]
  const at::Tensor n1 = llama_rms_norm(x, block[at.ln1], config.layer_norm_eps);
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
  const at::Tensor hidden = x + project(a.transpose(1, 2).reshape({b, t, h * d}), block[at.o]);
  const at::Tensor n2 = llama_rms_norm(hidden, block[at.ln2], config.layer_norm_eps);
  return hidden +
         project(at::silu(project(n2, block[at.gate])) * project(n2, block[at.up]), block[at.down]);
}

BlockGrads llama_block_backward(const ModelConfig& config, const BlockWeights& block,
                                const at::Tensor& input, const at::Tensor& output_grad) {
  torch::AutoGradMode enable(true);
  // Leaves sharing the caller's storage: no copy of the weights.
  std::vector<at::Tensor> wrt = {input.detach().requires_grad_(true)};
  BlockWeights leaves(block.tensors.size());
  for (int i = 0; i < block.size(); ++i) {
    leaves[i] = block[i].detach().requires_grad_(true);
    wrt.push_back(leaves[i]);
  }
  const at::Tensor out = llama_block_forward(config, leaves, wrt[0]);
  std::vector<at::Tensor> g = torch::autograd::grad({out}, wrt, {output_grad.to(out.options())});
  BlockGrads grads;
  grads.input_grad = std::move(g[0]);
  grads.weight_grads = BlockWeights(block.tensors.size());
  for (int i = 0; i < block.size(); ++i)
    grads.weight_grads[i] = std::move(g[1 + static_cast<std::size_t>(i)]);
  return grads;
}

at::Tensor llama_loss_full_graph(const ModelConfig& config, const ModelWeights& weights,
                                 const at::Tensor& tokens, const at::Tensor& targets) {
  TORCH_CHECK(tokens.dim() == 2 && tokens.scalar_type() == at::kLong,
              "tokens must be int64 [B, T], got ", tokens.sizes());
  at::Tensor x = at::embedding(weights.wte, tokens);
  for (const BlockWeights& block : weights.blocks) x = llama_block_forward(config, block, x);
  x = llama_rms_norm(x, weights.ln_f_weight, config.layer_norm_eps);
  const at::Tensor logits = at::linear(x, weights.head()).to(at::kFloat);  // [B, T, V]
  return at::cross_entropy_loss(logits.reshape({-1, config.vocab}),
                                targets.reshape({-1}).to(logits.device()), {}, at::Reduction::Mean,
                                kIgnoredTarget);
}

}  // namespace sparsetrain::fuyou
