// Presets and arithmetic of ModelConfig. Sources for the presets:
//  - GPT-2: Radford et al. 2019 and the Hugging Face configs (vocab 50257, 1024 positions).
//  - GPT-3: Brown et al. 2020, Table 2.1 (vocab 50257, context 2048). Two rows of that table do not
//    divide evenly (1.3B: d_model 2048 with "24 heads of 128"; 13B: d_model 5140 with 40 heads of
//    128); we use 16 heads of 128 for 1.3B and d_model 5120 for 13B, as the released replications
//    do.
//  - 30B and 66B are not in the GPT-3 paper; they are OPT's sizes (Zhang et al. 2022, Table 1):
//    48 layers × 7168 with 56 heads, 64 layers × 9216 with 72 heads, context 2048.
#include "fuyou/model/model_config.h"

#include <map>
#include <sstream>

#include "common/error.h"

namespace sparsetrain::fuyou {

namespace {

struct Preset {
  const char* name;
  std::int64_t n_layer, n_embd, n_head, vocab, n_positions;
};

// Smallest first. tiny/small use the byte vocabulary (256) for tests and the built-in demo.
constexpr Preset kPresets[] = {
    {"tiny", 2, 64, 4, 256, 128},
    {"small", 4, 128, 4, 256, 256},
    {"gpt2", 12, 768, 12, 50257, 1024},
    {"gpt3-125m", 12, 768, 12, 50257, 2048},
    {"gpt2-medium", 24, 1024, 16, 50257, 1024},
    {"gpt3-350m", 24, 1024, 16, 50257, 2048},
    {"gpt2-large", 36, 1280, 20, 50257, 1024},
    {"gpt3-760m", 24, 1536, 16, 50257, 2048},
    {"gpt2-xl", 48, 1600, 25, 50257, 1024},
    {"gpt3-1.3b", 24, 2048, 16, 50257, 2048},
    {"gpt3-2.7b", 32, 2560, 32, 50257, 2048},
    {"gpt3-6.7b", 32, 4096, 32, 50257, 2048},
    {"gpt3-13b", 40, 5120, 40, 50257, 2048},
    {"gpt3-30b", 48, 7168, 56, 50257, 2048},
    {"gpt3-66b", 64, 9216, 72, 50257, 2048},
    {"gpt3-175b", 96, 12288, 96, 50257, 2048},
};

std::string preset_list() {
  std::string list;
  for (const Preset& p : kPresets) list += (list.empty() ? "" : ", ") + std::string(p.name);
  return list;
}

// "custom:L=4,C=128,H=4,V=256,T=256" -> config (V defaults to 256, T to 1024).
ModelConfig parse_custom(const std::string& name) {
  ModelConfig config;
  config.name = name;
  config.vocab = 256;
  config.n_positions = 1024;
  std::map<std::string, std::int64_t*> fields{{"L", &config.n_layer},
                                              {"C", &config.n_embd},
                                              {"H", &config.n_head},
                                              {"V", &config.vocab},
                                              {"T", &config.n_positions}};
  std::map<std::string, bool> seen;
  std::stringstream spec(name.substr(name.find(':') + 1));
  std::string item;
  const std::string hint = "write --model custom:L=4,C=128,H=4[,V=256][,T=1024]";
  while (std::getline(spec, item, ',')) {
    const auto eq = item.find('=');
    const auto field = eq == std::string::npos ? fields.end() : fields.find(item.substr(0, eq));
    if (field == fields.end()) {
      throw common::UsageError("bad custom model field '" + item + "' in '" + name + "'", hint);
    }
    try {
      std::size_t used = 0;
      *field->second = std::stoll(item.substr(eq + 1), &used);
      if (used != item.size() - eq - 1) throw std::invalid_argument("trailing text");
    } catch (const std::exception&) {
      throw common::UsageError("bad number in custom model field '" + item + "'", hint);
    }
    seen[field->first] = true;
  }
  if (!seen["L"] || !seen["C"] || !seen["H"]) {
    throw common::UsageError("custom model '" + name + "' lacks L, C or H", hint);
  }
  return config;
}

}  // namespace

void ModelConfig::validate() const {
  const std::pair<const char*, std::int64_t> sizes[] = {{"layers", n_layer},
                                                        {"hidden", n_embd},
                                                        {"heads", n_head},
                                                        {"vocab", vocab},
                                                        {"positions", n_positions}};
  for (const auto& [field, value] : sizes) {
    if (value <= 0) {
      throw common::UsageError(
          "model '" + name + "': " + field + " must be positive, got " + std::to_string(value),
          "pick a preset with --model, e.g. tiny or gpt3-125m");
    }
  }
  if (n_embd % n_head != 0) {
    throw common::UsageError("model '" + name + "': hidden size " + std::to_string(n_embd) +
                                 " is not a multiple of " + std::to_string(n_head) + " heads",
                             "choose C divisible by H");
  }
}

std::int64_t ModelConfig::block_param_count() const {
  const std::int64_t c = n_embd;
  const std::int64_t layer_norms = 2 * 2 * c;
  const std::int64_t attn = c * 3 * c + 3 * c + c * c + c;
  const std::int64_t mlp = c * 4 * c + 4 * c + 4 * c * c + c;
  return layer_norms + attn + mlp;
}

std::int64_t ModelConfig::block_piece_param_count(int piece) const {
  const std::int64_t c = n_embd;
  switch (piece) {
    case kAttnInPiece:
      return 2 * c + 3 * c * c + 3 * c;  // ln_1, c_attn
    case kAttnOutPiece:
      return c * c + c;  // attn.c_proj
    case kMlpInPiece:
      return 2 * c + 4 * c * c + 4 * c;  // ln_2, c_fc
    case kMlpOutPiece:
      return 4 * c * c + c;  // mlp.c_proj
    default:
      ST_ASSERT(false, "block piece " + std::to_string(piece));
      return 0;
  }
}

std::int64_t ModelConfig::max_block_piece_param_count() const {
  return block_piece_param_count(kMlpInPiece);
}

std::int64_t ModelConfig::block_piece_first_param(int piece) const {
  std::int64_t first = 0;
  for (int p = 0; p < piece; ++p) first += block_piece_param_count(p);
  return first;
}

TensorRange block_piece_tensors(int piece) {
  static constexpr TensorRange kRanges[kBlockPieces] = {{0, 4}, {4, 6}, {6, 10}, {10, 12}};
  ST_ASSERT(piece >= 0 && piece < kBlockPieces, "block piece " + std::to_string(piece));
  return kRanges[piece];
}

std::int64_t ModelConfig::param_count() const {
  return vocab * n_embd + n_positions * n_embd + n_layer * block_param_count() + 2 * n_embd;
}

std::int64_t ModelConfig::flops_param_count() const { return param_count() - n_positions * n_embd; }

double ModelConfig::train_flops_per_token(std::int64_t seq) const {
  return 6.0 * static_cast<double>(flops_param_count()) +
         12.0 * static_cast<double>(n_layer * n_embd * seq);
}

double ModelConfig::train_flops_per_token_recompute(std::int64_t seq) const {
  const double c = static_cast<double>(n_embd);
  return train_flops_per_token(seq) +
         static_cast<double>(n_layer) * (16 * c * c + 4 * c * static_cast<double>(seq));
}

ModelConfig model_config_from_name(const std::string& name) {
  if (name.rfind("custom:", 0) == 0) {
    ModelConfig config = parse_custom(name);
    config.validate();
    return config;
  }
  for (const Preset& p : kPresets) {
    if (name == p.name) {
      ModelConfig config;
      config.name = p.name;
      config.n_layer = p.n_layer;
      config.n_embd = p.n_embd;
      config.n_head = p.n_head;
      config.vocab = p.vocab;
      config.n_positions = p.n_positions;
      config.validate();
      return config;
    }
  }
  throw common::UsageError("unknown model '" + name + "'",
                           "use one of " + preset_list() + ", or custom:L=4,C=128,H=4");
}

std::vector<std::string> model_preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

}  // namespace sparsetrain::fuyou
