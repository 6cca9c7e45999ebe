// Hugging Face GPT-2 name mapping and Conv1D transposition (see hf_gpt2.h).
#include "fuyou/model/hf_gpt2.h"

#include <ATen/ATen.h>

#include <set>

#include "common/error.h"
#include "common/log.h"

namespace sparsetrain::fuyou {

namespace {

constexpr const char* kPrefix = "transformer.";

bool is_conv1d_name(const std::string& canonical) {
  for (const char* suffix :
       {".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight"}) {
    const std::string s(suffix);
    if (canonical.size() > s.size() &&
        canonical.compare(canonical.size() - s.size(), s.size(), s) == 0 &&
        canonical.rfind("h.", 0) == 0) {
      return true;
    }
  }
  return false;
}

// "h.3.attn.bias" / "h.3.attn.masked_bias": causal-mask buffers, not parameters.
bool is_mask_buffer(const std::string& canonical) {
  if (canonical.rfind("h.", 0) != 0) return false;
  const std::string rest = canonical.substr(canonical.find('.', 2) + 1);
  return rest == "attn.bias" || rest == "attn.masked_bias";
}

}  // namespace

ModelWeights gpt_weights_from_hf(const ModelConfig& config, const TensorMap& tensors,
                                 const c10::TensorOptions& options) {
  config.validate();
  ModelWeights weights;
  weights.blocks.resize(static_cast<std::size_t>(config.n_layer));
  std::map<std::string, at::Tensor*> slots;
  for (auto& [name, tensor] : weights.named()) slots[name] = tensor;
  const std::string hint = "pass a Hugging Face GPT-2 checkpoint matching --model " + config.name;

  const at::Tensor* lm_head = nullptr;
  for (const auto& [name, tensor] : tensors) {
    if (name == "lm_head.weight") {
      lm_head = &tensor;
      continue;
    }
    const std::string canonical = name.rfind(kPrefix, 0) == 0 ? name.substr(12) : name;
    if (is_mask_buffer(canonical)) continue;
    auto slot = slots.find(canonical);
    if (slot == slots.end()) {
      throw common::UsageError(
          "checkpoint tensor '" + name + "' is not part of model '" + config.name + "'", hint);
    }
    if (slot->second->defined()) {
      throw common::UsageError("checkpoint holds '" + canonical +
                                   "' twice (with and without the '" + kPrefix + "' prefix)",
                               hint);
    }
    if (tensor.dim() != 2 && is_conv1d_name(canonical)) {
      throw common::UsageError("checkpoint tensor '" + name + "' should be 2-D", hint);
    }
    at::Tensor value = is_conv1d_name(canonical) ? tensor.t() : tensor;
    *slot->second = value.to(options, /*non_blocking=*/false, /*copy=*/true).contiguous();
  }
  for (const auto& [name, slot] : slots) {
    if (!slot->defined()) {
      throw common::UsageError(
          "checkpoint lacks tensor '" + name + "' (or '" + kPrefix + name + "')", hint);
    }
  }
  check_weight_shapes(config, weights);
  if (lm_head != nullptr) {
    const bool tied = lm_head->sizes() == weights.wte.sizes() &&
                      at::equal(lm_head->to(at::kFloat), weights.wte.to(at::kCPU, at::kFloat));
    if (!tied) {
      throw common::UsageError("checkpoint's lm_head.weight differs from wte.weight",
                               "our GPT ties the LM head to the token embedding; export without "
                               "an untied head");
    }
  }
  return weights;
}

namespace {

// gpt_weights_from_hf's checks on an open checkpoint, from its header (and the tied head's two
// tensors): our canonical name -> the name in the file, for every weight.
std::map<std::string, std::string> checked_hf_names(const ModelConfig& config,
                                                    const SafetensorsReader& reader) {
  config.validate();
  // The checkpoint's name of each of our tensors, checked as gpt_weights_from_hf checks them, and
  // a shape-only copy of the weights (meta tensors) for check_weight_shapes.
  ModelWeights shapes;
  shapes.blocks.resize(static_cast<std::size_t>(config.n_layer));
  std::map<std::string, at::Tensor*> slots;
  for (auto& [name, tensor] : shapes.named()) slots[name] = tensor;
  std::map<std::string, std::string> file_name;  // canonical -> as in the file
  const std::string hint = "pass a Hugging Face GPT-2 checkpoint matching --model " + config.name;
  bool lm_head = false;
  for (const SafetensorsReader::Info& info : reader.tensors()) {
    if (info.name == "lm_head.weight") {
      lm_head = true;
      continue;
    }
    const std::string canonical =
        info.name.rfind(kPrefix, 0) == 0 ? info.name.substr(12) : info.name;
    if (is_mask_buffer(canonical)) continue;
    auto slot = slots.find(canonical);
    if (slot == slots.end()) {
      throw common::UsageError(
          "checkpoint tensor '" + info.name + "' is not part of model '" + config.name + "'", hint);
    }
    if (file_name.count(canonical) != 0) {
      throw common::UsageError("checkpoint holds '" + canonical +
                                   "' twice (with and without the '" + kPrefix + "' prefix)",
                               hint);
    }
    std::vector<std::int64_t> shape = info.shape;
    if (is_conv1d_name(canonical)) {
      if (shape.size() != 2) {
        throw common::UsageError("checkpoint tensor '" + info.name + "' should be 2-D", hint);
      }
      std::swap(shape[0], shape[1]);
    }
    *slot->second = at::empty(shape, at::TensorOptions().device(at::kMeta));
    file_name[canonical] = info.name;
  }
  for (const auto& [name, slot] : slots) {
    if (file_name.count(name) == 0) {
      throw common::UsageError(
          "checkpoint lacks tensor '" + name + "' (or '" + kPrefix + name + "')", hint);
    }
  }
  check_weight_shapes(config, shapes);
  if (lm_head) {
    const at::Tensor head = reader.read("lm_head.weight");
    const at::Tensor wte = reader.read(file_name["wte.weight"]);
    if (head.sizes() != wte.sizes() || !at::equal(head.to(at::kFloat), wte.to(at::kFloat))) {
      throw common::UsageError("checkpoint's lm_head.weight differs from wte.weight",
                               "our GPT ties the LM head to the token embedding; export without "
                               "an untied head");
    }
  }
  return file_name;
}

}  // namespace

void check_hf_gpt2(const ModelConfig& config, const std::string& path) {
  const SafetensorsReader reader(path);
  checked_hf_names(config, reader);
}

void for_each_hf_gpt2_weight(const ModelConfig& config, const std::string& path,
                             const WeightVisitor& visit) {
  const SafetensorsReader reader(path);
  std::map<std::string, std::string> file_name = checked_hf_names(config, reader);
  const WeightVisitor checked = finite_weights_only(path, visit);
  ModelWeights order;
  order.blocks.resize(static_cast<std::size_t>(config.n_layer));
  for (const auto& [name, tensor] : order.named()) {
    (void)tensor;
    const at::Tensor value = reader.read(file_name[name]);
    checked(name, (is_conv1d_name(name) ? value.t() : value).to(at::kFloat).contiguous());
  }
}

TensorMap gpt_weights_to_hf(const ModelWeights& weights, at::ScalarType dtype) {
  TensorMap out;
  for (const auto& [name, tensor] : weights.named()) {
    at::Tensor value = is_conv1d_name(name) ? tensor->t() : *tensor;
    out[kPrefix + name] = value
                              .to(at::TensorOptions().device(at::kCPU).dtype(dtype),
                                  /*non_blocking=*/false, /*copy=*/true)
                              .contiguous();
  }
  return out;
}

ModelWeights load_hf_gpt2(const ModelConfig& config, const std::string& path,
                          const c10::TensorOptions& options) {
  return gpt_weights_from_hf(config, read_safetensors(path), options);
}

void export_hf_gpt2(const std::string& path, const ModelWeights& weights, at::ScalarType dtype,
                    const std::map<std::string, std::string>& metadata) {
  std::map<std::string, std::string> meta = metadata;
  meta.emplace("format", "pt");
  write_safetensors(path, gpt_weights_to_hf(weights, dtype), meta);
}

}  // namespace sparsetrain::fuyou
