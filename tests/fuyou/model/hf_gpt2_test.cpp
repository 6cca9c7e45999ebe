// Hugging Face GPT-2 names: Conv1D transposition semantics, round trips with and without the
// "transformer." prefix and lm_head.weight, and refusals of foreign or incomplete checkpoints.
#include "fuyou/model/hf_gpt2.h"

#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <limits>

#include "common/error.h"

using namespace sparsetrain::fuyou;
using sparsetrain::common::UsageError;

namespace {

const ModelConfig& config() {
  static const ModelConfig c = model_config_from_name("custom:L=2,C=8,H=2,V=12,T=6");
  return c;
}

ModelWeights random_weights() {
  ModelWeights w = init_model_weights(config(), 5, at::TensorOptions());
  torch::manual_seed(6);
  for (auto& [name, t] : w.named()) t->add_(torch::randn_like(*t));
  return w;
}

void check_equal(const ModelWeights& a, const ModelWeights& b) {
  auto na = a.named();
  auto nb = b.named();
  REQUIRE(na.size() == nb.size());
  for (std::size_t i = 0; i < na.size(); ++i) {
    CAPTURE(na[i].first);
    CHECK(torch::equal(*na[i].second, *nb[i].second));
  }
}

}  // namespace

TEST_CASE("HF names carry the transformer prefix and Conv1D weights are [in, out]") {
  const ModelWeights w = random_weights();
  const TensorMap hf = gpt_weights_to_hf(w, at::kFloat);
  CHECK(hf.size() == static_cast<std::size_t>(2 + 2 * kBlockTensorCount + 2));
  CHECK(hf.count("lm_head.weight") == 0);
  CHECK(hf.at("transformer.wte.weight").sizes() == at::IntArrayRef({12, 8}));
  CHECK(hf.at("transformer.h.1.attn.c_attn.weight").sizes() == at::IntArrayRef({8, 24}));
  CHECK(hf.at("transformer.h.0.mlp.c_fc.weight").sizes() == at::IntArrayRef({8, 32}));
  CHECK(hf.at("transformer.h.0.mlp.c_proj.weight").sizes() == at::IntArrayRef({32, 8}));
  CHECK(hf.at("transformer.h.0.ln_2.bias").sizes() == at::IntArrayRef({8}));
  CHECK(hf.at("transformer.h.0.attn.c_proj.weight").is_contiguous());

  // Conv1D semantics: y = x·W_hf + b must equal our linear(x, W, b).
  torch::manual_seed(1);
  const at::Tensor x = torch::randn({5, 8});
  const at::Tensor conv1d = torch::addmm(hf.at("transformer.h.1.attn.c_attn.bias"), x,
                                         hf.at("transformer.h.1.attn.c_attn.weight"));
  const at::Tensor ours = torch::linear(x, w.blocks[1][kAttnQkvWeight], w.blocks[1][kAttnQkvBias]);
  CHECK(torch::allclose(conv1d, ours, 1e-6, 1e-6));
}

TEST_CASE("weights survive a round trip through HF names bit for bit, in fp32 and bf16") {
  const ModelWeights w = random_weights();
  check_equal(gpt_weights_from_hf(config(), gpt_weights_to_hf(w, at::kFloat), at::TensorOptions()),
              w);

  const ModelWeights w16 = weights_to(w, at::TensorOptions().dtype(at::kBFloat16));
  const ModelWeights back = gpt_weights_from_hf(config(), gpt_weights_to_hf(w, at::kBFloat16),
                                                at::TensorOptions().dtype(at::kBFloat16));
  check_equal(back, w16);
}

TEST_CASE("checkpoints without the prefix, with a tied lm_head and with mask buffers load") {
  const ModelWeights w = random_weights();
  TensorMap bare;
  for (const auto& [name, t] : gpt_weights_to_hf(w, at::kFloat)) bare[name.substr(12)] = t;
  bare["lm_head.weight"] = bare.at("wte.weight").clone();
  bare["h.0.attn.bias"] = torch::ones({1, 1, 6, 6}).tril();
  bare["h.1.attn.masked_bias"] = torch::tensor(-1e4);
  check_equal(gpt_weights_from_hf(config(), bare, at::TensorOptions()), w);
}

TEST_CASE("foreign, incomplete, mis-shaped or untied checkpoints are usage errors") {
  const TensorMap good = gpt_weights_to_hf(random_weights(), at::kFloat);
  TensorMap missing = good;
  missing.erase("transformer.h.1.mlp.c_fc.bias");
  CHECK_THROWS_AS(gpt_weights_from_hf(config(), missing, at::TensorOptions()), UsageError);

  TensorMap extra = good;
  extra["transformer.h.2.ln_1.weight"] = torch::ones({8});  // a third layer
  CHECK_THROWS_AS(gpt_weights_from_hf(config(), extra, at::TensorOptions()), UsageError);

  TensorMap shaped = good;
  shaped["transformer.h.0.attn.c_attn.weight"] = torch::zeros({24, 8});  // not transposed
  CHECK_THROWS_AS(gpt_weights_from_hf(config(), shaped, at::TensorOptions()), UsageError);

  TensorMap untied = good;
  untied["lm_head.weight"] = torch::zeros({12, 8});
  CHECK_THROWS_AS(gpt_weights_from_hf(config(), untied, at::TensorOptions()), UsageError);

  TensorMap twice = good;
  twice["wpe.weight"] = good.at("transformer.wpe.weight");
  CHECK_THROWS_AS(gpt_weights_from_hf(config(), twice, at::TensorOptions()), UsageError);
}

TEST_CASE("a checkpoint holding inf or NaN is refused at load, naming the tensor and the count") {
  ModelWeights w = random_weights();
  w.blocks[1][kMlpFcWeight].view({-1})[3] = std::numeric_limits<float>::quiet_NaN();
  w.blocks[1][kMlpFcWeight].view({-1})[7] = std::numeric_limits<float>::infinity();
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("st-nonfinite-" + std::to_string(::getpid()) + ".safetensors"))
                               .string();
  export_hf_gpt2(path, w, at::kFloat, {});
  int visited = 0;
  try {
    for_each_hf_gpt2_weight(config(), path,
                            [&](const std::string&, const at::Tensor&) { ++visited; });
    FAIL("no UsageError for a NaN in the checkpoint");
  } catch (const UsageError& e) {
    const std::string message = e.what();
    CHECK(message.find(path) != std::string::npos);
    CHECK(message.find("'h.1.mlp.c_fc.weight' holds 2 non-finite values") != std::string::npos);
  }
  CHECK(visited > 0);  // the tensors before it went through
  std::filesystem::remove(path);
}
