// A Hugging Face model directory out of weights (see hf_export.h).
#include "fuyou/model/hf_export.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "common/atomic_file.h"
#include "common/error.h"
#include "fuyou/model/hf_config.h"
#include "fuyou/model/hf_gpt2.h"
#include "fuyou/model/safetensors.h"

namespace sparsetrain::fuyou {

namespace fs = std::filesystem;

namespace {

// Files of a model directory besides its config and weights that a user loads it with.
constexpr const char* kCompanionFiles[] = {"tokenizer.json",
                                           "tokenizer_config.json",
                                           "special_tokens_map.json",
                                           "generation_config.json",
                                           "tokenizer.model",
                                           "vocab.json",
                                           "merges.txt",
                                           "chat_template.jinja",
                                           "added_tokens.json"};

const char* torch_dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kBFloat16:
      return "bfloat16";
    case at::kHalf:
      return "float16";
    case at::kFloat:
      return "float32";
    default:
      throw common::UsageError(std::string("cannot export weights as ") + c10::toString(dtype),
                               "pass --export-dtype bf16, fp16 or fp32");
  }
}

std::uint64_t element_bytes(at::ScalarType dtype) { return dtype == at::kFloat ? 4 : 2; }

// The tensors under their Hugging Face names, in the order they go to the shards.
std::vector<std::pair<std::string, at::Tensor>> hf_tensors(const ModelWeights& weights) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  if (weights.family == ModelFamily::kGpt2) {
    for (auto& [name, t] : gpt_weights_to_hf(weights, at::kFloat)) out.emplace_back(name, t);
    return out;
  }
  for (const auto& [name, t] : weights.named()) out.emplace_back(name, *t);
  return out;
}

std::string config_text(const ModelConfig& config, const HfExportOptions& options) {
  const std::string dtype = torch_dtype_name(options.dtype);
  const fs::path source = fs::path(options.source_dir) / "config.json";
  if (options.source_dir.empty() || !fs::is_regular_file(source)) {
    return hf_config_json(config, dtype);
  }
  // The source's own config (token ids, names, everything transformers keeps), its dtype set.
  nlohmann::json j = nlohmann::json::parse(common::read_file(source.string()));
  j["torch_dtype"] = dtype;
  j["dtype"] = dtype;
  return j.dump(2) + "\n";
}

}  // namespace

void check_hf_export_dir(const std::string& dir) {
  const fs::path path(dir);
  const std::string hint = "pick a new directory for --export, or remove this one";
  if (fs::exists(path)) {
    if (!fs::is_directory(path)) {
      throw common::UsageError("--export '" + dir + "' is a file, not a model directory", hint);
    }
    if (!fs::is_empty(path)) {
      throw common::UsageError("--export '" + dir + "' is a directory that is not empty", hint);
    }
  }
  const fs::path parent = fs::absolute(path).parent_path();
  if (!fs::is_directory(parent)) {
    throw common::UsageError(
        "--export '" + dir + "': directory '" + parent.string() + "' does not exist",
        "create it first");
  }
}

void export_hf_model_dir(const std::string& dir, const ModelConfig& config,
                         const ModelWeights& weights, const HfExportOptions& options) {
  check_hf_export_dir(dir);
  ST_ASSERT(options.shard_bytes > 0, "shards of 0 bytes");
  const std::uint64_t bytes = element_bytes(options.dtype);
  const auto tensors = hf_tensors(weights);
  // Greedy shards in tensor order, as save_pretrained fills them.
  std::vector<std::vector<std::size_t>> shards(1);
  std::uint64_t in_shard = 0, total = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::uint64_t b = bytes * static_cast<std::uint64_t>(tensors[i].second.numel());
    if (!shards.back().empty() && in_shard + b > options.shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(i);
    in_shard += b;
    total += b;
  }
  common::AtomicDirectory out(dir);
  const fs::path tmp(out.temp_path());
  fs::create_directories(tmp);
  std::map<std::string, std::string> meta = options.metadata;
  meta.emplace("format", "pt");
  nlohmann::json weight_map = nlohmann::json::object();
  for (std::size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    const std::string file = shards.size() == 1 ? "model.safetensors" : name;
    TensorMap shard;  // one shard's tensors converted at a time
    for (const std::size_t i : shards[s]) {
      shard[tensors[i].first] = tensors[i]
                                    .second
                                    .to(at::TensorOptions().device(at::kCPU).dtype(options.dtype),
                                        /*non_blocking=*/false, /*copy=*/true)
                                    .contiguous();
      weight_map[tensors[i].first] = file;
    }
    write_safetensors((tmp / file).string(), shard, meta);
  }
  if (shards.size() > 1) {
    const nlohmann::json index = {{"metadata", {{"total_size", total}}},
                                  {"weight_map", weight_map}};
    common::write_file_atomic((tmp / "model.safetensors.index.json").string(),
                              index.dump(2) + "\n");
  }
  common::write_file_atomic((tmp / "config.json").string(), config_text(config, options));
  if (!options.source_dir.empty()) {
    for (const char* companion : kCompanionFiles) {
      const fs::path from = fs::path(options.source_dir) / companion;
      if (fs::is_regular_file(from)) {
        common::write_file_atomic((tmp / companion).string(), common::read_file(from.string()));
      }
    }
  }
  out.commit();
}

}  // namespace sparsetrain::fuyou
