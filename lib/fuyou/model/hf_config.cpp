// config.json -> ModelConfig (see hf_config.h).
#include "fuyou/model/hf_config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"

namespace sparsetrain::fuyou {

namespace fs = std::filesystem;

namespace {

constexpr const char* kLlamaArchitectures[] = {"LlamaForCausalLM", "MistralForCausalLM",
                                               "Qwen2ForCausalLM"};

// Reads config.json fields with messages that name the file and the field.
class Fields {
 public:
  Fields(const nlohmann::json& j, std::string file) : j_(j), file_(std::move(file)) {}

  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  std::int64_t size(const char* key) const {
    if (!has(key)) fail(std::string("has no '") + key + "'");
    const nlohmann::json& v = j_.at(key);
    if (!v.is_number_integer() || v.get<std::int64_t>() <= 0) {
      fail(std::string("'") + key + "' is " + v.dump() + ", not a positive integer");
    }
    return v.get<std::int64_t>();
  }
  std::int64_t size_or(const char* key, std::int64_t otherwise) const {
    return has(key) ? size(key) : otherwise;
  }
  double number_or(const nlohmann::json& in, const char* key, double otherwise) const {
    if (!in.contains(key) || in.at(key).is_null()) return otherwise;
    if (!in.at(key).is_number()) {
      fail(std::string("'") + key + "' is " + in.at(key).dump() + ", not a number");
    }
    return in.at(key).get<double>();
  }
  double number_or(const char* key, double otherwise) const {
    return number_or(j_, key, otherwise);
  }
  bool flag_or(const char* key, bool otherwise) const {
    if (!has(key)) return otherwise;
    if (!j_.at(key).is_boolean()) {
      fail(std::string("'") + key + "' is " + j_.at(key).dump() + ", not true or false");
    }
    return j_.at(key).get<bool>();
  }
  const nlohmann::json& json() const { return j_; }
  [[noreturn]] void fail(const std::string& what) const {
    throw common::UsageError("model config '" + file_ + "' " + what,
                             "pass the config.json the checkpoint was saved with");
  }

 private:
  const nlohmann::json& j_;
  std::string file_;
};

// rope_scaling (transformers 4) or rope_parameters (transformers 5, with rope_theta inside).
void read_rope(const Fields& f, ModelConfig& config) {
  const nlohmann::json& j = f.json();
  config.rope_theta = f.number_or("rope_theta", 10000.0);
  const nlohmann::json* scaling = nullptr;
  if (j.contains("rope_parameters") && j.at("rope_parameters").is_object()) {
    scaling = &j.at("rope_parameters");
    config.rope_theta = f.number_or(*scaling, "rope_theta", config.rope_theta);
  }
  if (j.contains("rope_scaling") && j.at("rope_scaling").is_object())
    scaling = &j.at("rope_scaling");
  if (!scaling) return;
  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {
    if (scaling->contains(key) && scaling->at(key).is_string()) {
      type = scaling->at(key).get<std::string>();
      break;
    }
  }
  if (type != "default" && type != "linear" && type != "llama3") {
    f.fail("has rope scaling '" + type + "', which sparsetrain does not compute (default, " +
           "linear and llama3 are)");
  }
  config.rope_scaling.type = type;
  if (type == "default") return;
  config.rope_scaling.factor = f.number_or(*scaling, "factor", 1.0);
  if (!(config.rope_scaling.factor > 0)) f.fail("has a rope scaling factor that is not positive");
  if (type == "llama3") {
    config.rope_scaling.low_freq_factor = f.number_or(*scaling, "low_freq_factor", 1.0);
    config.rope_scaling.high_freq_factor = f.number_or(*scaling, "high_freq_factor", 4.0);
    config.rope_scaling.original_max_positions = static_cast<std::int64_t>(f.number_or(
        *scaling, "original_max_position_embeddings", static_cast<double>(config.n_positions)));
    if (!(config.rope_scaling.high_freq_factor > config.rope_scaling.low_freq_factor)) {
      f.fail("has llama3 rope scaling with high_freq_factor not above low_freq_factor");
    }
  }
}

}  // namespace

std::vector<std::string> supported_hf_architectures() {
  std::vector<std::string> names(std::begin(kLlamaArchitectures), std::end(kLlamaArchitectures));
  names.emplace_back("GPT2LMHeadModel");
  return names;
}

ModelConfig model_config_from_hf(const std::string& path) {
  const fs::path file = fs::is_directory(path) ? fs::path(path) / "config.json" : fs::path(path);
  std::ifstream in(file);
  if (!in) {
    throw common::UsageError("no model config at '" + file.string() + "'",
                             "pass a Hugging Face model directory (with config.json)");
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw common::UsageError("model config '" + file.string() + "' is not JSON: " + e.what(),
                             "pass the config.json the checkpoint was saved with");
  }
  if (!j.is_object()) {
    throw common::UsageError("model config '" + file.string() + "' is not a JSON object",
                             "pass the config.json the checkpoint was saved with");
  }
  const Fields f(j, file.string());
  std::string architecture;
  if (j.contains("architectures") && j.at("architectures").is_array() &&
      !j.at("architectures").empty() && j.at("architectures")[0].is_string()) {
    architecture = j.at("architectures")[0].get<std::string>();
  }
  std::string supported;
  for (const std::string& a : supported_hf_architectures()) {
    supported += (supported.empty() ? "" : ", ") + a;
  }
  ModelConfig config;
  const fs::path dir = fs::absolute(file).parent_path();
  config.name = dir.filename().string();
  if (architecture == "GPT2LMHeadModel") {
    config.family = ModelFamily::kGpt2;
    config.n_layer = f.size("n_layer");
    config.n_embd = f.size("n_embd");
    config.n_head = f.size("n_head");
    config.vocab = f.size("vocab_size");
    config.n_positions = f.size_or("n_positions", 1024);
    config.layer_norm_eps = f.number_or("layer_norm_epsilon", 1e-5);
    config.validate();
    return config;
  }
  if (std::find(std::begin(kLlamaArchitectures), std::end(kLlamaArchitectures), architecture) ==
      std::end(kLlamaArchitectures)) {
    throw common::UsageError("model config '" + file.string() + "' names architecture '" +
                                 (architecture.empty() ? std::string("(none)") : architecture) +
                                 "', which sparsetrain does not train",
                             "supported: " + supported);
  }
  config.family = ModelFamily::kLlama;
  config.n_layer = f.size("num_hidden_layers");
  config.n_embd = f.size("hidden_size");
  config.n_head = f.size("num_attention_heads");
  config.n_kv_head = f.size_or("num_key_value_heads", config.n_head);
  config.head_size = f.size_or("head_dim", 0);
  if (config.head_size == config.n_embd / config.n_head) config.head_size = 0;
  config.intermediate = f.size("intermediate_size");
  config.vocab = f.size("vocab_size");
  config.n_positions = f.size_or("max_position_embeddings", 2048);
  config.layer_norm_eps = f.number_or("rms_norm_eps", 1e-6);
  config.tie_word_embeddings = f.flag_or("tie_word_embeddings", false);
  config.qkv_bias = architecture == "Qwen2ForCausalLM" || f.flag_or("attention_bias", false);
  if (f.flag_or("mlp_bias", false)) f.fail("has mlp_bias true: Llama MLPs here have no biases");
  if (j.contains("hidden_act") && j.at("hidden_act") != "silu") {
    f.fail("has hidden_act " + j.at("hidden_act").dump() + ": the SwiGLU MLP here is silu's");
  }
  const bool windowed = j.contains("sliding_window") && !j.at("sliding_window").is_null() &&
                        f.flag_or("use_sliding_window", architecture == "MistralForCausalLM");
  if (windowed) f.fail("has sliding-window attention on: attention here is full causal");
  read_rope(f, config);
  config.validate();
  return config;
}

std::string hf_config_json(const ModelConfig& config, const std::string& dtype) {
  nlohmann::json j;
  if (!config.llama()) {
    j = {{"architectures", {"GPT2LMHeadModel"}},
         {"model_type", "gpt2"},
         {"n_layer", config.n_layer},
         {"n_embd", config.n_embd},
         {"n_head", config.n_head},
         {"vocab_size", config.vocab},
         {"n_positions", config.n_positions},
         {"n_ctx", config.n_positions},
         {"layer_norm_epsilon", config.layer_norm_eps},
         {"activation_function", "gelu_new"},
         {"tie_word_embeddings", true}};
  } else {
    const bool qwen = config.qkv_bias;
    const bool mistral = !qwen && config.name.rfind("mistral", 0) == 0;
    j = {{"architectures",
          {qwen      ? "Qwen2ForCausalLM"
           : mistral ? "MistralForCausalLM"
                     : "LlamaForCausalLM"}},
         {"model_type", qwen      ? "qwen2"
                        : mistral ? "mistral"
                                  : "llama"},
         {"num_hidden_layers", config.n_layer},
         {"hidden_size", config.n_embd},
         {"num_attention_heads", config.n_head},
         {"num_key_value_heads", config.n_kv_head},
         {"head_dim", config.head_dim()},
         {"intermediate_size", config.intermediate},
         {"vocab_size", config.vocab},
         {"max_position_embeddings", config.n_positions},
         {"rms_norm_eps", config.layer_norm_eps},
         {"rope_theta", config.rope_theta},
         {"hidden_act", "silu"},
         {"tie_word_embeddings", config.tie_word_embeddings},
         {"initializer_range", 0.02}};
    if (qwen) {
      j["use_sliding_window"] = false;
      j["sliding_window"] = nullptr;
    } else {
      j["attention_bias"] = false;
      j["mlp_bias"] = false;
      if (mistral) j["sliding_window"] = nullptr;
    }
    const RopeScaling& r = config.rope_scaling;
    if (r.type == "linear") {
      j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", r.factor}};
    } else if (r.type == "llama3") {
      j["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", r.factor},
                           {"low_freq_factor", r.low_freq_factor},
                           {"high_freq_factor", r.high_freq_factor},
                           {"original_max_position_embeddings", r.original_max_positions}};
    } else {
      j["rope_scaling"] = nullptr;
    }
  }
  j["torch_dtype"] = dtype;  // transformers 4's key; 5 reads "dtype"
  j["dtype"] = dtype;
  return j.dump(2) + "\n";
}

}  // namespace sparsetrain::fuyou
