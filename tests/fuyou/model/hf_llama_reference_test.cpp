// Our Llama-family decoder against Hugging Face `transformers` (the reference for its
// semantics): small random LlamaForCausalLM (GQA with 1, 2 and all K/V heads; llama3 and linear
// rope scaling; a tied head), Qwen2ForCausalLM (q/k/v biases) and MistralForCausalLM, saved in
// shards by save_pretrained, load through model_config_from_hf + load_hf_llama and give the losses
// (without and with a loss mask) and every gradient transformers computed. Then the checkpoint
// errors: a missing shard, an index entry for a file that is not there, a tensor of the wrong
// shape, an unsupported architecture. Skips (77) without the venv's Python or transformers.
#define DOCTEST_CONFIG_IMPLEMENT
#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/process.h"
#include "common/error.h"
#include "fuyou/model/gpt_model.h"
#include "fuyou/model/hf_config.h"
#include "fuyou/model/llama_model.h"
#include "fuyou/model/safetensors.h"

using namespace sparsetrain::fuyou;
namespace fs = std::filesystem;

namespace {

fs::path g_dir;

const char* const kCases[] = {"llama-gqa1-llama3-rope", "llama-gqa2-tied", "llama-mha-linear-rope",
                              "qwen2-biases", "mistral"};

at::Tensor to_tensor(const nlohmann::json& rows) {
  std::vector<std::int64_t> flat;
  for (const auto& row : rows)
    for (const auto& v : row) flat.push_back(v.get<std::int64_t>());
  return torch::tensor(flat, torch::kLong).view({static_cast<std::int64_t>(rows.size()), -1});
}

nlohmann::json reference(const fs::path& dir) {
  std::ifstream in(dir / "reference.json");
  return nlohmann::json::parse(in);
}

std::string refusal(const std::function<void()>& f) {
  try {
    f();
  } catch (const sparsetrain::common::UsageError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("Llama-family configs read from config.json as transformers wrote them") {
  const ModelConfig gqa1 = model_config_from_hf((g_dir / "llama-gqa1-llama3-rope").string());
  CHECK(gqa1.llama());
  CHECK(gqa1.n_kv_head == 1);
  CHECK(gqa1.head_dim() == 8);
  CHECK(gqa1.intermediate == 48);
  CHECK(gqa1.rope_theta == 500000.0);
  CHECK(gqa1.rope_scaling.type == "llama3");
  CHECK(gqa1.rope_scaling.factor == 8.0);
  CHECK(gqa1.rope_scaling.original_max_positions == 16);
  CHECK_FALSE(gqa1.tie_word_embeddings);
  CHECK(model_config_from_hf((g_dir / "llama-gqa2-tied").string()).tie_word_embeddings);
  const ModelConfig qwen = model_config_from_hf((g_dir / "qwen2-biases").string());
  CHECK(qwen.qkv_bias);
  CHECK(qwen.layer_norm_eps == 1e-6);
  CHECK(qwen.rope_theta == 1e6);
  // The parameter count is transformers' (every tensor of the checkpoint once).
  for (const char* name : kCases) {
    CAPTURE(name);
    const ModelConfig config = model_config_from_hf((g_dir / name).string());
    const ModelWeights w = load_hf_llama(config, (g_dir / name).string(), at::TensorOptions());
    std::int64_t numel = 0;
    for (const auto& [n, t] : w.named()) numel += t->numel();
    CHECK(numel == config.param_count());
  }
}

TEST_CASE("the loss, the masked loss and every gradient are transformers'") {
  for (const char* name : kCases) {
    const std::string case_name = name;
    CAPTURE(case_name);
    const fs::path dir = g_dir / name;
    const nlohmann::json ref = reference(dir);
    const ModelConfig config = model_config_from_hf(dir.string());
    ModelWeights w = load_hf_llama(config, dir.string(), at::TensorOptions());
    const at::Tensor x = to_tensor(ref["inputs"]);
    {
      torch::NoGradGuard no_grad;
      const at::Tensor y = to_tensor(ref["targets"]);
      const double loss = llama_loss_full_graph(config, w, x, y).item<double>();
      CHECK(loss == doctest::Approx(ref["loss"].get<double>()).epsilon(1e-5));
      if (config.rope_scaling.type != "default") {  // the scaling is in play: without it, not
        ModelConfig unscaled = config;
        unscaled.rope_scaling = RopeScaling{};
        CHECK(llama_loss_full_graph(unscaled, w, x, y).item<double>() !=
              doctest::Approx(loss).epsilon(1e-5));
      }
    }
    for (auto& [n, t] : w.named()) t->requires_grad_(true);
    const at::Tensor masked = llama_loss_full_graph(config, w, x, to_tensor(ref["masked_targets"]));
    const double want = ref["masked_loss"].get<double>();
    CHECK(masked.item<double>() == doctest::Approx(want).epsilon(1e-5));
    masked.backward();
    const TensorMap grads = read_safetensors((dir / "grads.safetensors").string());
    double worst = 0;
    std::size_t compared = 0;
    for (const auto& [n, t] : w.named()) {
      CAPTURE(n);
      REQUIRE(grads.count(n) == 1);
      const at::Tensor& g = grads.at(n);
      const double scale = g.abs().max().item<double>();
      const double err = (t->grad() - g).abs().max().item<double>() / std::max(scale, 1e-30);
      CHECK(err <= 1e-4);
      worst = std::max(worst, err);
      ++compared;
    }
    CHECK(compared == grads.size());
    // The trainers' path: block by block, each block's backward on its own (llama_block_backward),
    // the chunked loss, the masked mean.
    for (auto& [n, t] : w.named()) t->requires_grad_(false);
    ModelWeights acc = zeros_like_weights(w, at::TensorOptions());
    const double blockwise = gpt_forward_backward(config, w, x, to_tensor(ref["masked_targets"]),
                                                  1.0, acc, /*chunk_rows=*/5);
    CHECK(blockwise == doctest::Approx(want).epsilon(1e-5));
    double worst_blockwise = 0;
    for (const auto& [n, t] : acc.named()) {
      CAPTURE(n);
      const at::Tensor& g = grads.at(n);
      const double scale = g.abs().max().item<double>();
      const double err = (*t - g).abs().max().item<double>() / std::max(scale, 1e-30);
      CHECK(err <= 1e-4);
      worst_blockwise = std::max(worst_blockwise, err);
    }
    CHECK(gpt_loss(config, w, x, to_tensor(ref["masked_targets"]), 3) ==
          doctest::Approx(want).epsilon(1e-5));
    MESSAGE(std::string(name) << ": masked loss " << masked.item<double>() << " vs " << want
                              << "; worst gradient relative error " << worst << " (block-wise "
                              << worst_blockwise << ") over " << compared << " tensors");
  }
}

TEST_CASE("checkpoint errors name the file, the tensor or the supported architectures") {
  const fs::path src = g_dir / "mistral";
  const ModelConfig config = model_config_from_hf(src.string());
  auto copy = [&](const std::string& name) {
    const fs::path dst = g_dir / name;
    fs::remove_all(dst);
    fs::copy(src, dst);
    return dst;
  };
  fs::path bad = copy("missing-shard");
  fs::remove(bad / "model-00002-of-00003.safetensors");
  std::string why = refusal([&] { load_hf_llama(config, bad.string(), at::TensorOptions()); });
  CHECK(why.find("model-00002-of-00003.safetensors', which is not there") != std::string::npos);

  bad = copy("short-index");
  nlohmann::json index;
  {
    std::ifstream in(bad / "model.safetensors.index.json");
    index = nlohmann::json::parse(in);
  }
  index["weight_map"].erase("model.layers.1.mlp.up_proj.weight");
  std::ofstream(bad / "model.safetensors.index.json") << index.dump();
  why = refusal([&] { load_hf_llama(config, bad.string(), at::TensorOptions()); });
  CHECK(why.find("lacks tensor 'model.layers.1.mlp.up_proj.weight'") != std::string::npos);

  // The right weights under a config of another shape.
  ModelConfig wider = config;
  wider.intermediate = 64;
  why = refusal([&] { load_hf_llama(wider, src.string(), at::TensorOptions()); });
  CHECK(why.find("has shape [48, 32] but model") != std::string::npos);

  bad = copy("gemma");
  nlohmann::json cfg;
  {
    std::ifstream in(bad / "config.json");
    cfg = nlohmann::json::parse(in);
  }
  cfg["architectures"] = {"GemmaForCausalLM"};
  std::ofstream(bad / "config.json") << cfg.dump();
  why = refusal([&] { model_config_from_hf(bad.string()); });
  CHECK(why.find("architecture 'GemmaForCausalLM', which sparsetrain does not train") !=
        std::string::npos);
  try {
    model_config_from_hf(bad.string());
  } catch (const sparsetrain::common::UsageError& e) {
    CHECK(
        e.hint().find("LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel") !=
        std::string::npos);
  }
  cfg["architectures"] = {"LlamaForCausalLM"};
  cfg["num_key_value_heads"] = 3;
  std::ofstream(bad / "config.json") << cfg.dump();
  why = refusal([&] { model_config_from_hf(bad.string()); });
  CHECK(why.find("4 attention heads do not split into 3 key/value groups") != std::string::npos);
  std::ofstream(bad / "config.json") << "{\"architectures\": [";
  why = refusal([&] { model_config_from_hf(bad.string()); });
  CHECK(why.find("is not JSON") != std::string::npos);
}

int main(int argc, char** argv) {
  g_dir = fs::temp_directory_path() / ("st-hf-llama-" + std::to_string(::getpid()));
  fs::create_directories(g_dir);
  const auto r = sparsetrain::test::run_process(SPARSETRAIN_PYTHON,
                                                {SPARSETRAIN_HF_LLAMA_SCRIPT, g_dir.string()});
  if (r.exit_code != 0) {
    std::printf("transformers reference unavailable (exit %d): skipping\n%s", r.exit_code,
                r.err.c_str());
    fs::remove_all(g_dir);
    return 77;
  }
  doctest::Context context(argc, argv);
  const int rc = context.run();
  fs::remove_all(g_dir);
  return rc;
}
