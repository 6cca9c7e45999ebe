// GptWeights: naming, shapes and GPT-2 initialisation.
#include "fuyou/model/gpt_weights.h"

#include <ATen/ATen.h>

#include <cmath>

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

}  // namespace

const char* block_tensor_name(int index) {
  check_index(index);
  return kBlockNames[index];
}

std::vector<std::int64_t> block_tensor_shape(const ModelConfig& config, int index) {
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

BlockPieceViews block_piece_views(const ModelConfig& config, const at::Tensor& flat) {
  TORCH_CHECK(flat.dim() == 1 && flat.numel() >= config.max_block_piece_param_count(),
              "a block piece buffer of ", flat.numel(), " elements");
  BlockPieceViews views;
  for (int p = 0; p < kBlockPieces; ++p) {
    const TensorRange range = block_piece_tensors(p);
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

bool block_tensor_decays(int index) {
  return index == kAttnQkvWeight || index == kAttnProjWeight || index == kMlpFcWeight ||
         index == kMlpProjWeight;
}

bool block_tensor_is_conv1d(int index) { return block_tensor_decays(index); }

bool weight_decays(const std::string& name) {
  if (name == "wte.weight" || name == "wpe.weight") return true;
  if (name.rfind("h.", 0) != 0) return false;  // ln_f
  const std::string suffix = name.substr(name.find('.', 2) + 1);
  for (int i = 0; i < kBlockTensorCount; ++i) {
    if (suffix == kBlockNames[i]) return block_tensor_decays(i);
  }
  return false;
}

std::vector<std::pair<std::string, at::Tensor*>> GptWeights::named() {
  std::vector<std::pair<std::string, at::Tensor*>> out;
  out.emplace_back("wte.weight", &wte);
  out.emplace_back("wpe.weight", &wpe);
  for (std::size_t layer = 0; layer < blocks.size(); ++layer) {
    for (int i = 0; i < kBlockTensorCount; ++i) {
      out.emplace_back("h." + std::to_string(layer) + "." + kBlockNames[i], &blocks[layer][i]);
    }
  }
  out.emplace_back("ln_f.weight", &ln_f_weight);
  out.emplace_back("ln_f.bias", &ln_f_bias);
  return out;
}

std::vector<std::pair<std::string, const at::Tensor*>> GptWeights::named() const {
  std::vector<std::pair<std::string, const at::Tensor*>> out;
  for (auto& [name, tensor] : const_cast<GptWeights*>(this)->named())
    out.emplace_back(name, tensor);
  return out;
}

std::int64_t GptWeights::numel() const {
  std::int64_t n = 0;
  for (const auto& [name, tensor] : named()) n += tensor->numel();
  return n;
}

void for_each_init_gpt_weight(const ModelConfig& config, std::uint64_t seed,
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
  visit("wte.weight", normal({config.vocab, c}, std_dev));
  visit("wpe.weight", normal({config.n_positions, c}, std_dev));
  for (std::int64_t layer = 0; layer < config.n_layer; ++layer) {
    for (int i = 0; i < kBlockTensorCount; ++i) {
      const auto shape = block_tensor_shape(config, i);
      const std::string name = "h." + std::to_string(layer) + "." + kBlockNames[i];
      if (i == kLn1Weight || i == kLn2Weight) {
        visit(name, at::ones(shape, cpu));
      } else if (block_tensor_decays(i)) {
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

GptWeights init_gpt_weights(const ModelConfig& config, std::uint64_t seed,
                            const c10::TensorOptions& options) {
  config.validate();
  GptWeights w;
  w.blocks.resize(static_cast<std::size_t>(config.n_layer));
  auto named = w.named();
  std::size_t next = 0;
  for_each_init_gpt_weight(config, seed, [&](const std::string& name, const at::Tensor& t) {
    ST_ASSERT(name == named[next].first, "init order differs from named()");
    *named[next++].second = t.to(options);
  });
  return w;
}

GptWeights zeros_like_weights(const GptWeights& like, const c10::TensorOptions& options) {
  GptWeights out = like;  // copies handles; each is replaced below
  auto src = like.named();
  auto dst = out.named();
  for (std::size_t i = 0; i < src.size(); ++i)
    *dst[i].second = at::zeros(src[i].second->sizes(), options);
  return out;
}

GptWeights weights_to(const GptWeights& weights, const c10::TensorOptions& options) {
  GptWeights out = weights;
  auto src = weights.named();
  auto dst = out.named();
  for (std::size_t i = 0; i < src.size(); ++i) {
    *dst[i].second = src[i].second->to(options, /*non_blocking=*/false, /*copy=*/true);
  }
  return out;
}

void check_weight_shapes(const ModelConfig& config, const GptWeights& weights) {
  auto expect = [&](const std::string& name, const at::Tensor& t, std::vector<std::int64_t> shape) {
    if (!t.defined() || t.sizes().vec() != shape) {
      throw common::UsageError(
          "weight '" + name + "' has shape " + (t.defined() ? c10::str(t.sizes()) : "(missing)") +
              " but model '" + config.name + "' needs " + c10::str(at::IntArrayRef(shape)),
          "pick the --model preset the weights were trained with");
    }
  };
  expect("wte.weight", weights.wte, {config.vocab, config.n_embd});
  expect("wpe.weight", weights.wpe, {config.n_positions, config.n_embd});
  if (static_cast<std::int64_t>(weights.blocks.size()) != config.n_layer) {
    throw common::UsageError("weights have " + std::to_string(weights.blocks.size()) +
                                 " blocks but model '" + config.name + "' has " +
                                 std::to_string(config.n_layer),
                             "pick the --model preset the weights were trained with");
  }
  for (std::size_t layer = 0; layer < weights.blocks.size(); ++layer) {
    for (int i = 0; i < kBlockTensorCount; ++i) {
      expect("h." + std::to_string(layer) + "." + kBlockNames[i], weights.blocks[layer][i],
             block_tensor_shape(config, i));
    }
  }
  expect("ln_f.weight", weights.ln_f_weight, {config.n_embd});
  expect("ln_f.bias", weights.ln_f_bias, {config.n_embd});
}

}  // namespace sparsetrain::fuyou
