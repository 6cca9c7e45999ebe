// Presets and arithmetic of ModelConfig. Sources for the presets:
//  - GPT-2: Radford et al. 2019 and the Hugging Face configs (vocab 50257, 1024 positions).
//  - GPT-3: Brown et al. 2020, Table 2.1 (vocab 50257, context 2048). Two rows of that table do not
//    divide evenly (1.3B: d_model 2048 with "24 heads of 128"; 13B: d_model 5140 with 40 heads of
//    128); we use 16 heads of 128 for 1.3B and d_model 5120 for 13B, as the released replications
//    do.
//  - 30B and 66B are not in the GPT-3 paper; they are OPT's sizes (Zhang et al. 2022, Table 1):
//    48 layers × 7168 with 56 heads, 64 layers × 9216 with 72 heads, context 2048.
//  - Llama family: the config.json files on the Hugging Face hub of meta-llama/Llama-3.2-1B, -3B,
//    Llama-3.1-8B, -70B, -405B, mistralai/Mistral-7B-v0.3, Qwen/Qwen2.5-7B, -72B.
#include "fuyou/model/model_config.h"

#include <algorithm>
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

struct LlamaPreset {
  const char* name;
  std::int64_t n_layer, n_embd, n_head, n_kv_head, intermediate, vocab, n_positions;
  double rope_theta, rms_norm_eps;
  double llama3_factor;  // 0: no rope scaling
  bool qkv_bias, tied;
};

constexpr LlamaPreset kLlamaPresets[] = {
    {"llama3.2-1b", 16, 2048, 32, 8, 8192, 128256, 131072, 500000.0, 1e-5, 32.0, false, true},
    {"llama3.2-3b", 28, 3072, 24, 8, 8192, 128256, 131072, 500000.0, 1e-5, 32.0, false, true},
    {"llama3.1-8b", 32, 4096, 32, 8, 14336, 128256, 131072, 500000.0, 1e-5, 8.0, false, false},
    {"mistral-7b-v0.3", 32, 4096, 32, 8, 14336, 32768, 32768, 1000000.0, 1e-5, 0, false, false},
    {"qwen2.5-7b", 28, 3584, 28, 4, 18944, 152064, 131072, 1000000.0, 1e-6, 0, true, false},
    {"llama3.1-70b", 80, 8192, 64, 8, 28672, 128256, 131072, 500000.0, 1e-5, 8.0, false, false},
    {"qwen2.5-72b", 80, 8192, 64, 8, 29568, 152064, 131072, 1000000.0, 1e-6, 0, true, false},
    {"llama3.1-405b", 126, 16384, 128, 8, 53248, 128256, 131072, 500000.0, 1e-5, 8.0, false, false},
};

ModelConfig from_llama_preset(const LlamaPreset& p) {
  ModelConfig config;
  config.family = ModelFamily::kLlama;
  config.name = p.name;
  config.n_layer = p.n_layer;
  config.n_embd = p.n_embd;
  config.n_head = p.n_head;
  config.n_kv_head = p.n_kv_head;
  config.intermediate = p.intermediate;
  config.vocab = p.vocab;
  config.n_positions = p.n_positions;
  config.rope_theta = p.rope_theta;
  config.layer_norm_eps = p.rms_norm_eps;
  if (p.llama3_factor > 0) {  // Llama 3.1+: low 1, high 4, original context 8192
    config.rope_scaling.type = "llama3";
    config.rope_scaling.factor = p.llama3_factor;
  }
  config.qkv_bias = p.qkv_bias;
  config.tie_word_embeddings = p.tied;
  return config;
}

std::string preset_list() {
  std::string list;
  for (const Preset& p : kPresets) list += (list.empty() ? "" : ", ") + std::string(p.name);
  for (const LlamaPreset& p : kLlamaPresets) list += ", " + std::string(p.name);
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

const char* model_family_name(ModelFamily family) {
  return family == ModelFamily::kLlama ? "llama" : "gpt2";
}

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
  if (llama()) {
    const std::pair<const char*, std::int64_t> llama_sizes[] = {
        {"key/value heads", n_kv_head}, {"intermediate size", intermediate}};
    for (const auto& [field, value] : llama_sizes) {
      if (value <= 0) {
        throw common::UsageError(
            "model '" + name + "': " + field + " must be positive, got " + std::to_string(value),
            "check the config's num_key_value_heads and intermediate_size");
      }
    }
    if (n_head % n_kv_head != 0) {
      throw common::UsageError("model '" + name + "': " + std::to_string(n_head) +
                                   " attention heads do not split into " +
                                   std::to_string(n_kv_head) + " key/value groups",
                               "num_attention_heads must be a multiple of num_key_value_heads");
    }
    if (head_dim() <= 0 || head_dim() % 2 != 0) {
      throw common::UsageError("model '" + name + "': head size " + std::to_string(head_dim()) +
                                   " is not a positive even number (rotary embeddings pair it)",
                               "check the config's head_dim");
    }
    if (head_size > 0) return;  // an explicit head size need not divide C
  }
  if (n_embd % n_head != 0) {
    throw common::UsageError("model '" + name + "': hidden size " + std::to_string(n_embd) +
                                 " is not a multiple of " + std::to_string(n_head) + " heads",
                             "choose C divisible by H");
  }
}

std::int64_t ModelConfig::block_param_count() const {
  if (llama()) {
    const std::int64_t c = n_embd, q = n_head * head_dim(), kv = n_kv_head * head_dim();
    return 2 * c + c * (q + 2 * kv) + (qkv_bias ? q + 2 * kv : 0) + q * c + 3 * c * intermediate;
  }
  const std::int64_t c = n_embd;
  const std::int64_t layer_norms = 2 * 2 * c;
  const std::int64_t attn = c * 3 * c + 3 * c + c * c + c;
  const std::int64_t mlp = c * 4 * c + 4 * c + 4 * c * c + c;
  return layer_norms + attn + mlp;
}

int ModelConfig::block_piece_count() const {
  return llama() ? kLlamaBlockPieces : kGpt2BlockPieces;
}

std::int64_t ModelConfig::block_piece_param_count(int piece) const {
  ST_ASSERT(piece >= 0 && piece < block_piece_count(), "block piece " + std::to_string(piece));
  const std::int64_t c = n_embd;
  if (llama()) {
    const std::int64_t q = n_head * head_dim(), kv = n_kv_head * head_dim();
    switch (piece) {
      case kLlamaAttnInPiece:
        return c + c * (q + 2 * kv) + (qkv_bias ? q + 2 * kv : 0);  // norm, q, k, v
      case kLlamaAttnOutPiece:
        return q * c;  // o
      case kLlamaGatePiece:
        return c + intermediate * c;  // norm, gate
      default:
        return intermediate * c;  // up, down
    }
  }
  switch (piece) {
    case kAttnInPiece:
      return 2 * c + 3 * c * c + 3 * c;  // ln_1, c_attn
    case kAttnOutPiece:
      return c * c + c;  // attn.c_proj
    case kMlpInPiece:
      return 2 * c + 4 * c * c + 4 * c;  // ln_2, c_fc
    default:
      return 4 * c * c + c;  // mlp.c_proj
  }
}

std::int64_t ModelConfig::max_block_piece_param_count() const {
  std::int64_t most = 0;
  for (int p = 0; p < block_piece_count(); ++p) most = std::max(most, block_piece_param_count(p));
  return most;
}

std::int64_t ModelConfig::block_piece_first_param(int piece) const {
  std::int64_t first = 0;
  for (int p = 0; p < piece; ++p) first += block_piece_param_count(p);
  return first;
}

TensorRange block_piece_tensors(const ModelConfig& config, int piece) {
  ST_ASSERT(piece >= 0 && piece < config.block_piece_count(),
            "block piece " + std::to_string(piece));
  if (config.llama()) {
    const int o = config.qkv_bias ? 7 : 4;  // o_proj's index; the norm, gate, up, down follow
    static constexpr int kAfterO[] = {0, 1, 3, 4, 5};
    if (piece == kLlamaAttnInPiece) return {0, o};
    return {o + kAfterO[piece - 1], o + kAfterO[piece]};
  }
  static constexpr TensorRange kRanges[] = {{0, 4}, {4, 6}, {6, 10}, {10, 12}};
  return kRanges[piece];
}

std::int64_t ModelConfig::param_count() const {
  if (llama()) {
    return vocab * n_embd * (tie_word_embeddings ? 1 : 2) + n_layer * block_param_count() + n_embd;
  }
  return vocab * n_embd + n_positions * n_embd + n_layer * block_param_count() + 2 * n_embd;
}

std::int64_t ModelConfig::flops_param_count() const {
  if (llama()) return param_count() - (tie_word_embeddings ? 0 : vocab * n_embd);
  return param_count() - n_positions * n_embd;
}

double ModelConfig::train_flops_per_token(std::int64_t seq) const {
  const std::int64_t attention_width = llama() ? n_head * head_dim() : n_embd;
  return 6.0 * static_cast<double>(flops_param_count()) +
         12.0 * static_cast<double>(n_layer * attention_width * seq);
}

double ModelConfig::train_flops_per_token_recompute(std::int64_t seq) const {
  if (llama()) {  // every block's forward again but down_proj: its matmuls and attention
    const double recomputed = static_cast<double>(block_param_count() - intermediate * n_embd);
    return train_flops_per_token(seq) +
           static_cast<double>(n_layer) *
               (2.0 * recomputed + 4.0 * static_cast<double>(n_head * head_dim() * seq));
  }
  const double c = static_cast<double>(n_embd);
  return train_flops_per_token(seq) +
         static_cast<double>(n_layer) * (16 * c * c + 4 * c * static_cast<double>(seq));
}

std::int64_t loss_vocab_slice_rows(const ModelConfig& config, std::int64_t rows) {
  constexpr std::int64_t kLogitBytes = 64ll << 20, kHeadSliceFloats = 16ll << 20;
  const std::int64_t by_logits = kLogitBytes / (4 * std::max<std::int64_t>(rows, 1));
  const std::int64_t by_head = kHeadSliceFloats / config.n_embd;
  return std::clamp<std::int64_t>(std::min(by_logits, by_head), 1, config.vocab);
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
  for (const LlamaPreset& p : kLlamaPresets) {
    if (name == p.name) {
      ModelConfig config = from_llama_preset(p);
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
  for (const LlamaPreset& p : kLlamaPresets) names.emplace_back(p.name);
  return names;
}

}  // namespace sparsetrain::fuyou
