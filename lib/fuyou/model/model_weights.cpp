// ModelWeights: naming, shapes and GPT-2 initialisation.
#include "fuyou/model/model_weights.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>
#include <set>

#include "common/error.h"

namespace sparsetrain::fuyou {

namespace {

constexpr const char* kBlockNames[kBlockTensorCount] = {
    "ln_1.weight",        "ln_1.bias",        "attn.c_attn.weight", "attn.c_attn.bias",
    "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight",        "ln_2.bias",
    "mlp.c_fc.weight",    "mlp.c_fc.bias",    "mlp.c_proj.weight",  "mlp.c_proj.bias"};

void check_index(int index) {
  ST_ASSERT(index >= 0 && index < kBlockTensorCount, "block tensor index out of range");
}

std::vector<std::int64_t> gpt2_block_tensor_shape(const ModelConfig& config, int index) {
  check_index(index);
  const std::int64_t c = config.n_embd;
  switch (index) {
    case kAttnQkvWeight:
      return {3 * c, c};
    case kAttnQkvBias:
      return {3 * c};
    case kAttnProjWeight:
      return {c, c};
    case kMlpFcWeight:
      return {4 * c, c};
    case kMlpFcBias:
      return {4 * c};
    case kMlpProjWeight:
      return {c, 4 * c};
    default:
      return {c};  // LayerNorm weights and biases, projection biases
  }
}

bool gpt2_block_tensor_decays(int index) {
  return index == kAttnQkvWeight || index == kAttnProjWeight || index == kMlpFcWeight ||
         index == kMlpProjWeight;
}

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

// A Llama block's tensor names by position: 9 tensors, or 12 with Qwen2's q, k, v biases.
const char* llama_block_tensor_name(std::size_t count, std::size_t index) {
  static const char* const kNoBias[] = {
      "input_layernorm.weight",  "self_attn.q_proj.weight", "self_attn.k_proj.weight",
      "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
      "mlp.gate_proj.weight",    "mlp.up_proj.weight",      "mlp.down_proj.weight"};
  static const char* const kBias[] = {
      "input_layernorm.weight",  "self_attn.q_proj.weight", "self_attn.k_proj.weight",
      "self_attn.v_proj.weight", "self_attn.q_proj.bias",   "self_attn.k_proj.bias",
      "self_attn.v_proj.bias",   "self_attn.o_proj.weight", "post_attention_layernorm.weight",
      "mlp.gate_proj.weight",    "mlp.up_proj.weight",      "mlp.down_proj.weight"};
  ST_ASSERT((count == 9 || count == 12) && index < count, "a Llama block has 9 or 12 tensors");
  return (count == 12 ? kBias : kNoBias)[index];
}

std::string layer_prefix(ModelFamily family, std::size_t layer) {
  return (family == ModelFamily::kLlama ? "model.layers." : "h.") + std::to_string(layer) + ".";
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

const char* gpt2_block_tensor_name(int index) {
  check_index(index);
  return kBlockNames[index];
}

std::vector<BlockTensorSpec> block_tensors(const ModelConfig& config) {
  if (config.llama()) return llama_block_tensors(config);
  std::vector<BlockTensorSpec> specs;
  for (int i = 0; i < kBlockTensorCount; ++i) {
    specs.push_back(
        {kBlockNames[i], gpt2_block_tensor_shape(config, i), gpt2_block_tensor_decays(i)});
  }
  return specs;
}

int block_tensor_count(const ModelConfig& config) {
  if (!config.llama()) return kBlockTensorCount;
  return config.qkv_bias ? 12 : 9;
}

std::vector<std::int64_t> block_tensor_shape(const ModelConfig& config, int index) {
  if (!config.llama()) return gpt2_block_tensor_shape(config, index);
  const std::vector<BlockTensorSpec> specs = llama_block_tensors(config);
  ST_ASSERT(index >= 0 && index < static_cast<int>(specs.size()),
            "block tensor index out of range");
  return specs[static_cast<std::size_t>(index)].shape;
}

std::string block_tensor_name(const ModelConfig& config, int index) {
  if (!config.llama()) return gpt2_block_tensor_name(index);
  return llama_block_tensor_name(static_cast<std::size_t>(block_tensor_count(config)),
                                 static_cast<std::size_t>(index));
}

BlockPieceViews block_piece_views(const ModelConfig& config, const at::Tensor& flat) {
  TORCH_CHECK(flat.dim() == 1 && flat.numel() >= config.max_block_piece_param_count(),
              "a block piece buffer of ", flat.numel(), " elements");
  BlockPieceViews views;
  for (int p = 0; p < config.block_piece_count(); ++p) {
    views[static_cast<std::size_t>(p)] =
        BlockWeights(static_cast<std::size_t>(block_tensor_count(config)));
    const TensorRange range = block_piece_tensors(config, p);
    std::int64_t offset = 0;
    for (int i = range.first; i < range.last; ++i) {
      const std::vector<std::int64_t> shape = block_tensor_shape(config, i);
      std::int64_t n = 1;
      for (std::int64_t d : shape) n *= d;
      views[static_cast<std::size_t>(p)][i] = flat.narrow(0, offset, n).view(shape);
      offset += n;
    }
  }
  return views;
}

bool block_tensor_is_conv1d(int index) { return gpt2_block_tensor_decays(index); }

bool weight_decays(const std::string& name) {
  if (!ends_with(name, ".weight")) return false;  // biases
  return name.find("ln_") == std::string::npos && name.find("norm") == std::string::npos;
}

std::vector<std::pair<std::string, at::Tensor*>> ModelWeights::named() {
  const bool llama = family == ModelFamily::kLlama;
  std::vector<std::pair<std::string, at::Tensor*>> out;
  out.emplace_back(llama ? "model.embed_tokens.weight" : "wte.weight", &wte);
  if (!llama) out.emplace_back("wpe.weight", &wpe);
  for (std::size_t layer = 0; layer < blocks.size(); ++layer) {
    const std::string prefix = layer_prefix(family, layer);
    const auto count = static_cast<std::size_t>(blocks[layer].size());
    for (std::size_t i = 0; i < count; ++i) {
      out.emplace_back(prefix + (llama ? llama_block_tensor_name(count, i)
                                       : gpt2_block_tensor_name(static_cast<int>(i))),
                       &blocks[layer].tensors[i]);
    }
  }
  if (llama) {
    out.emplace_back("model.norm.weight", &ln_f_weight);
    if (lm_head.defined()) out.emplace_back("lm_head.weight", &lm_head);
  } else {
    out.emplace_back("ln_f.weight", &ln_f_weight);
    out.emplace_back("ln_f.bias", &ln_f_bias);
  }
  return out;
}

std::vector<std::pair<std::string, const at::Tensor*>> ModelWeights::named() const {
  std::vector<std::pair<std::string, const at::Tensor*>> out;
  for (auto& [name, tensor] : const_cast<ModelWeights*>(this)->named())
    out.emplace_back(name, tensor);
  return out;
}

std::int64_t ModelWeights::numel() const {
  std::int64_t n = 0;
  for (const auto& [name, tensor] : named()) n += tensor->numel();
  return n;
}

ModelWeights empty_weights(const ModelConfig& config) {
  ModelWeights w;
  w.family = config.family;
  w.blocks.assign(static_cast<std::size_t>(config.n_layer),
                  BlockWeights(static_cast<std::size_t>(block_tensor_count(config))));
  return w;
}

std::vector<std::string> weight_names(const ModelConfig& config) {
  ModelWeights shell = empty_weights(config);
  const at::Tensor placeholder = at::empty({0});
  for (BlockWeights& block : shell.blocks) {
    for (at::Tensor& t : block.tensors) t = placeholder;
  }
  shell.wte = shell.ln_f_weight = placeholder;
  if (config.llama()) {
    if (!config.tie_word_embeddings) shell.lm_head = placeholder;
  } else {
    shell.wpe = shell.ln_f_bias = placeholder;
  }
  std::vector<std::string> names;
  for (const auto& [name, t] : shell.named()) names.push_back(name);
  return names;
}

void for_each_init_weight(const ModelConfig& config, std::uint64_t seed,
                          const WeightVisitor& visit) {
  config.validate();
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const auto cpu = at::TensorOptions().dtype(at::kFloat);
  const double std_dev = 0.02;
  const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(config.n_layer));
  auto normal = [&](std::vector<std::int64_t> shape, double sd) {
    return at::normal(0.0, sd, shape, gen, cpu);
  };
  const std::int64_t c = config.n_embd;
  const std::vector<BlockTensorSpec> specs = block_tensors(config);
  if (config.llama()) {
    visit("model.embed_tokens.weight", normal({config.vocab, c}, std_dev));
    for (std::int64_t layer = 0; layer < config.n_layer; ++layer) {
      const std::string prefix = layer_prefix(config.family, static_cast<std::size_t>(layer));
      for (const BlockTensorSpec& spec : specs) {
        if (spec.decays) {
          visit(prefix + spec.name, normal(spec.shape, std_dev));
        } else if (ends_with(spec.name, ".bias")) {
          visit(prefix + spec.name, at::zeros(spec.shape, cpu));
        } else {
          visit(prefix + spec.name, at::ones(spec.shape, cpu));  // RMSNorm
        }
      }
    }
    visit("model.norm.weight", at::ones({c}, cpu));
    if (!config.tie_word_embeddings) visit("lm_head.weight", normal({config.vocab, c}, std_dev));
    return;
  }
  visit("wte.weight", normal({config.vocab, c}, std_dev));
  visit("wpe.weight", normal({config.n_positions, c}, std_dev));
  for (std::int64_t layer = 0; layer < config.n_layer; ++layer) {
    for (int i = 0; i < kBlockTensorCount; ++i) {
      const auto& shape = specs[static_cast<std::size_t>(i)].shape;
      const std::string name = "h." + std::to_string(layer) + "." + kBlockNames[i];
      if (i == kLn1Weight || i == kLn2Weight) {
        visit(name, at::ones(shape, cpu));
      } else if (gpt2_block_tensor_decays(i)) {
        const bool residual = i == kAttnProjWeight || i == kMlpProjWeight;
        visit(name, normal(shape, residual ? residual_std : std_dev));
      } else {
        visit(name, at::zeros(shape, cpu));
      }
    }
  }
  visit("ln_f.weight", at::ones({c}, cpu));
  visit("ln_f.bias", at::zeros({c}, cpu));
}

WeightVisitor finite_weights_only(const std::string& source, WeightVisitor visit) {
  return [source, visit = std::move(visit)](const std::string& name, const at::Tensor& t) {
    if (t.is_floating_point()) {
      const std::int64_t bad = at::isfinite(t).logical_not().sum().item<std::int64_t>();
      if (bad > 0) {
        throw common::UsageError("checkpoint '" + source + "': tensor '" + name + "' holds " +
                                     std::to_string(bad) + " non-finite value" +
                                     (bad == 1 ? "" : "s") + " (inf or NaN) of " +
                                     std::to_string(t.numel()),
                                 "the checkpoint is corrupt or from a diverged run; start from "
                                 "another one");
      }
    }
    visit(name, t);
  };
}

ModelWeights collect_weights(const ModelConfig& config, const WeightProducer& produce) {
  ModelWeights w = empty_weights(config);
  if (config.llama() && !config.tie_word_embeddings)
    w.lm_head = at::empty({0});  // defined, so that named() lists the head; produce() fills it
  std::map<std::string, at::Tensor*> slots;
  for (auto& [name, t] : w.named()) slots[name] = t;
  std::set<std::string> visited;
  produce([&](const std::string& name, const at::Tensor& t) {
    ST_ASSERT(slots.count(name),
              "weight '" + name + "' is not part of model '" + config.name + "'");
    ST_ASSERT(visited.insert(name).second, "weight '" + name + "' produced twice");
    *slots.at(name) = t;
  });
  ST_ASSERT(visited.size() == slots.size(),
            "the producer left weights of '" + config.name + "' unset");
  return w;
}

ModelWeights init_model_weights(const ModelConfig& config, std::uint64_t seed,
                                const c10::TensorOptions& options) {
  config.validate();
  return collect_weights(config, [&](const WeightVisitor& visit) {
    for_each_init_weight(config, seed, [&](const std::string& name, const at::Tensor& t) {
      visit(name, t.to(options));
    });
  });
}

ModelWeights zeros_like_weights(const ModelWeights& like, const c10::TensorOptions& options) {
  ModelWeights out = like;  // copies handles; each is replaced below
  auto src = like.named();
  auto dst = out.named();
  for (std::size_t i = 0; i < src.size(); ++i)
    *dst[i].second = at::zeros(src[i].second->sizes(), options);
  return out;
}

ModelWeights weights_to(const ModelWeights& weights, const c10::TensorOptions& options) {
  ModelWeights out = weights;
  auto src = weights.named();
  auto dst = out.named();
  for (std::size_t i = 0; i < src.size(); ++i) {
    *dst[i].second = src[i].second->to(options, /*non_blocking=*/false, /*copy=*/true);
  }
  return out;
}

void check_weight_shapes(const ModelConfig& config, const ModelWeights& weights) {
  const std::string hint = "pick the --model preset (or --model-dir) the weights were trained with";
  auto expect = [&](const std::string& name, const at::Tensor& t, std::vector<std::int64_t> shape) {
    if (!t.defined() || t.sizes().vec() != shape) {
      throw common::UsageError(
          "weight '" + name + "' has shape " + (t.defined() ? c10::str(t.sizes()) : "(missing)") +
              " but model '" + config.name + "' needs " + c10::str(at::IntArrayRef(shape)),
          hint);
    }
  };
  if (weights.family != config.family) {
    throw common::UsageError(std::string("weights of a ") + model_family_name(weights.family) +
                                 " model but model '" + config.name + "' is " +
                                 model_family_name(config.family),
                             hint);
  }
  if (static_cast<std::int64_t>(weights.blocks.size()) != config.n_layer) {
    throw common::UsageError("weights have " + std::to_string(weights.blocks.size()) +
                                 " blocks but model '" + config.name + "' has " +
                                 std::to_string(config.n_layer),
                             hint);
  }
  const std::vector<BlockTensorSpec> specs = block_tensors(config);
  for (std::size_t layer = 0; layer < weights.blocks.size(); ++layer) {
    if (weights.blocks[layer].size() != static_cast<int>(specs.size())) {
      throw common::UsageError("weights' block " + std::to_string(layer) + " has " +
                                   std::to_string(weights.blocks[layer].size()) +
                                   " tensors but model '" + config.name + "' has " +
                                   std::to_string(specs.size()),
                               hint);
    }
  }
  const bool llama = config.llama();
  for (std::size_t layer = 0; layer < weights.blocks.size(); ++layer) {
    for (std::size_t i = 0; i < specs.size(); ++i) {
      expect(layer_prefix(config.family, layer) + specs[i].name, weights.blocks[layer].tensors[i],
             specs[i].shape);
    }
  }
  if (!llama) {
    expect("wpe.weight", weights.wpe, {config.n_positions, config.n_embd});
    expect("ln_f.bias", weights.ln_f_bias, {config.n_embd});
  }
  expect(llama ? "model.norm.weight" : "ln_f.weight", weights.ln_f_weight, {config.n_embd});
  expect(llama ? "model.embed_tokens.weight" : "wte.weight", weights.wte,
         {config.vocab, config.n_embd});
  if (llama && !config.tie_word_embeddings) {
    expect("lm_head.weight", weights.lm_head, {config.vocab, config.n_embd});
  } else if (weights.lm_head.defined()) {
    throw common::UsageError("weights have an lm_head.weight but model '" + config.name +
                                 "' ties its head to the embedding",
                             hint);
  }
}

}  // namespace sparsetrain::fuyou
